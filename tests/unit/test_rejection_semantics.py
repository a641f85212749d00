"""What a problem does to the kernel: policy rejections remove, only what cannot be understood is kept."""
import ipaddress

from kipvs.config import ProxyOptions
from kipvs.desired import build_desired
from kipvs.plan import plan_sync
from tests.unit.k8s import ep, eps, snapshot, svc
from tests.unit.test_plan import FIXED, NODE_IPS, kernel

WIDE = ProxyOptions(external_ip_ranges=(ipaddress.ip_network("10.50.0.0/16"),))
NARROW = ProxyOptions(external_ip_ranges=(ipaddress.ip_network("10.50.1.0/24"),))
PROGRAMMED = """-A -t 10.96.0.10:80 -s rr
-a -t 10.96.0.10:80 -r 10.1.0.5:8080 -m -w 1
-A -t 10.50.0.7:80 -s rr
-a -t 10.50.0.7:80 -r 10.1.0.5:8080 -m -w 1
"""
ROUTES = {**FIXED, "10.50.0.7": "192.168.123.249"}


def desired(options, ports=None):
    return build_desired(snapshot(svc("web", externalIPs=["10.50.0.7"], ports=ports),
                                  eps("web", [ep("10.1.0.5")])), "node3", NODE_IPS, options)


def test_narrowing_the_external_ip_range_removes_what_it_allowed_before():
    k = kernel(rules=PROGRAMMED, dummy_ips=("10.96.0.10", "10.50.0.7"), routes_src=ROUTES)
    assert plan_sync(desired(WIDE), k, WIDE).empty
    narrowed = desired(NARROW)
    assert "outside --service-external-ip-range" in str(narrowed.problems[0])
    assert narrowed.protected_addresses == frozenset()
    lines = plan_sync(narrowed, k, NARROW).command_lines()
    assert "ipvsadm -D -t 10.50.0.7:80" in lines and "ip addr del 10.50.0.7/32 dev kube-dummy-if" in lines
    assert not any("10.96.0.10" in line for line in lines)


def test_a_port_change_on_a_service_with_a_rejected_external_ip_removes_the_old_port():
    k = kernel(rules=PROGRAMMED, dummy_ips=("10.96.0.10", "10.50.0.7"), routes_src=ROUTES)
    moved = desired(NARROW, ports=[{"name": "http", "port": 81, "protocol": "TCP"}])
    lines = plan_sync(moved, k, NARROW).command_lines()
    assert "ipvsadm -D -t 10.96.0.10:80" in lines and "ipvsadm -A -t 10.96.0.10:81 -s rr" in lines


def test_a_malformed_service_keeps_what_its_addresses_had():
    k = kernel(rules=PROGRAMMED, dummy_ips=("10.96.0.10", "10.50.0.7"), routes_src=ROUTES)
    broken = build_desired(snapshot(svc("web", externalIPs=["10.50.0.7"],
                                        ports=[{"name": "http", "port": "eighty"}])), "node3", NODE_IPS, WIDE)
    assert broken.protected_addresses == {"10.96.0.10", "10.50.0.7"}
    assert plan_sync(broken, k, WIDE).empty


def test_a_service_whose_addresses_cannot_be_read_holds_every_removal():
    k = kernel(rules=PROGRAMMED, dummy_ips=("10.96.0.10", "10.50.0.7"), routes_src=ROUTES)
    unreadable = svc("web")
    unreadable["spec"] = []
    d = build_desired(snapshot(unreadable, svc("other", cluster_ips=("10.96.0.11",))), "node3", NODE_IPS, WIDE)
    assert d.hold_removals
    lines = plan_sync(d, k, WIDE).command_lines()
    assert "ipvsadm -A -t 10.96.0.11:80 -s rr" in lines and not any(" -D " in f" {line}" for line in lines)
    assert not any("addr del" in line for line in lines)


def test_cluster_ips_are_placed_before_external_ips_whatever_the_names():
    older = svc("aaa", cluster_ips=("10.96.0.5",), externalIPs=["10.96.0.9"])
    older["metadata"]["creationTimestamp"] = "2020-01-01T00:00:00Z"
    newer = svc("zzz", cluster_ips=("10.96.0.9",))
    newer["metadata"]["creationTimestamp"] = "2024-01-01T00:00:00Z"
    d = build_desired(snapshot(older, newer), "node3", NODE_IPS, ProxyOptions(strict_external_ip_validation=False))
    assert d.origins[("tcp", "10.96.0.9", 80)].name == "zzz"
    assert "10.96.0.9:80 is already served by default/zzz" in str(d.problems[0])


def test_between_two_services_the_older_one_wins_not_the_alphabetical_one():
    first = svc("zzz", externalIPs=["10.50.0.7"], cluster_ips=("10.96.0.1",))
    first["metadata"]["creationTimestamp"] = "2020-01-01T00:00:00Z"
    second = svc("aaa", externalIPs=["10.50.0.7"], cluster_ips=("10.96.0.2",))
    second["metadata"]["creationTimestamp"] = "2024-01-01T00:00:00Z"
    d = build_desired(snapshot(first, second), "node3", NODE_IPS, WIDE)
    assert d.origins[("tcp", "10.50.0.7", 80)].name == "zzz"
