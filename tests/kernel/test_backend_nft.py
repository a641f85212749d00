"""The nft iptables backend works with IPVS on the guest's kernel: kube-router's masquerade rule, written with
iptables-nft (nf_tables through nft_compat), makes an outside client's NodePort request to a pod on another
node answer, where IPVS alone hangs; ipvsadm and dummy links work beside it.

Debian's UML kernel has no nf_tables for ip/ip6/inet (LAB.md), so this runs under the qemu lab flavour
(`scripts/lab --flavour qemu`, scripts/test's "QEMU guest" group) and fails there if the backend is unusable.
Under UML it is skipped, saying so."""
from __future__ import annotations

import os

import pytest

from tests.kernel.lab import SWITCH, Cluster, in_ns, ip_batch, sh

pytestmark = [
    pytest.mark.netfilter,
    pytest.mark.skipif(os.environ.get("KIPVS_LAB_FLAVOUR") != "qemu",
                       reason="the nft backend needs nf_tables for ip/ip6: run under scripts/lab --flavour qemu"),
]

NODE_PORT = 30080
CLIENT = "client"
CLIENT_IP, CLIENT_IP6 = "192.168.123.100", "fd00:123::100"
CLUSTER_IP = "10.96.0.10"


def add_outside_client(cluster: Cluster) -> None:
    """A machine on the nodes' LAN outside the cluster: no route to any pod network."""
    cluster._add_ns(CLIENT)
    ip_batch([
        f"link add {CLIENT}-eth0 type veth peer name sw-{CLIENT}",
        f"link set {CLIENT}-eth0 netns {CLIENT}",
        f"link set sw-{CLIENT} netns {SWITCH}",
        f"-n {SWITCH} link set sw-{CLIENT} master br0",
        f"-n {SWITCH} link set sw-{CLIENT} up",
        f"-n {CLIENT} link set {CLIENT}-eth0 name eth0",
        f"-n {CLIENT} link set eth0 up",
        f"-n {CLIENT} addr add {CLIENT_IP}/24 dev eth0",
        f"-n {CLIENT} addr add {CLIENT_IP6}/64 dev eth0 nodad",
    ])


@pytest.fixture(scope="module")
def nodes():
    """node1 with the only web pod; node3 with a client pod, a NodePort and a ClusterIP (on its dummy link)
    for that web pod in IPVS; an outside client on the LAN."""
    cluster = Cluster()
    try:
        node1, _node2, node3 = (cluster.add_node(name) for name in ("node1", "node2", "node3"))
        web = cluster.add_pod(node1, "1-web")
        cluster.add_pod(node3, "3-caller")
        add_outside_client(cluster)
        cluster.bind_vip(CLUSTER_IP, [node3])
        lines = []
        for vip, backend in ((f"{node3.ip}:{NODE_PORT}", web.ip), (f"[{node3.ip6}]:{NODE_PORT}", f"[{web.ip6}]"),
                             (f"{CLUSTER_IP}:80", web.ip)):
            lines += [f"-A -t {vip} -s rr", f"-a -t {vip} -r {backend}:8080 -m -w 1"]
        in_ns(node3.name, "ipvsadm", "-R", stdin="\n".join(lines) + "\n")
        node3.run("sysctl", "-qw", "net.ipv4.vs.conntrack=1")  # as kube-router sets it: netfilter NAT sees IPVS's
        yield cluster
    finally:
        cluster.close()


def masquerade(node, family: int) -> list[str]:
    """kube-router's rule for this node: IPVS-NAT traffic neither from nor to its pods leaves from its IP."""
    pods, own_ip = (node.pod_cidr, node.ip) if family == 4 else (node.pod_cidr6, node.ip6)
    return ["-t", "nat", "-A", "POSTROUTING", "-m", "ipvs", "--ipvs", "--vdir", "ORIGINAL", "--vmethod", "MASQ",
            "!", "-s", pods, "!", "-d", pods, "-j", "SNAT", "--to-source", own_ip]


