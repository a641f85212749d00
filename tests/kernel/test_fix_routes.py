"""kube-router #376 reproduced on a real kernel, then repaired by `kipvs fix-routes`."""
import json

import pytest

from tests.kernel.scenario import (KUBERNETES_VIP, WEB_ONE_VIP, WEB_ONE_VIP6, WEB_RR_VIP, answering_pods,
                                   build_issue_376)


@pytest.fixture
def nodes(cluster):
    build_issue_376(cluster)
    return cluster.nodes


def fix_routes(node, *args):
    proc = node.kipvs("fix-routes", "--output", "json", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_service_on_another_node_hangs_until_routes_are_fixed(nodes):
    node3 = nodes["node3"]
    assert node3.curl(f"http://{WEB_ONE_VIP}/") is None, "the #376 symptom should reproduce before the fix"
    report = fix_routes(node3)
    assert report["checked"] == 4 and report["fixed"] == 4 and report["failed"] == []
    body = node3.curl(f"http://{WEB_ONE_VIP}/")
    assert body and body.startswith("1-web 172.20.1.2 from 192.168.123.249"), body


def test_round_robin_reaches_every_node_only_after_the_fix(nodes):
    node3 = nodes["node3"]
    assert answering_pods(node3, f"http://{WEB_RR_VIP}/", tries=3) == {"3-web"}
    fix_routes(node3)
    assert answering_pods(node3, f"http://{WEB_RR_VIP}/", tries=6) == {"1-web", "2-web", "3-web"}


def test_kubernetes_service_from_a_node_without_the_api_server(nodes):
    node2 = nodes["node2"]
    assert node2.curl(f"http://{KUBERNETES_VIP}:443/") is None
    fix_routes(node2)
    assert node2.curl(f"http://{KUBERNETES_VIP}:443/").startswith("apiserver 192.168.123.250 from 192.168.123.248")


def test_ipv6_vip_is_repaired_and_kernel_route_removed(nodes):
    node3 = nodes["node3"]
    assert node3.curl(f"http://[{WEB_ONE_VIP6}]/") is None
    fix_routes(node3)
    routes = [line for line in node3.local_routes(6).splitlines() if line.startswith(f"local {WEB_ONE_VIP6} ")]
    assert len(routes) == 1 and "src fd00:123::249" in routes[0], routes
    assert node3.curl(f"http://[{WEB_ONE_VIP6}]/").startswith("1-web fd00:20:1::2 from fd00:123::249")


def test_second_run_plans_nothing(nodes):
    node1 = nodes["node1"]
    first = fix_routes(node1)
    # four adds, each kernel route's delete once the add is read back, then the neighbour flush
    assert len(first["commands"]) == 9 and first["commands"][-1] == "ip neigh flush nud incomplete"
    second = fix_routes(node1)
    assert second["commands"] == [] and second["fixed"] == 0 and second["already_correct"] == 4
    assert node1.kipvs("fix-routes").stderr.strip().endswith("nothing to change")


def test_dry_run_prints_exact_commands_and_changes_nothing(nodes):
    node2 = nodes["node2"]
    before = node2.local_routes(4) + node2.local_routes(6)
    proc = node2.kipvs("fix-routes", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert node2.local_routes(4) + node2.local_routes(6) == before
    lines = proc.stdout.splitlines()
    expected = f"ip route append local {WEB_ONE_VIP} dev kube-dummy-if proto kernel scope host src 192.168.123.248 table local"
    assert expected in lines and len(lines) == 9 and lines[-1] == "ip neigh flush nud incomplete"
    assert "ip route del local fd00:254::10 dev kube-dummy-if table local proto kernel metric 0" in lines
    # the printed lines are real commands: running them does what fix-routes would
    for line in lines:
        node2.run(*line.split())
    assert fix_routes(node2)["commands"] == []


def test_routes_of_other_interfaces_are_never_touched(nodes):
    node3 = nodes["node3"]
    node3.run("ip", "link", "add", "other0", "type", "dummy")
    node3.run("ip", "link", "set", "other0", "up")
    node3.run("ip", "addr", "add", "10.99.0.1/32", "dev", "other0")
    fix_routes(node3)
    assert "local 10.99.0.1 dev other0 proto kernel scope host src 10.99.0.1" in node3.local_routes(4)
    assert "local 192.168.123.249 dev eth0 proto kernel scope host src 192.168.123.249" in node3.local_routes(4)


def test_kube_proxy_interface_name_and_explicit_node_ip(cluster):
    node = cluster.add_node("node1")
    node.run("ip", "link", "add", "kube-ipvs0", "type", "dummy")
    node.run("ip", "addr", "add", "10.96.0.1/32", "dev", "kube-ipvs0")
    node.run("ip", "addr", "add", "192.168.50.7/32", "dev", "eth0")
    report = fix_routes(node, "--interface", "kube-ipvs0", "--node-ip", "192.168.50.7")
    assert report["fixed"] == 1
    assert "local 10.96.0.1 dev kube-ipvs0 proto kernel scope host src 192.168.50.7" in node.local_routes(4)


def test_clear_errors(cluster):
    node = cluster.add_node("node1")
    missing = node.kipvs("fix-routes")
    assert missing.returncode == 2 and "interface kube-dummy-if does not exist" in missing.stderr
    node.run("ip", "link", "add", "kube-dummy-if", "type", "dummy")
    foreign = node.kipvs("fix-routes", "--node-ip", "192.168.99.99")
    assert foreign.returncode == 2 and "not configured on this host" in foreign.stderr
    assert "Invalid prefsrc" in foreign.stderr and len(foreign.stderr.strip().splitlines()) == 1


def widen_the_race(node, seconds: float = 20) -> None:
    """One ARP probe per resolution, given up after `seconds`: a connection made right after the repair then
    always lands where the demo's sometimes did, behind a probe that was sent with the VIP as sender."""
    node.run("sysctl", "-qw", "net.ipv4.neigh.eth0.mcast_solicit=1",
             f"net.ipv4.neigh.eth0.retrans_time_ms={int(seconds * 1000)}")


def node1_neighbour(node) -> str:
    return node.run("ip", "-4", "neigh", "show", "192.168.123.250", "dev", "eth0").stdout.strip()


def test_without_the_flush_the_first_connection_after_the_repair_is_lost(nodes):
    """Why fix-routes flushes unresolved neighbours: the route lines alone leave node3's ARP entry for node1
    INCOMPLETE (its probe said "tell 10.254.0.1", which node1 never answers), and the new SYN waits there."""
    node3 = nodes["node3"]
    widen_the_race(node3)
    assert node3.curl(f"http://{KUBERNETES_VIP}:443/", 1.0) is None
    assert node1_neighbour(node3).endswith("INCOMPLETE")
    planned = node3.kipvs("fix-routes", "--dry-run").stdout.splitlines()
    assert planned[-1] == "ip neigh flush nud incomplete"
    for line in planned[:-1]:
        node3.run(*line.split())
    assert node3.curl(f"http://{KUBERNETES_VIP}:443/", 3.0) is None


def test_the_first_connection_after_the_repair_is_answered(nodes):
    node3 = nodes["node3"]
    widen_the_race(node3)
    assert node3.curl(f"http://{KUBERNETES_VIP}:443/", 1.0) is None
    assert node1_neighbour(node3).endswith("INCOMPLETE")
    fix_routes(node3)
    assert node1_neighbour(node3) == ""  # flushed: the next packet resolves afresh, as 192.168.123.249
    body = node3.curl(f"http://{KUBERNETES_VIP}:443/", 3.0)
    assert body and body.startswith("apiserver 192.168.123.250 from 192.168.123.249"), body
