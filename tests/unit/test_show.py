"""`kipvs show` for the operator at 3 a.m.: both values where kernel and cluster differ, the kernel alone when
the cluster cannot be read, filters, --watch, and a JSON report with a schema and typed fields."""
import io
import json

from rich.console import Console

from kipvs.commands.show import run_show, show
from kipvs.troubleshoot.selection import ShowFilter
from kipvs.config import ProxyOptions, SourceOptions
from kipvs.environment import Environment
from kipvs.reconcile import NodeIdentity
from kipvs.render import print_show
from tests.unit.fakes import RecordingRunner, invoke
from tests.unit.k8s import ep, eps, node, snapshot, svc
from tests.unit.kernel_states import node_state

RULES = ("-A -t 10.96.0.10:80 -s rr\n-a -t 10.96.0.10:80 -r 10.1.0.5:8080 -m -w 0\n"
         "-A -t 10.96.0.11:53 -s rr\n-a -t 10.96.0.11:53 -r 10.1.0.6:53 -m -w 1\n")
LISTING = """IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.96.0.10:80 rr
  -> 10.1.0.5:8080                Masq    0      4          7
TCP  10.96.0.11:53 rr
  -> 10.1.0.6:53                  Masq    1      0          0
"""


def state(**extra):
    return {**node_state(rules=RULES, dummy_ips=("10.96.0.10", "10.96.0.11"),
                         routes_src={"10.96.0.10": "192.168.123.249", "10.96.0.11": "10.96.0.11"}),
            "ipvsadm -L -n --exact": LISTING, "ipvsadm -L -n --rate --exact": LISTING, **extra}


def cluster():
    return snapshot(svc("web"), eps("web", [ep("10.1.0.5", node="node3", pod="web-1")]),
                    svc("dns", cluster_ips=("10.96.0.11",), namespace="kube-system",
                        ports=[{"name": "dns", "port": 53, "protocol": "TCP", "targetPort": 53}]),
                    eps("dns", [ep("10.1.0.6", node="node3", pod="dns-1")], namespace="kube-system",
                        ports=[{"name": "dns", "port": 53, "protocol": "TCP"}]),
                    node("node3", "192.168.123.249", "fd00:123::249"))


def rendered(report) -> str:
    out = io.StringIO()
    print_show(report, console=Console(file=out, width=200))
    return out.getvalue()


def test_a_weight_set_to_0_by_hand_shows_both_values_in_text_and_json():
    report = show(RecordingRunner(state()), cluster(), NodeIdentity("node3"), ProxyOptions())
    assert report["schema"] == 2 and report["mode"] == "cluster"
    web = next(s for s in report["services"] if s["name"] == "web")
    vs = web["virtual_servers"][0]
    assert (vs["protocol"], vs["address"], vs["port"], vs["label"]) == ("tcp", "10.96.0.10", 80, "TCP 10.96.0.10:80")
    rs = vs["real_servers"][0]
    assert (rs["address"], rs["port"], rs["weight"], rs["kernel_weight"], rs["state"]) == \
        ("10.1.0.5", 8080, 1, 0, "different")
    assert rs["differences"] == [{"field": "weight", "wanted": 1, "kernel": 0}]
    assert (rs["forward"], rs["active"], rs["inactive"]) == ("masq", 4, 7)
    line = next(line for line in rendered(report).splitlines() if "10.1.0.5:8080" in line)
    assert "want 1, kernel 0" in line and "masq" in line


def test_problems_are_structured():
    bad = svc("bad", ports=[{"name": "x", "port": 70000, "protocol": "TCP"}])
    report = show(RecordingRunner(state()), snapshot(*cluster().services, bad, *cluster().endpoint_slices,
                                                     *cluster().nodes), NodeIdentity("node3"), ProxyOptions())
    problem = next(p for p in report["problems"] if p["name"] == "bad")
    assert (problem["kind"], problem["namespace"], problem["field"]) == ("Service", "default", "spec.ports[0].port")
    assert problem["text"].startswith("Service default/bad: spec.ports[0].port:")
    assert "problem: Service default/bad" in rendered(report)


def test_filters_by_service_namespace_and_address():
    def run(*args):
        def factory(dry_run, timeout, out=None):
            return RecordingRunner(state())
        result = invoke(["show", "-o", "json", "-f", "-", "--node-name", "node3", *args], factory,
                        input=json.dumps({"kind": "List", "items": list(cluster().services) +
                                          list(cluster().endpoint_slices) + list(cluster().nodes)}))
        assert result.exit_code == 0, result.stderr
        report = json.loads(result.stdout)
        return [s["name"] for s in report["services"]], [r["address"] for r in report["routes"]]
    assert run("--service", "default/web") == (["web"], ["10.96.0.10"])
    assert run("--namespace", "kube-system") == (["dns"], ["10.96.0.11"])
    assert run("--vip", "10.96.0.11:53") == (["dns"], ["10.96.0.11"])
    assert run("--vip", "10.96.0.11:80") == ([], ["10.96.0.11"])


