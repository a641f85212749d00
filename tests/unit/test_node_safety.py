"""kipvs never takes over the node: host and special addresses, non-dummy interfaces, excluded addresses."""
import ipaddress
import json

import pytest

from kipvs.config import ProxyOptions
from kipvs.desired import build_desired
from kipvs.plan import plan_cleanup, plan_sync
from tests.unit.fakes import RecordingRunner, invoke
from tests.unit.k8s import ep, eps, node, snapshot, svc
from tests.unit.kernel_states import node_state
from tests.unit.test_plan import FIXED, NODE_IPS, kernel

HOST = frozenset({"192.168.123.249", "fd00:123::249", "127.0.0.1"})
OPEN = ProxyOptions(strict_external_ip_validation=False)


def desired(*objects, options=OPEN):
    return build_desired(snapshot(*objects), "node3", NODE_IPS, options, host_addresses=HOST)


@pytest.mark.parametrize("ip,why", [("192.168.123.249", "one of this host's own addresses"),
                                    ("fd00:123::249", "one of this host's own addresses"),
                                    ("127.0.0.5", "loopback"), ("::1", "loopback"), ("0.0.0.0", "unspecified"),
                                    ("::", "unspecified"), ("224.0.0.1", "multicast"), ("ff02::1", "multicast"),
                                    ("169.254.1.1", "link-local"), ("fe80::1", "link-local"),
                                    ("255.255.255.255", "broadcast")])
def test_an_external_ip_that_is_a_host_or_special_address_is_reported_and_never_programmed(ip, why):
    d = desired(svc("evil", ports=[{"name": "ssh", "port": 22, "protocol": "TCP"}], externalIPs=[ip]),
                eps("evil", [ep("10.1.0.5")], ports=[{"name": "ssh", "port": 22, "protocol": "TCP"}]))
    assert ip not in d.addresses and all(vs.ip != ip for vs in d.virtual_servers)
    assert any(f"spec.externalIPs[0]: {ip} is" in str(p) and why in str(p) for p in d.problems), d.problems


def test_a_load_balancer_ip_or_cluster_ip_on_the_node_address_is_refused_too():
    d = desired(svc("lb", cluster_ips=("192.168.123.249",), type="LoadBalancer",
                    status={"loadBalancer": {"ingress": [{"ip": "192.168.123.249"}]}}))
    assert d.virtual_servers == () and d.addresses == ()
    assert {p.field for p in d.problems} == {"spec.clusterIPs[0]", "status.loadBalancer.ingress[0].ip"}


def test_the_node_ip_never_becomes_a_service_address_and_a_foreign_service_on_it_survives():
    foreign = "-A -t 192.168.123.249:22 -s rr\n-a -t 192.168.123.249:22 -r 10.9.9.9:22 -m -w 1\n"
    k = kernel(rules=foreign)
    d = desired(svc("evil", ports=[{"name": "ssh", "port": 22}], externalIPs=["192.168.123.249"]))
    lines = plan_sync(d, k, OPEN).command_lines()
    assert not any("192.168.123.249:22" in line or "addr add 192.168.123.249" in line for line in lines), lines


def test_external_ips_inside_the_cluster_ip_range_are_refused():
    options = ProxyOptions(strict_external_ip_validation=False,
                           cluster_ip_ranges=(ipaddress.ip_network("10.96.0.0/12"),))
    d = desired(svc("a", cluster_ips=("10.96.0.5",), externalIPs=["10.96.0.9", "192.168.50.1"]), options=options)
    assert ("tcp", "10.96.0.9", 80) not in {vs.key for vs in d.virtual_servers}
    assert ("tcp", "192.168.50.1", 80) in {vs.key for vs in d.virtual_servers}
    assert "10.96.0.9 is inside --service-cluster-ip-range" in str(d.problems[0])


def test_an_excluded_address_on_the_dummy_interface_survives_sync_and_cleanup():
    options = ProxyOptions(excluded_cidrs=(ipaddress.ip_network("10.96.0.99/32"),))
    k = kernel(rules="", dummy_ips=("10.96.0.10", "10.96.0.99"), routes_src={**FIXED, "10.96.0.99": "10.96.0.99"})
    sync_lines = plan_sync(build_desired(snapshot(), "node3", NODE_IPS, options), k, options).command_lines()
    assert "ip addr del 10.96.0.10/32 dev kube-dummy-if" in sync_lines
    assert not any("10.96.0.99" in line for line in sync_lines)
    cleanup_lines = plan_cleanup(k, options).command_lines()
    assert not any("10.96.0.99" in line for line in cleanup_lines) and "ip link del kube-dummy-if" not in cleanup_lines


def cluster_file(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"kind": "List", "items": [
        svc("web"), eps("web", [ep("10.1.0.5")]), node("node3", "192.168.123.249")]}))
    return path


@pytest.mark.parametrize("name,message", [("eth0", "exists and is not a dummy interface"),
                                          ("lo", "exists and is not a dummy interface"),
                                          ("kube-dummy-if\nlink del eth0", "expected 1-15 characters"),
                                          ("a-name-longer-than-15", "expected 1-15 characters"),
                                          ("bad/name", "expected 1-15 characters"),
                                          ("eth0\n", "expected 1-15 characters"),
                                          ("kube-dummy-if\n", "expected 1-15 characters")])
@pytest.mark.parametrize("command", ["sync", "cleanup"])
def test_interface_must_be_a_dummy_one_kipvs_can_own(tmp_path, name, message, command):
    runners = []

    def factory(dry_run, timeout, out=None):
        runners.append(RecordingRunner(node_state(), dry_run=dry_run, out=out))
        return runners[-1]
    args = ["sync", "-f", str(cluster_file(tmp_path)), "--node-name", "node3"] if command == "sync" else ["cleanup"]
    result = invoke([*args, "--interface", name, "--lock-file", str(tmp_path / "lock")], factory)
    assert result.exit_code == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert all(runner.batches == [] for runner in runners)  # nothing ran


def test_sync_refuses_a_node_ip_that_is_only_a_service_address_on_the_dummy_interface(tmp_path):
    def factory(dry_run, timeout, out=None):
        return RecordingRunner(node_state(dummy_ips=("10.96.0.10",)), dry_run=dry_run, out=out)
    result = invoke(["sync", "-f", str(cluster_file(tmp_path)), "--node-name", "node3", "--node-ip", "10.96.0.10",
                     "--lock-file", str(tmp_path / "lock")], factory)
    assert result.exit_code == 2 and "node IP 10.96.0.10 is" in result.stderr, result.stderr
