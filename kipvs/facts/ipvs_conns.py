"""The kernel's connection counters of chosen virtual servers (`ipvsadm -L -n --exact`), for draining.

Only the services that have a real server to drain are read: one `ipvsadm -L -t VIP:PORT` each
when they are few, the whole listing otherwise.
"""
from __future__ import annotations

from kipvs.errors import CommandFailed
from kipvs.facts.ipvsadm import READ_CONNECTIONS, Counters, parse_connections
from kipvs.model import VirtualServer
from kipvs.runner import Runner

TARGETED_MAX = 8


def read_connections(runner: Runner, services: set[tuple]) -> dict[tuple, Counters]:
    """ActiveConn/InActConn keyed (service key, real server key) for these services (absent: no entry)."""
    if not services:
        return {}
    if len(services) > TARGETED_MAX:
        return parse_connections(runner.run(READ_CONNECTIONS))
    counters: dict[tuple, Counters] = {}
    for key in sorted(services):
        try:
            text = runner.run(READ_CONNECTIONS + VirtualServer(*key).service_args().split())
        except CommandFailed as exc:
            if "no such service" not in exc.stderr.lower():
                raise
            continue
        counters.update(parse_connections(text))
    return counters
