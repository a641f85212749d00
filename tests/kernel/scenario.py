"""The topology of kube-router issue #376, shared by the kernel tests and the demo."""
from __future__ import annotations

from tests.kernel.lab import Cluster

KUBERNETES_VIP = "10.254.0.1"     # kubernetes service: 443 -> node1:6443
WEB_ONE_VIP = "10.254.0.10"       # one backend, a pod on node1
WEB_RR_VIP = "10.254.0.20"        # round robin over one pod on each node
WEB_ONE_VIP6 = "fd00:254::10"     # IPv6 twin of WEB_ONE_VIP


def build_issue_376(cluster: Cluster) -> Cluster:
    nodes = [cluster.add_node(name) for name in ("node1", "node2", "node3")]
    pods = [cluster.add_pod(node, f"{node.name[-1]}-web") for node in nodes]
    pods = {p.node.name: p for p in pods}
    cluster.serve("node1", "apiserver", 6443)
    for vip in (KUBERNETES_VIP, WEB_ONE_VIP, WEB_RR_VIP, WEB_ONE_VIP6):
        cluster.bind_vip(vip)
    cluster.ipvs_service(KUBERNETES_VIP, 443, [(nodes[0].ip, 6443)])
    cluster.ipvs_service(WEB_ONE_VIP, 80, [(pods["node1"].ip, 8080)])
    cluster.ipvs_service(WEB_RR_VIP, 80, [(p.ip, 8080) for p in pods.values()])
    cluster.ipvs_service(WEB_ONE_VIP6, 80, [(pods["node1"].ip6, 8080)])
    return cluster


def answering_pods(node, url: str, tries: int, seconds: float = 1.5) -> set[str]:
    """Names of the pods that answered `tries` connections through a VIP."""
    names = set()
    for _ in range(tries):
        body = node.curl(url, seconds)
        if body:
            names.add(body.split()[0])
    return names
