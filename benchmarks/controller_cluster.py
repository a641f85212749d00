"""Clusters as `kubectl get services,endpointslices -A -o json` prints them when Kubernetes wrote the objects:
Services with everything the API server defaults (clusterIPs, ipFamilies, policies, status), EndpointSlices
as the EndpointSlice controller writes them (full metadata, owner reference, every endpoint with its three
conditions, targetRef, nodeName and zone; a few terminating). Options: topology hints on every endpoint
(trafficDistribution: PreferClose; the bench's node has no zone label, so the hints are read and checked
but every endpoint is used, a note per Service says so, and the plans compare across shapes), and
dual-stack Services (each pod with an address of each family, one IPv4 and one IPv6 slice per Service).
The List holds all Services, then all slices, as kubectl lists them.

The second generator beside benchmarks/synthetic.py (whose endpoints carry only addresses, conditions.ready
and nodeName): the host benchmark runs every generator, so no endpoint shape is fast by being the only one.
"""
from __future__ import annotations

import socket

from benchmarks.synthetic import NODE_IP, NODE_NAME, cluster_ip

ZONES = ("zone-a", "zone-b", "zone-c")
CREATED = "2026-11-30T08:15:42Z"
_POD_V6_BASE = int.from_bytes(socket.inet_pton(socket.AF_INET6, "fd00:10:244::"), "big")


def pod_ip(n: int) -> str:
    """Pod n's IPv4 address in 10.128.0.0/9 (clear of the Service range): 500,000 distinct, none .0."""
    return f"10.{128 + n // 65024}.{n // 254 % 256}.{n % 254 + 1}"


def pod_ip6(n: int) -> str:
    return socket.inet_ntop(socket.AF_INET6, (_POD_V6_BASE + n + 1).to_bytes(16, "big"))


def cluster_ip6(i: int) -> str:
    return f"fd00:96::{i + 1:x}"


def _uid(kind: int, i: int, j: int = 0) -> str:
    """A UUID-shaped uid, distinct per object (generating real UUIDs would take longer than the parse)."""
    return f"{kind:08x}-{i >> 16 & 0xffff:04x}-4{i & 0xfff:03x}-8{j & 0xfff:03x}-{i * 4096 + j:012x}"


def service(i: int, dual_stack: bool, hints: bool) -> dict:
    name = f"svc-{i:05}"
    ips = [cluster_ip(i), cluster_ip6(i)] if dual_stack else [cluster_ip(i)]
    port = {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}
    spec = {"clusterIP": ips[0], "clusterIPs": ips, "internalTrafficPolicy": "Cluster",
            "ipFamilies": ["IPv4", "IPv6"] if dual_stack else ["IPv4"],
            "ipFamilyPolicy": "RequireDualStack" if dual_stack else "SingleStack",
            "ports": [port], "selector": {"app": name}, "sessionAffinity": "None", "type": "ClusterIP"}
    if i % 4 == 0 and i // 4 < 2767:  # the same NodePorts as synthetic.py, so the plans compare
        spec.update(type="NodePort", externalTrafficPolicy="Cluster")
        port["nodePort"] = 30000 + i // 4
    if i % 10 == 0:
        spec.update(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 10800}})
    if hints:
        spec["trafficDistribution"] = "PreferClose"
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"creationTimestamp": CREATED, "labels": {"app": name}, "name": name, "namespace": "bench",
                         "resourceVersion": str(1000 + i), "uid": _uid(1, i)},
            "spec": spec, "status": {"loadBalancer": {}}}


def endpoint(i: int, j: int, address: str, hints: bool) -> dict:
    zone = ZONES[j % len(ZONES)]
    terminating = i % 20 == 0 and j == 0  # a rollout in progress here and there
    found = {"addresses": [address],
             "conditions": {"ready": not terminating, "serving": True, "terminating": terminating},
             "nodeName": f"node-{j % 5}",
             "targetRef": {"kind": "Pod", "name": f"svc-{i:05}-7d4b9c6f5-{j:05x}", "namespace": "bench",
                           "uid": _uid(2, i, j)},
             "zone": zone}
    if hints:
        found["hints"] = {"forZones": [{"name": zone}]}
    return found


def endpoint_slice(i: int, family: int, addresses: list[str], hints: bool) -> dict:
    name = f"svc-{i:05}"
    suffix = "v6" if family == 6 else "v4"
    return {"addressType": f"IPv{family}", "apiVersion": "discovery.k8s.io/v1",
            "endpoints": [endpoint(i, j, address, hints) for j, address in enumerate(addresses)],
            "kind": "EndpointSlice",
            "metadata": {"annotations": {"endpoints.kubernetes.io/last-change-trigger-time": CREATED},
                         "creationTimestamp": CREATED, "generateName": f"{name}-", "generation": 1,
                         "labels": {"endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                                    "kubernetes.io/service-name": name, "app": name},
                         "name": f"{name}-{suffix}", "namespace": "bench",
                         "ownerReferences": [{"apiVersion": "v1", "blockOwnerDeletion": True, "controller": True,
                                              "kind": "Service", "name": name, "uid": _uid(1, i)}],
                         "resourceVersion": str(900000 + i), "uid": _uid(3, i, family)},
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}


def objects(services: int, endpoints: int, hints: bool = False, dual_stack: bool = False) -> list[dict]:
    """`endpoints` pods per Service; dual-stack, each pod has an IPv4 and an IPv6 address (a slice per family:
    twice the endpoints and virtual servers, the same endpoints per virtual server)."""
    node = {"kind": "Node", "apiVersion": "v1", "metadata": {"name": NODE_NAME},
            "status": {"addresses": [{"type": "InternalIP", "address": NODE_IP}]}}
    slices = []
    for i in range(services):
        pods = range(i * endpoints, (i + 1) * endpoints)
        slices.append(endpoint_slice(i, 4, [pod_ip(n) for n in pods], hints))
        if dual_stack:
            slices.append(endpoint_slice(i, 6, [pod_ip6(n) for n in pods], hints))
    return [node, *(service(i, dual_stack, hints) for i in range(services)), *slices]
