"""What a problem does to the kernel: policy rejections remove, only what cannot be understood is kept."""
import io
import ipaddress
import json

from kipvs.commands.show import show
from kipvs.environment import Environment
from kipvs.incremental import IncrementalDesired
from kipvs.reconcile import NodeIdentity
from kipvs.render import print_show
from tests.unit.fakes import RecordingRunner, invoke
from tests.unit.kernel_states import node_state
from tests.unit.test_output_contracts import LISTING

from kipvs.config import ProxyOptions
from kipvs.desired import build_desired
from kipvs.plan import plan_sync
from tests.unit.k8s import ep, eps, node, snapshot, svc
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


# --- a held removal is never silent (issue 21) ---------------------------------------------------------

STALE = "-A -t 10.96.0.99:80 -s rr\n-a -t 10.96.0.99:80 -r 10.1.0.9:8080 -m -w 1\n"


def unreadable_cluster(tmp_path):
    broken = svc("broken", cluster_ips=("10.96.0.20",))
    broken["spec"]["clusterIPs"] = ["not-an-ip"]  # its addresses cannot be read
    broken["spec"]["clusterIP"] = "not-an-ip"
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"kind": "List", "items": [
        svc("web"), eps("web", [ep("10.1.0.5")]), broken, node("node3", "192.168.123.249")]}))
    return path


def test_sync_says_which_service_holds_how_many_removals_and_exits_1(tmp_path):
    def factory(dry_run, timeout, out=None):
        return RecordingRunner(node_state(STALE, dummy_ips=("10.96.0.99",), routes_src={"10.96.0.99": "10.96.0.99"}),
                               dry_run=dry_run, out=out)
    path = unreadable_cluster(tmp_path)
    result = invoke(["sync", "--dry-run", "-f", str(path), "--node-name", "node3"], factory)
    assert result.exit_code == 1, result.stderr
    assert "removals held: 2 stale virtual server(s) and address(es) not removed: the addresses of " \
           "Service default/broken could not be read" in result.stderr
    assert "NOT CONVERGED, 2 removal(s) held for 1 unreadable Service(s)" in result.stderr
    assert not any("10.96.0.99" in line for line in result.stdout.splitlines())
    result = invoke(["sync", "--dry-run", "-o", "json", "-f", str(path), "--node-name", "node3"], factory)
    data = json.loads(result.stdout)
    assert result.exit_code == 1 and data["removals_held"] == 2 and data["holding"] == ["Service default/broken"]


def test_nothing_to_hold_is_no_drift():
    d = build_desired(snapshot(svc("web", cluster_ips=("not-an-ip",)), svc("ok", cluster_ips=("10.96.0.11",))),
                      "node3", NODE_IPS, WIDE)
    assert d.holding == ("Service default/web",)
    plan = plan_sync(d, kernel(rules="", dummy_ips=()), WIDE)
    assert plan.held == 0


def test_show_counts_held_removals_and_is_not_in_sync():
    state = {**node_state(STALE, dummy_ips=("10.96.0.99",), routes_src={"10.96.0.99": "10.96.0.99"}),
             "ipvsadm -L -n --exact": LISTING, "ipvsadm -L -n --rate --exact": LISTING}
    cluster = snapshot(svc("broken", cluster_ips=("not-an-ip",)), node("node3", "192.168.123.249"))
    report = show(RecordingRunner(state), cluster, NodeIdentity("node3"), ProxyOptions())
    assert report["removals_held"] == {"count": 2, "services": ["Service default/broken"]}
    assert not report["in_sync"] and report["drift"]["extra_virtual_servers"] == ["TCP 10.96.0.99:80"]
    out = io.StringIO()
    print_show(report, Environment(out=out, out_isatty=False))
    assert "removals held: 2 stale virtual server(s) and address(es) kept" in out.getvalue()


def test_watch_holds_only_what_the_service_had_when_it_was_last_readable():
    other = svc("other", cluster_ips=("10.96.0.11",))
    web = svc("web", externalIPs=["10.50.0.7"])
    state = IncrementalDesired("node3", NODE_IPS, [], WIDE)
    state.rebuild([web, other], [eps("web", [ep("10.1.0.5")])])
    unreadable = svc("web", cluster_ips=("not-an-ip",))
    state.apply({("default", "web"): unreadable, ("default", "other"): None}, {})
    d = state.desired()
    assert d.holding == () and d.protected_keys == {("tcp", "10.96.0.10", 80), ("tcp", "10.50.0.7", 80)}
    assert {"10.96.0.10", "10.50.0.7"} <= d.protected_addresses
    # The kernel still has web's virtual servers and other's: only other's (deleted) go.
    k = kernel(rules=PROGRAMMED + "-A -t 10.96.0.11:80 -s rr\n", dummy_ips=("10.96.0.10", "10.50.0.7", "10.96.0.11"),
               routes_src={**ROUTES, "10.96.0.11": "192.168.123.249"})
    lines = plan_sync(d, k, WIDE).command_lines()
    assert "ipvsadm -D -t 10.96.0.11:80" in lines and "ip addr del 10.96.0.11/32 dev kube-dummy-if" in lines
    assert not any("10.96.0.10" in line or "10.50.0.7" in line for line in lines), lines
    # A rebuild (watch's periodic full resync) keeps that memory; a Service never read holds everything.
    again = IncrementalDesired("node3", NODE_IPS, [], WIDE, last_readable=state.last_readable)
    again.rebuild([unreadable], [])
    assert again.desired().holding == () and again.desired().protected_keys == d.protected_keys
    fresh = IncrementalDesired("node3", NODE_IPS, [], WIDE)
    fresh.rebuild([unreadable], [])
    assert fresh.desired().holding == ("Service default/web",)
