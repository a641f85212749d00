"""Topology-aware routing: which endpoints this node uses when the EndpointSlices carry hints.

kube-proxy's rule (pkg/proxy/topology.go): the EndpointSlice controller writes hints (for
`spec.trafficDistribution: PreferClose`, or the topology-mode annotation); a proxy follows
them only when they are complete. Node hints win when every ready endpoint has one and one
names this node (PreferSameNode); else zone hints, when every ready endpoint has one and one
names this node's zone (PreferSameZone); else every endpoint. Only the Cluster-policy list is
filtered: Local policy already keeps this node's endpoints. Pure: no I/O.
"""
from __future__ import annotations

from typing import Sequence, TypeVar

from kipvs.cluster import Endpoint

T = TypeVar("T", bound=tuple)  # (Endpoint, target port) pairs, as EndpointIndex gives them

SAME_NODE = "PreferSameNode"
SAME_ZONE = "PreferSameZone"


def mode(endpoints: Sequence[Endpoint], node: str, zone: str) -> str:
    """SAME_NODE, SAME_ZONE, or "" (no topology: every endpoint), from the ready endpoints' hints."""
    ready = [e for e in endpoints if e.ready]
    if not ready:
        return ""
    if all(e.nodes for e in ready) and any(node in e.nodes for e in ready):
        return SAME_NODE
    if zone and all(e.zones for e in ready) and any(zone in e.zones for e in ready):
        return SAME_ZONE
    return ""


def closest(pairs: list[T], node: str, zone: str) -> tuple[list[T], str]:
    """(the (endpoint, port) pairs this node should use, the mode): with complete hints, the ready
    endpoints hinted for this node or zone; otherwise all of them, unchanged, and mode ""."""
    chosen = mode([e for e, _ in pairs], node, zone)
    if chosen == SAME_NODE:
        return [p for p in pairs if p[0].ready and node in p[0].nodes], chosen
    if chosen == SAME_ZONE:
        return [p for p in pairs if p[0].ready and zone in p[0].zones], chosen
    return pairs, chosen
