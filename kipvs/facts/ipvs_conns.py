"""The kernel's connection counters of chosen virtual servers (`ipvsadm -L -n --exact`), for draining.

Only the services that have a real server to drain are read: one `ipvsadm -L -t VIP:PORT` each
when they are few, the whole listing otherwise.
"""
from __future__ import annotations

from kipvs.facts.ipvsadm import READ_CONNECTIONS, TARGETED_READ_MAX, Counters, list_service, parse_connections
from kipvs.runner import Runner


def read_connections(runner: Runner, services: set[tuple]) -> dict[tuple, Counters]:
    """ActiveConn/InActConn keyed (service key, real server key) for these services (absent: no entry)."""
    if not services:
        return {}
    if len(services) > TARGETED_READ_MAX:
        return parse_connections(runner.run(READ_CONNECTIONS))
    counters: dict[tuple, Counters] = {}
    for key in sorted(services):
        text = list_service(runner, key)
        if text is not None:
            counters.update(parse_connections(text))
    return counters
