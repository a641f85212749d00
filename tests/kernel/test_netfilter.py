"""kipvs's netfilter rules on a real kernel, proven with packets: masquerade, hairpin, the service-address
firewall, loadBalancerSourceRanges, and ownership (a user's rules survive, cleanup restores the tables and
removes kipvs's ipsets). The packet paths kube-proxy fixed each have a control: the rule the old rule
list had, put back by hand, breaks the path again. Backend-agnostic (see netfilter_lab.py)."""
import json

import pytest

from tests.kernel.lab import Cluster
from tests.kernel.netfilter_lab import (CLIENT, NODE1, NODE3, OTHER_CLIENT, add_client, curl, endpoints, ipsets,
                                        iptables, node_object, service, tables)

pytestmark = pytest.mark.netfilter

RANGES = ("--service-external-ip-range", "192.168.200.0/24", "--loadbalancer-ip-range", "192.168.201.0/24")


def cluster_file(lab, path, pod_cidrs=True):
    pods = {p.name: p for n in lab.nodes.values() for p in n.pods}
    one, three = [pods["1-web"]], [pods["3-web"]]
    items = [node_object(n.name, n.ip, n.index) for n in lab.nodes.values() if n.name.startswith("node")] + [
        service("np", ["10.254.1.1"], "NodePort", 30100), endpoints("np", one),
        service("local", ["10.254.1.2"], "LoadBalancer", 30101, local=True, external_ips=["192.168.200.20"],
                lb_ip="192.168.201.20"), endpoints("local", three),
        service("ext", ["10.254.1.3"], external_ips=["192.168.200.30"]), endpoints("ext", one),
        service("ranged", ["10.254.1.4"], "LoadBalancer", 30104, lb_ip="192.168.201.30",
                source_ranges=[f"{CLIENT}/32"]), endpoints("ranged", three),
        service("solo", ["10.254.1.10", "fd00:254::1:10"]), endpoints("solo", three), endpoints("solo", three, 6),
    ]
    if not pod_cidrs:
        for item in items:
            item.get("spec", {}).pop("podCIDRs", None) if item["kind"] == "Node" else None
    path.write_text(json.dumps({"kind": "List", "apiVersion": "v1", "items": items}))
    return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    cluster = Cluster()
    try:
        for name in ("node1", "node2", "node3"):
            cluster.add_pod(cluster.add_node(name), f"{name[-1]}-web")
        add_client(cluster)
        folder = tmp_path_factory.mktemp("nf")
        cluster.file = cluster_file(cluster, folder / "cluster.json")
        cluster.file_without_pod_cidrs = cluster_file(cluster, folder / "no-pod-cidrs.json", pod_cidrs=False)
        yield cluster
    finally:
        cluster.close()


def sync(lab, node, *args, file=None):
    proc = node.kipvs("sync", "-f", str(file or lab.file), "--node-name", node.name, *RANGES, "--output", "json",
                      *args)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["problems"] == [] and report["converged"], report
    report["stderr"] = proc.stderr
    return report