def test_the_guest_kernel_runs_the_nft_backend(nodes):
    version = sh("iptables-nft", "-V").stdout
    assert "nf_tables" in version, version
    # What the UML kernel refuses: a table of the ip, ip6 and inet families.
    for family in ("ip", "ip6", "inet"):
        in_ns("node1", "nft", "add", "table", family, "kipvs_probe")
    assert in_ns("node1", "nft", "list", "tables").stdout.split("\n")[:3] == [
        "table ip kipvs_probe", "table ip6 kipvs_probe", "table inet kipvs_probe"]
    for family in ("ip", "ip6", "inet"):
        in_ns("node1", "nft", "delete", "table", family, "kipvs_probe")


@pytest.mark.parametrize("family", [4, 6])
def test_nft_masquerade_answers_an_outside_client_whose_pod_is_on_another_node(nodes, family):
    node3 = nodes.nodes["node3"]
    web = nodes.nodes["node1"].pods[0]
    url = f"http://{node3.ip}:{NODE_PORT}/" if family == 4 else f"http://[{node3.ip6}]:{NODE_PORT}/"
    iptables = "iptables-nft" if family == 4 else "ip6tables-nft"
    curl = ("curl", "-s", "-g", "-m", "2", url)
    # Control: IPVS alone sends the request to node1's pod, which answers the client directly; the client drops it.
    assert in_ns(CLIENT, *curl, check=False, timeout=30).returncode != 0
    rule = masquerade(node3, family)
    node3.run(iptables, *rule)
    try:
        saved = node3.run(f"{iptables}-save", "-t", "nat").stdout.splitlines()
        pods, own_ip = (node3.pod_cidr, node3.ip) if family == 4 else (node3.pod_cidr6, node3.ip6)
        assert (f"-A POSTROUTING ! -s {pods} ! -d {pods} -m ipvs --vdir ORIGINAL --vmethod MASQ "
                f"-j SNAT --to-source {own_ip}") in saved, saved
        family_table = "ip" if family == 4 else "ip6"
        assert f"table {family_table} nat" in node3.run("nft", "list", "tables").stdout  # in nf_tables, not legacy
        answer = in_ns(CLIENT, *curl, timeout=30).stdout.split()
        # The pod was reached and saw node3's address, not the client's.
        assert answer == ["1-web", web.ip if family == 4 else web.ip6, "from", node3.ip if family == 4 else node3.ip6]
    finally:
        node3.run(iptables, *["-D" if word == "-A" else word for word in rule])


def test_a_pod_reaches_a_cluster_ip_on_the_dummy_link_with_its_own_address(nodes):
    node3 = nodes.nodes["node3"]
    node3.run("iptables-nft", *masquerade(node3, 4))
    try:
        dummy = node3.run("ip", "-o", "addr", "show", "dev", "kube-dummy-if").stdout
        assert f"{CLUSTER_IP}/32" in dummy, dummy
        answer = in_ns("3-caller", "curl", "-s", "-m", "5", f"http://{CLUSTER_IP}/", timeout=30).stdout.split()
        web = nodes.nodes["node1"].pods[0]
        assert answer == ["1-web", web.ip, "from", node3.pods[0].ip]
        # IPVS on node3 carried it (its connection table; its counters lag by the estimator's 2 s).
        # Lines: protocol, expiry, state, source, virtual, destination.
        connections = [line.split()[3:] for line in node3.run("ipvsadm", "-L", "-n", "-c").stdout.splitlines()[2:]]
        assert [node3.pods[0].ip, f"{CLUSTER_IP}:80", f"{web.ip}:8080"] in [
            [source.rsplit(":", 1)[0], virtual, destination] for source, virtual, destination in connections
        ], connections
    finally:
        node3.run("iptables-nft", "-t", "nat", "-F", "POSTROUTING")
