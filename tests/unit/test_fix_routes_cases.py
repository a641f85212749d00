"""fix-routes on nodes laid out the ways issue 10 measured, against the simulated table local (netsim)."""
import logging

import pytest

from kipvs.commands.fix_routes import fix_routes
from kipvs.errors import ConfigError
from kipvs.facts.iproute import read_net_facts
from kipvs.routes import default_route_node_ips, resolve_node_ips
from tests.unit.netsim import DUMMY, FakeNode, SimRunner

NODE4, NODE6 = "192.168.123.249", "fd00:123::249"


def run(node, *node_ips, interface=DUMMY, between=None):
    return fix_routes(SimRunner(node, between=between), interface, list(node_ips))


def converged(node, interface=DUMMY):
    again = run(node, interface=interface)
    return again.commands == [] and again.ok


def test_ipv6_vip_equal_to_the_node_address_keeps_eth0s_route():
    node = FakeNode()
    node.add_address(DUMMY, NODE6)
    report = run(node)
    assert ("eth0", None, 0) in node.routes_for(NODE6) and ("kube-dummy-if", None, 0) in node.routes_for(NODE6)
    assert not any(f"local {NODE6} " in line for line in report.commands) and converged(node)


def test_ipv4_vip_also_on_lo_repairs_only_the_dummy_route(caplog):
    node = FakeNode()
    node.routes.insert(0, node.kernel_route("lo", "10.254.0.10"))  # lo's route first: it is the one `replace` hit
    with caplog.at_level(logging.WARNING):
        report = run(node)
    assert node.routes_for("10.254.0.10") == [("lo", "10.254.0.10", 0), (DUMMY, NODE4, 0)]
    assert report.ok and "10.254.0.10 is also on lo" in caplog.text and converged(node)


def test_ipv6_vip_also_on_lo_keeps_los_route():
    node = FakeNode()
    node.routes.append({"type": "local", "dst": "fd00:254::10", "dev": "lo", "protocol": "kernel", "metric": 0})
    run(node)
    assert ("lo", None, 0) in node.routes_for("fd00:254::10") and converged(node)


@pytest.mark.parametrize("kernel_first", [True, False])
def test_down_up_kernel_route_beside_the_repaired_one(kernel_first):
    node = FakeNode()
    run(node)
    for vip in ("10.254.0.10", "fd00:254::10"):  # what the kernel does on down/up: its own route comes back
        route = node.kernel_route(DUMMY, vip)
        node.routes.insert(node.routes.index(next(r for r in node.routes if r["dst"] == vip)) + (not kernel_first),
                           route)
    report = run(node)
    assert report.ok and node.errors == []
    assert node.routes_for("10.254.0.10") == [(DUMMY, NODE4, 0)]
    assert node.routes_for("fd00:254::10") == [(DUMMY, NODE6, 1024)]
    assert converged(node)


def test_vip_withdrawn_between_read_and_batch_leaves_no_route():
    node = FakeNode()

    def withdraw(n):
        if any(a["local"] == "10.254.0.10" for a in n.links[DUMMY]["addr_info"]):
            n.remove_address(DUMMY, "10.254.0.10")

    report = run(node, between=withdraw)
    assert node.routes_for("10.254.0.10") == [] and report.ok and converged(node)


def test_route_left_for_a_withdrawn_vip_is_removed():
    node = FakeNode()
    run(node)
    node.remove_address(DUMMY, "10.254.0.10")
    node.remove_address(DUMMY, "fd00:254::10")
    assert node.routes_for("10.254.0.10") == [(DUMMY, NODE4, 0)]  # the kernel keeps the repaired route
    report = run(node)
    assert node.routes_for("10.254.0.10") == [] and node.routes_for("fd00:254::10") == []
    assert report.stale_removed == 2 and "2 stale route(s) removed" in report.summary() and converged(node)


def test_kube_proxy_layout_down_interface_repairs_ipv4_and_skips_ipv6(caplog):
    node = FakeNode()
    node.add_link("kube-ipvs0", up=False)
    node.add_address("kube-ipvs0", "10.96.0.1")
    node.add_address("kube-ipvs0", "fd00:96::1")
    with caplog.at_level(logging.WARNING):
        report = run(node, interface="kube-ipvs0")
    assert node.routes_for("10.96.0.1") == [("kube-ipvs0", NODE4, 0)]
    assert node.routes_for("fd00:96::1") == [("kube-ipvs0", None, 0)]  # untouched: never fewer routes
    assert report.ok and report.skipped == ["fd00:96::1"] and "kube-ipvs0 is down" in caplog.text
    assert "1 skipped" in report.summary() and node.errors == [] and converged(node, "kube-ipvs0")


