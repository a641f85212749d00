"""Clusters written by hand or by tools, with only what the API requires: Services with a clusterIP and
their ports, EndpointSlices whose endpoints carry nothing but `addresses` (conditions, nodeName and
targetRef are all optional: an unset `ready` means ready). The third generator beside
benchmarks/synthetic.py and benchmarks/controller_cluster.py: the smallest valid endpoint shape.
"""
from __future__ import annotations

from benchmarks.controller_cluster import pod_ip
from benchmarks.synthetic import NODE_IP, NODE_NAME, cluster_ip


def objects(services: int, endpoints: int) -> list[dict]:
    items = [{"kind": "Node", "apiVersion": "v1", "metadata": {"name": NODE_NAME},
              "status": {"addresses": [{"type": "InternalIP", "address": NODE_IP}]}}]
    for i in range(services):
        name = f"svc-{i:05}"
        port = {"name": "http", "port": 80}
        spec = {"clusterIP": cluster_ip(i), "ports": [port]}
        if i % 4 == 0 and i // 4 < 2767:  # the same NodePorts as synthetic.py, so the plans compare
            spec["type"] = "NodePort"
            port["nodePort"] = 30000 + i // 4
        items.append({"kind": "Service", "apiVersion": "v1", "metadata": {"name": name, "namespace": "bench"},
                      "spec": spec})
        items.append({"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1", "addressType": "IPv4",
                      "metadata": {"name": f"{name}-x", "namespace": "bench",
                                   "labels": {"kubernetes.io/service-name": name}},
                      "ports": [{"name": "http", "port": 8080}],
                      "endpoints": [{"addresses": [pod_ip(i * endpoints + j)]} for j in range(endpoints)]})
    return items
