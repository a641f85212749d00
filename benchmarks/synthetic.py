"""Synthetic clusters for the benchmarks: N services x M endpoints, mixed ClusterIP/NodePort,
some with ClientIP affinity and scheduler annotations, as the API serves them."""
from __future__ import annotations

NODE_NAME = "bench-node"
NODE_IP = "192.168.123.249"


def cluster_ip(i: int) -> str:
    return f"10.{96 + i // 65000}.{(i // 250) % 260 % 256}.{i % 250 + 1}"


def endpoint_ip(i: int, j: int) -> str:
    n = i * 64 + j
    return f"172.{16 + n // 65536 % 16}.{n // 256 % 256}.{n % 256 or 1}"


def objects(services: int, endpoints: int, node_ports: bool = True) -> list[dict]:
    items = [{"kind": "Node", "apiVersion": "v1", "metadata": {"name": NODE_NAME},
              "status": {"addresses": [{"type": "InternalIP", "address": NODE_IP}]}}]
    for i in range(services):
        name = f"svc-{i:05}"
        spec = {"type": "ClusterIP", "clusterIP": cluster_ip(i), "clusterIPs": [cluster_ip(i)],
                "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]}
        meta = {"name": name, "namespace": "bench"}
        if node_ports and i % 4 == 0 and i // 4 < 2767:
            spec["type"] = "NodePort"
            spec["ports"][0]["nodePort"] = 30000 + i // 4
        if i % 10 == 0:
            spec["sessionAffinity"] = "ClientIP"
        if i % 7 == 0:
            meta["annotations"] = {"kube-router.io/service.scheduler": "lc"}
        items.append({"kind": "Service", "apiVersion": "v1", "metadata": meta, "spec": spec})
        items.append({"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1", "addressType": "IPv4",
                      "metadata": {"name": f"{name}-x", "namespace": "bench",
                                   "labels": {"kubernetes.io/service-name": name}},
                      "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                      "endpoints": [{"addresses": [endpoint_ip(i, j)], "conditions": {"ready": True},
                                     "nodeName": f"node-{j % 5}"} for j in range(endpoints)]})
    return items