def test_a_users_rules_survive_sync_and_cleanup_restores_both_families_exactly(lab):
    node2 = lab.nodes["node2"]
    for family, net in ((4, "10.99.0.0/16"), (6, "fd99::/64")):
        iptables(node2, "-t", "nat", "-A", "POSTROUTING", "-s", net, "-j", "MASQUERADE", family=family)
        iptables(node2, "-t", "filter", "-N", "USER-CHAIN", family=family)
        iptables(node2, "-t", "filter", "-A", "INPUT", "-p", "tcp", "--dport", "9999", "-j", "USER-CHAIN", family=family)
        iptables(node2, "-t", "filter", "-A", "USER-CHAIN", "-j", "ACCEPT", family=family)
    before = {f: tables(node2, f) for f in (4, 6)}
    first = sync(lab, node2)
    assert any("restore" in line for line in first["commands"])
    for family in (4, 6):
        after = tables(node2, family)
        assert [line for line in before[family] if line.startswith("-A")] == \
            [line for line in after if line.startswith("-A") and "KIPVS" not in line]
        assert any(line.startswith("-A KIPVS-POSTROUTING") for line in after)
        # A handful of rules whatever the number of Services: the Services are set members.
        assert len([line for line in after if line.startswith("-A KIPVS-INPUT")]) == 5
    assert {"KIPVS-SERVICE-IPS", "KIPVS-SERVICE-IPS6", "KIPVS-HAIRPIN"} <= set(ipsets(node2))
    again = sync(lab, node2)
    assert again["commands"] == [] and not any(again["counts"].values())
    proc = node2.kipvs("cleanup")
    assert proc.returncode == 0, proc.stderr
    # The same tables, rule for rule; the mangle table kipvs used stays loaded (legacy), empty.
    assert {f: without_empty_tables(tables(node2, f), before[f]) for f in (4, 6)} == before
    assert [name for name in ipsets(node2) if name.startswith("KIPVS-")] == []


def without_empty_tables(lines, before):
    """`lines` (a save) without the tables that were not in `before` and hold no rule and no user chain."""
    kept, table = [], []
    for line in lines + ["*"]:
        if line.startswith("*"):
            empty = all(entry.startswith(("*", "COMMIT")) or (entry.startswith(":") and " ACCEPT " in entry)
                        for entry in table)
            if table and (table[0] in before or not empty):
                kept += table
            table = []
        table.append(line)
    return kept


def test_outside_client_through_node3_reaches_a_pod_on_node1_only_with_masquerade(lab):
    node3 = lab.nodes["node3"]
    sync(lab, node3)
    assert curl("outside", f"http://{NODE3}:30100/") == f"1-web 172.20.1.2 from {NODE3}"
    assert curl("outside", "http://192.168.200.30/") == f"1-web 172.20.1.2 from {NODE3}"
    # Control: without kipvs's nat rules the pod answers the client directly, which drops it.
    iptables(node3, "-t", "nat", "-F", "KIPVS-POSTROUTING")
    assert curl("outside", f"http://{NODE3}:30100/") is None
    repaired = sync(lab, node3)
    assert repaired["counts"].get("netfilter chains written") == 1
    assert curl("outside", f"http://{NODE3}:30100/") == f"1-web 172.20.1.2 from {NODE3}"


def test_local_policy_keeps_the_client_ip_and_pods_keep_theirs(lab):
    node1, node3 = lab.nodes["node1"], lab.nodes["node3"]
    sync(lab, node3)
    for url in (f"http://{NODE3}:30101/", "http://192.168.200.20/", "http://192.168.201.20/"):
        assert curl("outside", url) == f"3-web 172.20.3.2 from {CLIENT}", url
    sync(lab, node1)
    assert curl("1-web", "http://10.254.1.10/") == "3-web 172.20.3.2 from 172.20.1.2"


def test_hairpin_a_pod_reaches_its_own_service_ipv4_and_ipv6(lab):
    sync(lab, lab.nodes["node3"])
    for url in ("http://10.254.1.10/", "http://[fd00:254::1:10]/"):
        answers = [curl("3-web", url) for _ in range(10)]
        assert all(a and a.startswith("3-web ") for a in answers), (url, answers)


def test_firewall_closes_host_ports_on_service_addresses_but_not_service_ports_or_ping(lab):
    node3 = lab.nodes["node3"]
    lab.serve("node3", "listener", 2222)
    sync(lab, node3, "--ipvs-permit-all")
    assert curl("node3", "http://10.254.1.10:2222/").startswith("listener ")  # control: open without it
    sync(lab, node3)
    assert curl("node3", "http://10.254.1.10:2222/") is None
    assert curl("node3", "http://[fd00:254::1:10]:2222/") is None
    assert curl("node3", "http://10.254.1.10/").startswith("3-web ")
    assert curl("node3", f"http://{NODE3}:2222/").startswith("listener ")  # the node's own address is not touched
    assert node3.run("busybox", "ping", "-c", "1", "-W", "2", "10.254.1.10", check=False).returncode == 0


