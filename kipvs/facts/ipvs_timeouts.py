"""IPVS's connection timeouts as `ipvsadm -L --timeout` prints them."""
from __future__ import annotations

import re

from kipvs.errors import CommandFailed
from kipvs.runner import Runner

READ_TIMEOUTS = ["ipvsadm", "-L", "--timeout"]
_LINE = re.compile(r"Timeout \(tcp tcpfin udp\):\s+(\d+)\s+(\d+)\s+(\d+)")


def parse_timeouts(text: str) -> tuple[int, int, int]:
    """`Timeout (tcp tcpfin udp): 900 120 300` -> (900, 120, 300)."""
    match = _LINE.search(text)
    if not match:
        raise CommandFailed(READ_TIMEOUTS, 0, f"unexpected output: {text.strip()[:80]!r}")
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def read_timeouts(runner: Runner) -> tuple[int, int, int]:
    return parse_timeouts(runner.run(READ_TIMEOUTS))
