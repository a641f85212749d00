"""Taking a node over from kube-router without a dropped request: kube-router's netfilter state stays
after it stops, and its firewall rejects a port kipvs adds to an existing service address until
`kipvs cleanup --kube-router-leftovers` removes it, once kipvs's own rules are in place."""
import json
import subprocess

import pytest

from tests.kernel.netfilter_lab import (CLIENT, NODE3, add_client, curl, endpoints, iptables, node_object, service,
                                        tables)

pytestmark = pytest.mark.netfilter

VIP = "10.254.1.10"


def kube_router_layout(cluster, node, pod):
    """IPVS, the dummy address and the netfilter state exactly as kube-router's service proxy leaves them."""
    cluster.bind_vip(VIP, [node])
    cluster.ipvs_service(VIP, 80, [(pod.ip, 8080)])
    for command in (["create", "kube-router-local-ips", "hash:ip", "timeout", "0"],
                    ["create", "kube-router-svip", "hash:ip", "timeout", "0"],
                    ["create", "kube-router-svip-prt", "hash:ip,port", "timeout", "0"],
                    ["add", "kube-router-local-ips", NODE3], ["add", "kube-router-svip", VIP],
                    ["add", "kube-router-svip-prt", f"{VIP},tcp:80"]):
        node.run("ipset", *command)
    iptables(node, "-N", "KUBE-ROUTER-SERVICES")
    iptables(node, "-A", "KUBE-ROUTER-SERVICES", "-m", "comment", "--comment", "allow icmp echo requests",
             "-p", "icmp", "--icmp-type", "echo-request", "-j", "ACCEPT")
    iptables(node, "-A", "KUBE-ROUTER-SERVICES", "-m", "comment", "--comment", "allow input traffic to ipvs services",
             "-m", "set", "--match-set", "kube-router-svip-prt", "dst,dst", "-j", "ACCEPT")
    iptables(node, "-A", "KUBE-ROUTER-SERVICES", "-m", "comment", "--comment",
             "reject all unexpected traffic to service IPs", "-m", "set", "!", "--match-set", "kube-router-local-ips",
             "dst", "-j", "REJECT", "--reject-with", "icmp-port-unreachable")
    iptables(node, "-I", "INPUT", "1", "-m", "comment", "--comment", "handle traffic to IPVS service IPs in custom chain",
             "-m", "set", "--match-set", "kube-router-svip", "dst", "-j", "KUBE-ROUTER-SERVICES")
    iptables(node, "-t", "nat", "-A", "POSTROUTING", "-m", "ipvs", "--ipvs", "--vdir", "ORIGINAL", "--vmethod", "MASQ",
             "-m", "comment", "--comment", "", "!", "-s", node.pod_cidr, "!", "-d", node.pod_cidr,
             "-j", "SNAT", "--to-source", NODE3)


def test_take_over_from_kube_router_keeps_a_request_loop_answered(cluster, tmp_path):
    node = cluster.add_node("node3")
    pod = cluster.add_pod(node, "3-web")
    add_client(cluster)
    subprocess.run(["ip", "-n", "outside", "route", "add", "10.254.1.0/24", "via", NODE3], check=True)
    kube_router_layout(cluster, node, pod)
    objects = [node_object("node3", NODE3, node.index), service("solo", [VIP]), endpoints("solo", [pod])]
    objects[1]["spec"]["ports"].append({"name": "alt", "protocol": "TCP", "port": 8081, "targetPort": 8080})
    objects[2]["ports"].append({"name": "alt", "protocol": "TCP", "port": 8080})
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps({"kind": "List", "items": objects}))
    assert curl("outside", f"http://{VIP}/") == f"3-web {pod.ip} from {CLIENT}"

    stop = tmp_path / "stop"
    loop = subprocess.Popen(
        ["ip", "netns", "exec", "outside", "sh", "-c",
         f"i=0; while [ ! -e {stop} ] && [ $i -lt 600 ]; do i=$((i+1)); "
         f"if curl -s -m 2 -o /dev/null http://{VIP}/; then echo ok; else echo FAIL; fi; sleep 0.05; done"],
        stdout=subprocess.PIPE, text=True)
    try:
        synced = node.kipvs("sync", "-f", str(path), "--node-name", "node3", "--output", "json")
        assert synced.returncode == 0 and json.loads(synced.stdout)["converged"], synced.stderr
        shown = json.loads(node.kipvs("show", "-f", str(path), "--node-name", "node3", "-o", "json").stdout)
        assert "IPv4 filter KUBE-ROUTER-SERVICES (kube-router)" in shown["netfilter"]["leftovers"]
        assert any("POSTROUTING rule" in item for item in shown["netfilter"]["leftovers"])
        # The measured trap: kube-router's firewall rejects the port kipvs added to the existing VIP.
        assert curl("outside", f"http://{VIP}:8081/") is None
        removed = node.kipvs("cleanup", "--kube-router-leftovers")
        assert removed.returncode == 0, removed.stderr
        # kube-proxy's semantics: ClusterIP traffic not from this node's pods is SNATed (kube-router left
        # traffic to local pods alone).
        assert curl("outside", f"http://{VIP}:8081/") == f"3-web {pod.ip} from {NODE3}"
    finally:
        stop.touch()
        results = loop.communicate(timeout=60)[0].split()
    assert len(results) >= 10 and set(results) == {"ok"}, results
    saved = "\n".join(tables(node, 4))
    assert "KUBE-ROUTER" not in saved and "--to-source 192.168.123.249" in saved  # kipvs's SNAT stays
    assert not [n for n in node.run("ipset", "list", "-n").stdout.split() if n.startswith("kube-router")]
    again = node.kipvs("sync", "-f", str(path), "--node-name", "node3", "--output", "json")
    assert json.loads(again.stdout)["commands"] == []
