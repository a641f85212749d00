"""Facts: each virtual server's traffic counters and rates, from `ipvsadm -L -n --stats|--rate --exact`."""
from __future__ import annotations

from dataclasses import dataclass

from kipvs.facts.ipvsadm import READ_RATES, _walk_list
from kipvs.runner import Runner

READ_STATS = ["ipvsadm", "-L", "-n", "--stats", "--exact"]


@dataclass(frozen=True)
class Traffic:
    """One virtual server: totals since it was created (--stats) and the kernel's rates (--rate,
    its ~2 s estimator)."""

    connections: int = 0
    packets_in: int = 0
    packets_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    cps: int = 0
    pps_in: int = 0
    pps_out: int = 0
    bps_in: int = 0
    bps_out: int = 0


def _service_columns(text: str) -> dict[tuple, tuple[int, ...]]:
    """The five numbers of each virtual server line (real server lines are not needed here)."""
    found = {}
    for service, real, columns in _walk_list(text):
        if real is None and len(columns) >= 5 and all(c.isdigit() for c in columns[:5]):
            found[service] = tuple(int(c) for c in columns[:5])
    return found


def parse_traffic(stats: str, rates: str) -> dict[tuple, Traffic]:
    """Keyed like VirtualServer.key; a virtual server missing from one listing gets zeros there."""
    totals, speeds = _service_columns(stats), _service_columns(rates)
    return {key: Traffic(*totals.get(key, (0,) * 5), *speeds.get(key, (0,) * 5))
            for key in totals.keys() | speeds.keys()}


def read_traffic(runner: Runner) -> dict[tuple, Traffic]:
    return parse_traffic(runner.run(READ_STATS), runner.run(READ_RATES))