@pytest.mark.parametrize("bad,why", [("10.254.0.10", "a service address on kube-dummy-if"),
                                     ("127.0.0.1", "loopback"), ("::1", "loopback"),
                                     ("fe80::b01c:bfff:fe32:574d", "link-local")])
def test_node_ip_that_cannot_be_a_source_is_refused(bad, why):
    node = FakeNode()
    before = list(node.routes)
    with pytest.raises(ConfigError, match=why):
        run(node, bad)
    assert node.routes == before


def test_non_canonical_ipv6_spelling_of_a_node_ip_is_accepted():
    report = run(FakeNode(), "FD00:123:0:0::249")
    assert report.node_ips[6] == NODE6 and report.ok


def test_a_family_with_service_addresses_but_no_node_ip_is_an_error():
    node = FakeNode()
    node.default6 = []
    before = list(node.routes)
    with pytest.raises(ConfigError, match="no IPv6 node IP.*pass --node-ip"):
        run(node)
    assert node.routes == before


def test_two_global_ipv6_addresses_pick_the_lowest_permanent_one_stably():
    node = FakeNode()
    eth0 = node.links["eth0"]["addr_info"]
    newest = [{"family": "inet6", "local": "fd00:123::1", "prefixlen": 64, "scope": "global", "dynamic": True},
              {"family": "inet6", "local": "fd00:123::2", "prefixlen": 64, "scope": "global", "temporary": True},
              {"family": "inet6", "local": "fd00:123::3", "prefixlen": 64, "scope": "global", "deprecated": True}]
    node.links["eth0"]["addr_info"] = newest + eth0  # the kernel lists the newest first
    facts = read_net_facts(SimRunner(node))
    assert default_route_node_ips(facts)[6] == NODE6
    node.links["eth0"]["addr_info"].insert(0, {"family": "inet6", "local": "fd00:123::300", "prefixlen": 64,
                                               "scope": "global"})
    assert default_route_node_ips(read_net_facts(SimRunner(node)))[6] == NODE6  # a newer one changes nothing


def test_ecmp_default_route_still_gives_a_node_ip():
    node = FakeNode()
    node.default4 = [{"dst": "default", "flags": [], "nexthops": [
        {"gateway": "192.168.123.1", "dev": "eth0", "weight": 1, "flags": []},
        {"gateway": "192.168.123.2", "dev": "eth0", "weight": 1, "flags": []}]}]
    node.default6 = [{"dst": "default", "metric": 1024, "flags": [], "nexthops": [
        {"gateway": "fd00:123::1", "dev": "eth0", "weight": 1, "flags": []}]}]
    facts = read_net_facts(SimRunner(node))
    assert resolve_node_ips([], facts) == {4: NODE4, 6: NODE6}


def test_anyip_subnet_route_on_the_interface_is_not_a_leftover():
    node = FakeNode()
    node.routes.append({"type": "local", "dst": "10.96.0.0/12", "dev": DUMMY, "protocol": "boot", "scope": "host",
                        "prefsrc": NODE4})
    run(node)
    assert node.routes_for("10.96.0.0/12") == [(DUMMY, NODE4, 0)] and converged(node)


def test_dry_run_counts_stale_routes_it_would_remove_and_removes_nothing():
    node = FakeNode()
    run(node)
    node.remove_address(DUMMY, "10.254.0.10")
    before = list(node.routes)
    runner = SimRunner(node, dry_run=True)
    report = fix_routes(runner, DUMMY, [])
    assert node.routes == before and report.stale_removed == 1 and "1 stale route(s) to remove" in report.summary()
    assert runner.out.getvalue().splitlines() == [
        "ip route del local 10.254.0.10 dev kube-dummy-if table local proto kernel src 192.168.123.249 metric 0"]
    assert report.changes == [{"address": "10.254.0.10", "change": "remove stale route",
                               "lines": [runner.out.getvalue().strip()[3:]]}]
