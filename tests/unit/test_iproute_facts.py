import json

from kipvs.facts.iproute import default_route_list, parse_links, parse_route_list, read_net_facts, split_json_documents
from kipvs.model import LocalRoute
from tests.unit.fakes import RecordingRunner, fixture_outputs

BEFORE = fixture_outputs("node-before-fix")
AFTER = fixture_outputs("node-after-fix")


def test_addresses_of_every_interface_with_flags():
    addresses, interfaces, up = parse_links(json.loads(BEFORE["ip -j addr show"]))
    assert {"lo", "eth0", "kube-dummy-if", "other0"} == interfaces == up
    eth0 = [(a.ip, a.family, a.secondary) for a in addresses if a.interface == "eth0" and a.scope == "global"]
    assert eth0 == [("192.168.123.249", 4, False), ("192.168.123.77", 4, True), ("fd00:123::249", 6, False)]
    dummy = [a for a in addresses if a.interface == "kube-dummy-if"]
    assert [a.ip for a in dummy if not a.is_link_local] == ["10.254.0.1", "10.254.0.10", "fd00:254::10"]
    assert any(a.is_link_local for a in dummy)


def test_local_routes_ipv4_and_ipv6_with_metrics():
    v4 = parse_route_list(json.loads(BEFORE["ip -j -4 route show table local"]))
    assert LocalRoute("local", "10.254.0.1", "kube-dummy-if", "10.254.0.1", "kernel", "host", 0) in v4
    v6_after = parse_route_list(json.loads(AFTER["ip -j -6 route show table local"]))
    vip = [r for r in v6_after if r.dst == "fd00:254::10"]
    assert vip == [LocalRoute("local", "fd00:254::10", "kube-dummy-if", "fd00:123::249", "kernel", None, 1024)]


def test_default_routes_per_family():
    assert default_route_list(json.loads(BEFORE["ip -j -4 route show default"]), 4)[0].dev == "eth0"
    assert default_route_list(json.loads(BEFORE["ip -j -6 route show default"]), 6)[0].gateway == "fd00:123::1"
    assert default_route_list([], 4) == []


def test_read_net_facts_costs_two_processes():
    runner = RecordingRunner(BEFORE)
    facts = read_net_facts(runner)
    assert runner.reads == ["ip -j -d -batch -", "ip -j -6 -batch -"]
    assert {r.family for r in facts.default_routes} == {4, 6}
    assert facts.local_routes and facts.addresses


def test_batch_output_is_split_into_its_json_documents():
    text = '[{"a":1}]\n[]\n[\n {"b": [2]}\n]\n'
    assert split_json_documents(text) == [[{"a": 1}], [], [{"b": [2]}]]