def test_load_balancer_source_ranges(lab):
    node3 = lab.nodes["node3"]
    sync(lab, node3)
    assert curl("outside", "http://192.168.201.30/").startswith("3-web ")
    assert curl("outside", "http://192.168.201.30/", source=OTHER_CLIENT) is None
    # The node and its pods are bound by the ranges too (kubernetes #119791).
    assert curl("node3", "http://192.168.201.30/") is None
    assert curl("3-web", "http://192.168.201.30/") is None
    # Control: the old rule list let its pods through and never saw the node's own connections (IPVS takes
    # them at LOCAL_OUT, before INPUT; KIPVS-OUTPUT in mangle sees them first).
    iptables(node3, "-I", "KIPVS-INPUT", "1", "-s", "172.20.3.0/24", "-j", "RETURN")
    iptables(node3, "-t", "mangle", "-F", "KIPVS-OUTPUT")
    assert curl("node3", "http://192.168.201.30/").startswith("3-web ")
    assert curl("3-web", "http://192.168.201.30/").startswith("3-web ")
    again = sync(lab, node3)
    assert again["counts"].get("netfilter chains written") == 2
    assert curl("node3", "http://192.168.201.30/") is None
    assert curl("3-web", "http://192.168.201.30/") is None
    assert sync(lab, node3)["commands"] == []


def test_a_pod_of_another_node_reaches_a_node_port_whose_pod_is_on_a_third_node_with_cluster_cidr(lab):
    node3 = lab.nodes["node3"]
    cidr = ("--cluster-cidr", "172.20.0.0/16", "--cluster-cidr", "fd00:20::/48")
    report = sync(lab, node3, *cidr)
    assert [line for line in tables(node3) if "--random-fully" in line and "SNAT" in line], tables(node3)
    # 2-web (node2) -> node3:30100 -> 1-web (node1): SNATed to node3, so node1's pod answers node3.
    assert curl("2-web", f"http://{NODE3}:30100/") == f"1-web 172.20.1.2 from {NODE3}", report
    # Control: the old rule list returned for the cluster CIDR before any NodePort rule: no SNAT, a hang.
    iptables(node3, "-t", "nat", "-I", "KIPVS-POSTROUTING", "1", "-s", "172.20.0.0/16", "-j", "RETURN")
    assert curl("2-web", f"http://{NODE3}:30100/") is None


def test_without_a_pod_cidr_pod_traffic_is_not_snated_and_sync_warns(lab):
    node1 = lab.nodes["node1"]
    report = sync(lab, node1, file=lab.file_without_pod_cidrs)
    assert "--detect-local-mode NodeCIDR: the Node has no spec.podCIDRs" in report["stderr"], report["stderr"]
    assert curl("1-web", "http://10.254.1.10/") == "3-web 172.20.3.2 from 172.20.1.2"
    # Control: the old rule list's only nat rule then was `-j SNAT --to-source NODE_IP`.
    iptables(node1, "-t", "nat", "-I", "KIPVS-POSTROUTING", "1", "-j", "SNAT", "--to-source", NODE1)
    assert curl("1-web", "http://10.254.1.10/") == f"3-web 172.20.3.2 from {NODE1}"
    # A bridge detector names the pods' traffic without any CIDR: quiet, and the pod keeps its IP.
    report = sync(lab, node1, "--detect-local-mode", "BridgeInterface", "--pod-bridge-interface", "kube-bridge",
                  file=lab.file_without_pod_cidrs)
    assert "--detect-local-mode" not in report["stderr"], report["stderr"]
    assert curl("1-web", "http://10.254.1.10/") == "3-web 172.20.3.2 from 172.20.1.2"
