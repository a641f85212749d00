import pytest

from kipvs.errors import ConfigError
from kipvs.facts.iproute import read_net_facts
from kipvs.routes import (FLUSH_UNRESOLVED_NEIGHBOURS, check_routes, default_route_node_ips, repair_lines,
                          resolve_node_ips, service_addresses_on)
from tests.unit.fakes import RecordingRunner, fixture_outputs

BEFORE = read_net_facts(RecordingRunner(fixture_outputs("node-before-fix")))
AFTER = read_net_facts(RecordingRunner(fixture_outputs("node-after-fix")))
NODE_IPS = {4: "192.168.123.249", 6: "fd00:123::249"}


def test_vips_are_the_dummy_interface_addresses_without_link_local():
    assert service_addresses_on(BEFORE, "kube-dummy-if") == ["10.254.0.1", "10.254.0.10", "fd00:254::10"]
    assert service_addresses_on(BEFORE, "kube-ipvs0") == []


def test_wrong_routes_get_replace_and_ipv6_kernel_route_gets_deleted():
    checks = check_routes(service_addresses_on(BEFORE, "kube-dummy-if"), "kube-dummy-if", NODE_IPS, BEFORE)
    assert [c.correct for c in checks] == [False, False, False]
    assert [line for c in checks for line in c.lines] == [
        "route replace local 10.254.0.1 dev kube-dummy-if proto kernel scope host src 192.168.123.249 table local",
        "route replace local 10.254.0.10 dev kube-dummy-if proto kernel scope host src 192.168.123.249 table local",
        "route replace local fd00:254::10 dev kube-dummy-if proto kernel scope host src fd00:123::249 table local",
        "route del local fd00:254::10 dev kube-dummy-if table local proto kernel metric 0",
    ]


def test_repaired_routes_plan_nothing():
    checks = check_routes(service_addresses_on(AFTER, "kube-dummy-if"), "kube-dummy-if", NODE_IPS, AFTER)
    assert all(c.correct for c in checks) and not any(c.lines for c in checks)


def test_an_ipv4_repair_flushes_unresolved_neighbours_last_and_only_then():
    checks = check_routes(service_addresses_on(BEFORE, "kube-dummy-if"), "kube-dummy-if", NODE_IPS, BEFORE)
    assert repair_lines(checks)[-1] == FLUSH_UNRESOLVED_NEIGHBOURS == "neigh flush nud incomplete"
    assert repair_lines(checks)[:-1] == tuple(line for c in checks for line in c.lines)
    ipv6_only = check_routes(["fd00:254::10"], "kube-dummy-if", NODE_IPS, BEFORE)
    assert FLUSH_UNRESOLVED_NEIGHBOURS not in repair_lines(ipv6_only)  # NDP never takes the VIP as source
    repaired = check_routes(service_addresses_on(AFTER, "kube-dummy-if"), "kube-dummy-if", NODE_IPS, AFTER)
    assert repair_lines(repaired) == ()


def test_a_family_without_node_ip_is_reported_not_guessed():
    checks = check_routes(["fd00:254::10"], "kube-dummy-if", {4: "192.168.123.249"}, BEFORE)
    assert checks[0].node_ip is None and not checks[0].correct and checks[0].lines == ()


def test_node_ip_defaults_to_primary_address_of_default_route_interface():
    assert default_route_node_ips(BEFORE) == NODE_IPS  # not the secondary 192.168.123.77
    assert resolve_node_ips([], BEFORE) == NODE_IPS


def test_explicit_node_ip_wins_and_must_be_local():
    assert resolve_node_ips(["192.168.123.77"], BEFORE)[4] == "192.168.123.77"
    assert resolve_node_ips([], BEFORE, fallback={4: "192.168.123.77"})[4] == "192.168.123.77"
    with pytest.raises(ConfigError, match="192.168.1.1 is not configured on this host.*Invalid prefsrc"):
        resolve_node_ips(["192.168.1.1"], BEFORE)
    with pytest.raises(ConfigError, match="not an IP address"):
        resolve_node_ips(["node-a"], BEFORE)
    with pytest.raises(ConfigError, match="one per family"):
        resolve_node_ips(["192.168.123.249", "192.168.123.77"], BEFORE)
