import pytest

from kipvs.errors import ConfigError
from kipvs.facts.iproute import read_net_facts
from kipvs.model import LocalRoute
from kipvs.routes import check_route, check_routes, default_route_node_ips, resolve_node_ips, service_addresses_on
from tests.unit.fakes import RecordingRunner, fixture_outputs

BEFORE = read_net_facts(RecordingRunner(fixture_outputs("node-before-fix")))
AFTER = read_net_facts(RecordingRunner(fixture_outputs("node-after-fix")))
NODE_IPS = {4: "192.168.123.249", 6: "fd00:123::249"}


def test_vips_are_the_dummy_interface_addresses_without_link_local():
    assert service_addresses_on(BEFORE, "kube-dummy-if") == ["10.254.0.1", "10.254.0.10", "fd00:254::10"]
    assert service_addresses_on(BEFORE, "kube-ipvs0") == []


def test_wrong_routes_get_an_add_that_removes_nothing():
    checks = check_routes(service_addresses_on(BEFORE, "kube-dummy-if"), "kube-dummy-if", NODE_IPS, BEFORE)
    assert [c.correct for c in checks] == [False, False, False] and not any(c.remove for c in checks)
    assert [line for c in checks for line in c.lines] == [
        "route append local 10.254.0.1 dev kube-dummy-if proto kernel scope host src 192.168.123.249 table local",
        "route append local 10.254.0.10 dev kube-dummy-if proto kernel scope host src 192.168.123.249 table local",
        "route replace local fd00:254::10 dev kube-dummy-if proto kernel scope host src fd00:123::249 table local",
    ]


def test_wrong_routes_go_once_the_repaired_one_is_there():
    routes = [LocalRoute("local", "fd00:254::10", "kube-dummy-if", None, "kernel", None, 0),
              LocalRoute("local", "fd00:254::10", "kube-dummy-if", "fd00:123::249", "kernel", None, 1024)]
    check = check_route("fd00:254::10", "kube-dummy-if", "fd00:123::249", routes)
    assert check.add == () and check.remove == (
        "route del local fd00:254::10 dev kube-dummy-if table local proto kernel metric 0",)


def test_routes_of_other_devices_are_neither_counted_nor_touched():
    lo = LocalRoute("local", "10.96.0.1", "lo", "10.96.0.1", "kernel", "host", 0)
    ours = LocalRoute("local", "10.96.0.1", "kube-dummy-if", "192.168.123.249", "kernel", "host", 0)
    assert check_route("10.96.0.1", "kube-dummy-if", "192.168.123.249", [lo, ours]).correct
    lo6 = LocalRoute("local", "fd00:96::1", "lo", None, "kernel", None, 0)
    check = check_route("fd00:96::1", "kube-dummy-if", "fd00:123::249", [lo6])
    assert check.remove == () and "dev kube-dummy-if" in check.add[0]


def test_the_node_address_as_a_vip_is_left_alone():
    eth0 = LocalRoute("local", "fd00:123::249", "eth0", None, "kernel", None, 0)
    dummy = LocalRoute("local", "fd00:123::249", "kube-dummy-if", None, "kernel", None, 0)
    assert check_route("fd00:123::249", "kube-dummy-if", "fd00:123::249", [eth0, dummy]).correct


def test_repaired_routes_plan_nothing():
    checks = check_routes(service_addresses_on(AFTER, "kube-dummy-if"), "kube-dummy-if", NODE_IPS, AFTER)
    assert all(c.correct for c in checks) and not any(c.lines for c in checks)


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


def test_an_ipv4_route_without_src_is_left_and_reported_not_deleted_blindly():
    """Without src an IPv4 delete matches the first route of the device, which may be ours."""
    ours = LocalRoute("local", "10.96.0.1", "kube-dummy-if", "192.168.123.249", "kernel", "host", 0)
    bare = LocalRoute("local", "10.96.0.1", "kube-dummy-if", None, "boot", "host", 0)
    check = check_route("10.96.0.1", "kube-dummy-if", "192.168.123.249", [bare, ours])
    assert check.lines == () and not check.correct
