"""Real servers have a lifecycle: active (weight 1), draining (weight 0), gone. Pure.

A real server the cluster no longer chooses is not deleted while the kernel still counts
connections to it (ActiveConn + InActConn): it is kept at weight 0, so no new connection
goes there and the ones it has carry on. It goes once it has none, or:
- while its endpoint is still listed in the EndpointSlice (terminating, unready), never by
  the clock: the pod is alive and Kubernetes bounds its termination by the pod's own
  terminationGracePeriodSeconds, after which the endpoint leaves the slice;
- once it has left the slice, after --ipvs-graceful-period counted from the first sync
  that saw it gone (the start is kept in the drain record, so every kipvs process agrees).
UDP is deleted at once (kube-proxy's rule: there is no connection to finish; flows move to
the remaining servers). A Service that is deleted takes its virtual server with it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from kipvs.config import ProxyOptions
from kipvs.desired import Desired
from kipvs.facts.ipvsadm import Counters
from kipvs.facts.kernel import KernelFacts
from kipvs.model import RealServer, VirtualServer, host_port

DRAINING_PROTOCOLS = ("tcp", "sctp")


@dataclass(frozen=True)
class Drain:
    """One real server kept at weight 0."""

    service: tuple            # virtual server key
    server: tuple[str, int]   # real server key
    active: int
    inactive: int
    since: float | None       # when its endpoint was first seen gone (None: still listed)
    deadline: float | None    # when it goes even with connections (None: when its connections end)


def record_key(service: tuple, server: tuple[str, int]) -> str:
    """How a drain is named in the record: `TCP 10.0.0.1:80 172.20.1.2:8080`."""
    return f"{VirtualServer(*service).label()} {host_port(*server)}"


def drained_service(name: str) -> str:
    """The virtual server's label in a record name (`TCP 10.0.0.1:80`)."""
    return name.rsplit(" ", 1)[0]


def leaving(desired: Desired, kernel: KernelFacts, options: ProxyOptions) -> dict[tuple, list[RealServer]]:
    """Real servers the plan would delete from virtual servers that stay, where draining applies."""
    if not options.graceful_termination:
        return {}
    wanted = {vs.key: vs for vs in desired.virtual_servers if vs.protocol in DRAINING_PROTOCOLS}
    found = {}
    for have in kernel.rules:
        vs = wanted.get(have.key)
        if vs is None:
            continue
        ours = {rs.key for rs in vs.real_servers}
        gone = [rs for rs in have.real_servers if rs.key not in ours]
        if gone:
            found[have.key] = gone
    return found


def drain(desired: Desired, candidates: dict[tuple, list[RealServer]], counters: dict[tuple, Counters],
          record: dict[str, float], now: float, options: ProxyOptions) -> tuple[Desired, list[Drain], dict[str, float]]:
    """The desired state with the draining real servers kept at weight 0, the drains, and the new record
    (start times of the drains whose endpoint has left the slice; nothing else is kept)."""
    drains: list[Drain] = []
    new_record: dict[str, float] = {}
    kept: dict[tuple, list[RealServer]] = {}
    for service, servers in candidates.items():
        listed = desired.held.get(service, frozenset())
        for rs in servers:
            count = counters.get((service, rs.key), Counters())
            if count.active + count.inactive == 0:
                continue
            since = deadline = None
            if rs.key not in listed:
                name = record_key(service, rs.key)
                since = record.get(name, now)
                deadline = since + options.graceful_period
                if now >= deadline:
                    continue
                new_record[name] = since
            kept.setdefault(service, []).append(replace(rs, weight=0))
            drains.append(Drain(service, rs.key, count.active, count.inactive, since, deadline))
    if not kept:
        return desired, drains, new_record
    servers = tuple(replace(vs, real_servers=tuple(sorted(vs.real_servers + tuple(kept[vs.key]))))
                    if vs.key in kept else vs for vs in desired.virtual_servers)
    return replace(desired, virtual_servers=servers), drains, new_record


def record_entries(record: dict[str, float]) -> dict[tuple[str, str], float]:
    """The drain record keyed (virtual server label, real server label), for `show` and `doctor`."""
    entries = {}
    for name, since in record.items():
        service, _, server = name.rpartition(" ")
        if service:
            entries[(service, server)] = since
    return entries
