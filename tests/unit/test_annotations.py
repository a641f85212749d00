"""kube-router's per-Service annotations kipvs honours, and the notes `show` gives when one changed the rules."""
import ipaddress

import pytest

from kipvs.config import ProxyOptions
from kipvs.commands.show import show
from kipvs.desired import build_desired
from kipvs.reconcile import NodeIdentity
from kipvs.render import show_view
from tests.unit.fakes import RecordingRunner
from tests.unit.kernel_states import node_state
from tests.unit.k8s import ep, eps, node, snapshot, svc

OPTS = ProxyOptions(loadbalancer_ip_ranges=(ipaddress.ip_network("192.168.201.0/24"),),
                    external_ip_ranges=(ipaddress.ip_network("192.168.200.0/24"),))
SKIP = "kube-router.io/service.skiplbips"
LB_STATUS = {"loadBalancer": {"ingress": [{"ip": "192.168.201.10"}, {"ip": "192.168.201.11"}]}}


def lb(annotations=None, **spec):
    return svc("web", annotations=annotations, type="LoadBalancer", externalIPs=["192.168.200.10"],
               status=LB_STATUS, ports=[{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}], **spec)


def desired(*objects):
    return build_desired(snapshot(node("node-a", "192.168.1.10"), *objects), "node-a", {4: "192.168.1.10"}, OPTS)


def addresses(d):
    return {vs.ip for vs in d.virtual_servers}


def test_skiplbips_programs_no_virtual_server_for_load_balancer_ips_only():
    # kube-router's TestNetworkServicesController_syncIpvsServices case: cluster IP, external IP and
    # NodePort stay; the ingress IPs get nothing.
    d = desired(lb({SKIP: "true"}), eps("web", [ep("10.1.0.5")]))
    assert addresses(d) == {"10.96.0.10", "192.168.200.10", "192.168.1.10"}
    assert "192.168.201.10" not in d.addresses
    assert d.notes[("default", "web")] == (
        f"no virtual server for load-balancer IP 192.168.201.10 (annotation {SKIP})",
        f"no virtual server for load-balancer IP 192.168.201.11 (annotation {SKIP})")
    assert d.problems == ()


def test_without_or_false_skiplbips_the_load_balancer_ips_are_programmed():
    for annotations in (None, {SKIP: "false"}, {SKIP: "False"}):
        d = desired(lb(annotations), eps("web", [ep("10.1.0.5")]))
        assert {"192.168.201.10", "192.168.201.11"} <= addresses(d) and not d.notes


@pytest.mark.parametrize("key", [SKIP, "kube-router.io/service.local"])
@pytest.mark.parametrize("value", ["", "yes", "1", "tru\x1be"])
def test_a_flag_annotation_that_is_not_true_or_false_is_a_problem_and_counts_as_unset(key, value):
    d = desired(lb({key: value}), eps("web", [ep("10.1.0.5", node="node-b")]))
    assert [str(p) for p in d.problems] == [
        f"Service default/web: metadata.annotations[{key}]: expected true or false, got {value!r}; ignored"
        .replace("\x1b", "\\x1b")]
    assert {"192.168.201.10", "192.168.201.11"} <= addresses(d)
    # Not local: the remote endpoint is used for the load-balancer IP.
    assert {vs.ip: vs for vs in d.virtual_servers}["192.168.201.10"].real_servers


def test_local_annotation_and_scheduler_annotation_leave_notes():
    d = desired(lb({"kube-router.io/service.local": "true", "kube-router.io/service.scheduler": "lc"}),
                eps("web", [ep("10.1.0.5", node="node-b")]))
    assert d.notes[("default", "web")] == (
        "scheduler lc from annotation kube-router.io/service.scheduler",
        "external traffic only to this node's endpoints (annotation kube-router.io/service.local)")
    by_ip = {vs.ip: vs for vs in d.virtual_servers}
    # No local endpoint: the Local-policy LB IP is not bound here at all (kube-router's way, see docs/lifecycle.md).
    assert "192.168.201.10" not in by_ip and by_ip["10.96.0.10"].real_servers
    # The Service's own externalTrafficPolicy: Local already says so: no note for the annotation.
    d = desired(lb({"kube-router.io/service.local": "true"}, externalTrafficPolicy="Local"))
    assert ("default", "web") not in d.notes


def test_show_carries_and_renders_the_notes():
    from rich.console import Console

    objects = [lb({SKIP: "true"}), eps("web", [ep("10.1.0.5")]), node("node3", "192.168.123.249")]
    state = {**node_state(rules=""), "ipvsadm -L -n --exact": "", "ipvsadm -L -n --rate --exact": ""}
    report = show(RecordingRunner(state), snapshot(*objects), NodeIdentity("node3"), OPTS)
    assert report["services"][0]["notes"][0].startswith("no virtual server for load-balancer IP 192.168.201.10")
    console = Console(width=200, record=True, file=open("/dev/null", "w"))
    console.print(show_view(report))
    assert "note: no virtual server for load-balancer IP 192.168.201.10" in console.export_text()