def test_a_bad_filter_is_one_line_naming_the_value_and_the_form():
    result = invoke(["show", "--vip", "10.96.0.300:80", "-f", "examples/cluster.yaml"])
    assert result.exit_code == 2
    assert result.stderr.strip() == ("kipvs: error: --vip '10.96.0.300:80': '10.96.0.300' is not an IP address "
                                     "(expected VIP or VIP:PORT, e.g. 10.254.0.20:80 or [fd00::20]:80)")
    result = invoke(["show", "--service", "web", "-f", "examples/cluster.yaml"])
    assert result.exit_code == 2 and "expected NAMESPACE/NAME" in result.stderr


def test_without_a_cluster_show_falls_back_to_the_kernel_with_one_line_saying_so(tmp_path):
    # A real kubeconfig naming an API server nobody listens on: connection refused.
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1", "insecure-skip-tls-verify": True}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "t"}}]}))
    record = json.dumps({"TCP 10.96.0.10:80 10.1.0.5:8080": 1765000000.0})

    def factory(dry_run, timeout, out=None):
        return RecordingRunner(state(**{"read /run/kipvs/draining.json": record}))
    result = invoke(["show", "--kubeconfig", str(kubeconfig), "--node-name", "node3", "--api-timeout", "3",
                     "--iptables-mode", "legacy"], factory)
    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1 and "cluster unavailable" in warnings[0] and "127.0.0.1:1" in warnings[0]
    assert "HTTPSConnection" not in result.stderr
    text = result.stdout
    assert "TCP 10.96.0.10:80" in text and "10.1.0.5:8080" in text and "unknown" in text
    assert "draining" in text  # from the drain record
    result = invoke(["show", "--kubeconfig", str(kubeconfig), "--node-name", "node3", "--api-timeout", "3",
                     "-o", "json", "--iptables-mode", "legacy"], factory)
    report = json.loads(result.stdout)
    assert report["mode"] == "kernel" and report["cluster"]["available"] is False and report["in_sync"] is None
    servers = {vs["label"]: vs for vs in report["virtual_servers"]}
    drained = servers["TCP 10.96.0.10:80"]["real_servers"][0]
    assert (drained["kernel_weight"], drained["active"], drained["state"], drained["pod"]) == \
        (0, 4, "draining", "unknown")
    assert report["drain_record"]["entries"] == [
        {"virtual_server": "TCP 10.96.0.10:80", "real_server": "10.1.0.5:8080", "since": 1765000000.0}]
    routes = {r["address"]: r["ok"] for r in report["routes"]}
    assert routes == {"10.96.0.10": True, "10.96.0.11": False}
    assert report["netfilter"]["unavailable"]  # the recorded node has no iptables: said, not hidden
    # --check cannot judge drift without the cluster: an error, as before.
    result = invoke(["show", "--kubeconfig", str(kubeconfig), "--node-name", "node3", "--api-timeout", "3",
                     "--check"], factory)
    assert result.exit_code == 2 and "127.0.0.1:1" in result.stderr


def test_kernel_only_lists_kipvs_netfilter_rules_and_leaves_foreign_servers_aside():
    save = ('*nat\n:POSTROUTING ACCEPT [0:0]\n:KIPVS-POSTROUTING - [0:0]\n'
            '-A POSTROUTING -m comment --comment "kipvs: masquerade and hairpin" -m ipvs --vdir ORIGINAL '
            '--vmethod MASQ -j KIPVS-POSTROUTING\n-A KIPVS-POSTROUTING -j SNAT --to-source 192.168.123.249\nCOMMIT\n')
    extra = {"iptables-legacy-save": save, "ip6tables-legacy-save": "", "ipset save": ""}
    rules = RULES + "-A -f 7 -s rr\n"

    def factory(dry_run, timeout, out=None):
        return RecordingRunner({**state(**extra), "ipvsadm -S -n": rules})
    result = invoke(["show", "--kernel-only", "--node-name", "node3", "-o", "json", "--iptables-mode", "legacy"],
                    factory)
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["cluster"]["reason"] == "--kernel-only" and report["foreign_virtual_servers"] == ["FWM 7"]
    assert {c["chain"]: c["rules"] for c in report["netfilter"]["rules"]} == {
        "KIPVS-POSTROUTING": ["-j SNAT --to-source 192.168.123.249"],
        "POSTROUTING": ['-m comment --comment "kipvs: masquerade and hairpin" -m ipvs --vdir ORIGINAL '
                        '--vmethod MASQ -j KIPVS-POSTROUTING']}


def test_watch_redraws_until_interrupted_and_exits_0():
    out = io.StringIO()
    env = Environment(out=out, out_isatty=False)
    env.runner_factory = lambda dry_run, timeout, out=None: RecordingRunner(state())
    naps = []

    def sleep(seconds):
        naps.append(seconds)
        if len(naps) == 2:
            raise KeyboardInterrupt
    source = SourceOptions(cluster_file="examples/cluster.yaml", node_name="node3", allow_partial=True)
    status = run_show(env, source, ProxyOptions(netfilter=None), 5.0, True, False, ShowFilter(), True, 1.5, sleep)
    assert status == 0 and naps == [1.5, 1.5]
    assert out.getvalue().count('"schema": 2') == 2  # one report per refresh


def test_watch_and_check_exclude_each_other():
    result = invoke(["show", "--watch", "--check", "-f", "examples/cluster.yaml"])
    assert result.exit_code == 2 and "--watch and --check" in result.stderr
