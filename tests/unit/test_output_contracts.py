"""What each stream carries: one JSON document, plain text for names from the cluster, one-line causes."""
import io
import json
import threading
import time

from kipvs.commands.show import show
from kipvs.environment import Environment
from kipvs.errors import NoDummy
from kipvs.reconcile import NodeIdentity
from kipvs.config import ProxyOptions
from kipvs.render import print_show
from kipvs.runner import Runner, classify_failure
from kipvs.spawn import _kill_on_timeout
from tests.unit.fakes import RecordingRunner, invoke
from tests.unit.k8s import ep, eps, node, snapshot, svc
from tests.unit.kernel_states import node_state

LISTING = "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n"


def show_state():
    return {**node_state(), "ipvsadm -L -n --exact": LISTING, "ipvsadm -L -n --rate --exact": LISTING}


def test_dry_run_json_is_one_document_with_the_commands():
    def factory(dry_run, timeout, out=None):
        return RecordingRunner(node_state(), dry_run=dry_run, out=out)
    result = invoke(["sync", "--dry-run", "--output", "json", "-f", "examples/cluster.yaml", "--node-name", "node3"],
                    factory)
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)  # the whole of stdout is one JSON document
    assert data["dry_run"] is True and "ipvsadm -A -t 10.254.0.1:443 -s rr" in data["commands"]
    assert any("spec.ports[1].port" in p for p in data["problems"])


def test_show_escapes_markup_and_non_strings_from_the_cluster_and_brackets_ipv6_real_servers():
    objects = [svc("[bold red]x[/]", cluster_ips=("fd00:96::10",)),
               eps("[bold red]x[/]", [ep("fd00:1::5", node="[link=http://evil]n[/link]", pod="[/]")],
                   address_type="IPv6"),
               node("node3", "192.168.123.249", "fd00:123::249")]
    report = show(RecordingRunner(show_state()), snapshot(*objects), NodeIdentity("node3"), ProxyOptions())
    out = io.StringIO()
    print_show(report, Environment(out=out, out_isatty=False))
    text = out.getvalue()
    assert "default/[bold red]x[/]" in text and "[link=http://evil]n[/link]" in text and "[/]" in text
    assert "[fd00:1::5]:8080" in text


def test_show_survives_a_garbage_columns_value(monkeypatch):
    monkeypatch.setenv("COLUMNS", "abc")
    report = show(RecordingRunner(show_state()), snapshot(svc("web"), node("node3", "192.168.123.249")),
                  NodeIdentity("node3"), ProxyOptions())
    out = io.StringIO()
    print_show(report, Environment(out=out, out_isatty=False))
    assert "default/web" in out.getvalue()


def test_a_kernel_without_the_dummy_module_is_one_clear_line():
    error = classify_failure(["ip", "-force", "-batch", "-"], 1,
                             "Error: Unknown device type.\nCannot find device \"kube-dummy-if\"\n" * 18)
    assert isinstance(error, NoDummy) and str(error).startswith("the kernel cannot create dummy interfaces")


def test_a_command_that_exits_as_its_timer_fires_is_not_a_timeout():
    class Exited:
        def kill(self):
            raise ProcessLookupError(3, "No such process")

    expired = threading.Event()
    _kill_on_timeout(Exited(), expired)  # used to raise in the timer thread
    assert not expired.is_set()
    started = time.monotonic()
    try:
        Runner(timeout=0.2).run(["sleep", "5"])
    except Exception as exc:  # noqa: BLE001 - the message is what matters
        assert "timed out after 0.2s" in str(exc)
    assert time.monotonic() - started < 2


def test_show_reports_a_kube_router_2_persistence_netmask_as_drift():
    objects = [svc("web", sessionAffinity="ClientIP"), eps("web", [ep("10.1.0.5")]),
               node("node3", "192.168.123.249", "fd00:123::249")]
    state = {**node_state(rules="-A -t 10.96.0.10:80 -s rr -p 10800 -M 32.0.0.0\n"
                                "-a -t 10.96.0.10:80 -r 10.1.0.5:8080 -m -w 1\n",
                          dummy_ips=("10.96.0.10",), routes_src={"10.96.0.10": "192.168.123.249"}),
             "ipvsadm -L -n --exact": LISTING, "ipvsadm -L -n --rate --exact": LISTING}
    report = show(RecordingRunner(state), snapshot(*objects), NodeIdentity("node3"), ProxyOptions())
    assert report["drift"]["different_virtual_servers"] == ["TCP 10.96.0.10:80"] and not report["in_sync"]
    assert report["drift"]["commands"] == ["ipvsadm -E -t 10.96.0.10:80 -s rr -p 10800"]
    vs = report["services"][0]["virtual_servers"][0]
    assert (vs["options"], vs["kernel"]["options"]) == ("-s rr -p 10800", "-s rr -p 10800 -M 32.0.0.0")
    assert vs["differences"] == [{"field": "options", "wanted": "-s rr -p 10800",
                                  "kernel": "-s rr -p 10800 -M 32.0.0.0"}]
