"""Helpers for the netfilter kernel tests: cluster objects, an outside client, the node's own iptables backend.

Backend-agnostic: the backend is KIPVS_IPTABLES_MODE when set, else what kipvs itself detects in
the node's namespace; every read and write uses that backend's own tools."""
import os
import re

from tests.kernel.lab import PYTHON, SWITCH, in_ns, ip_batch

CLIENT, OTHER_CLIENT = "192.168.123.100", "192.168.123.101"
NODE1, NODE3 = "192.168.123.250", "192.168.123.249"


def node_object(name, ip, index):
    return {"kind": "Node", "metadata": {"name": name},
            "spec": {"podCIDRs": [f"172.20.{index}.0/24", f"fd00:20:{index}::/64"]},
            "status": {"addresses": [{"type": "InternalIP", "address": ip},
                                     {"type": "InternalIP", "address": f"fd00:123::{ip.rsplit('.', 1)[1]}"}]}}


def service(name, cluster_ips, service_type="ClusterIP", node_port=None, local=False, external_ips=(),
            lb_ip=None, source_ranges=()):
    port = {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}
    if node_port:
        port["nodePort"] = node_port
    spec = {"type": service_type, "clusterIP": cluster_ips[0], "clusterIPs": list(cluster_ips), "ports": [port],
            "externalIPs": list(external_ips), "externalTrafficPolicy": "Local" if local else "Cluster"}
    if source_ranges:
        spec["loadBalancerSourceRanges"] = list(source_ranges)
    status = {"loadBalancer": {"ingress": [{"ip": lb_ip}]}} if lb_ip else {}
    return {"kind": "Service", "metadata": {"name": name, "namespace": "default"}, "spec": spec, "status": status}


def endpoints(name, pods, family=4):
    return {"kind": "EndpointSlice", "metadata": {"name": f"{name}-{family}", "namespace": "default",
                                                   "labels": {"kubernetes.io/service-name": name}},
            "addressType": f"IPv{family}", "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
            "endpoints": [{"addresses": [pod.ip if family == 4 else pod.ip6], "nodeName": pod.node.name,
                           "conditions": {"ready": True}, "targetRef": {"kind": "Pod", "name": pod.name}}
                          for pod in pods]}


def add_client(lab):
    """A machine outside the cluster on the LAN: two addresses, a route to the service ranges via node3,
    and no route to any pod."""
    lab._add_ns("outside")
    ip_batch(["link add outside-eth0 type veth peer name sw-outside", "link set outside-eth0 netns outside",
              f"link set sw-outside netns {SWITCH}", f"-n {SWITCH} link set sw-outside master br0",
              f"-n {SWITCH} link set sw-outside up", "-n outside link set outside-eth0 up",
              f"-n outside addr add {CLIENT}/24 dev outside-eth0",
              f"-n outside addr add {OTHER_CLIENT}/24 dev outside-eth0",
              f"-n outside route add 192.168.200.0/23 via {NODE3}"])


def curl(ns, url, source=None, seconds=2.0):
    argv = ["curl", "-s", "-g", "-m", str(seconds)] + (["--interface", source] if source else []) + [url]
    proc = in_ns(ns, *argv, check=False, timeout=seconds + 30)
    return proc.stdout.strip() if proc.returncode == 0 else None


def backend(node):
    """KIPVS_IPTABLES_MODE, else the product's own detection in the node's namespace."""
    if os.environ.get("KIPVS_IPTABLES_MODE") in ("legacy", "nft"):
        return os.environ["KIPVS_IPTABLES_MODE"]
    code = "from kipvs.netfilter.backend import detect; from kipvs.runner import Runner; " \
           "print(detect(Runner(), 'auto').backend)"
    return node.run(PYTHON, "-c", code).stdout.strip()


def tables(node, family=4):
    """iptables-save of the node's backend, without comments and counters."""
    tool = f"{'ip6tables' if family == 6 else 'iptables'}-{backend(node)}-save"
    text = node.run(tool).stdout
    return [re.sub(r"\[\d+:\d+\]", "[0:0]", line) for line in text.splitlines() if not line.startswith("#")]


def iptables(node, *args, family=4):
    node.run(f"{'ip6tables' if family == 6 else 'iptables'}-{backend(node)}", *args)


def ipsets(node):
    """The names of the sets in the node's namespace."""
    return node.run("ipset", "list", "-n").stdout.split()
