import json

from typer.testing import CliRunner

from kipvs import cli
from kipvs.reconcile import NodeIdentity, sync_once
from kipvs.config import ProxyOptions
from kipvs.errors import NoIPVS
from kipvs.sources.file import read_cluster_file
from tests.unit.fakes import RecordingRunner, invoke
from tests.unit.kernel_states import node_state

EXAMPLE = read_cluster_file("examples/cluster.yaml")
NODE3 = NodeIdentity("node3")


class NoIPVSRunner(RecordingRunner):
    def run(self, argv, stdin=None):
        if argv[0] == "ipvsadm":
            raise NoIPVS("the kernel has no IPVS")
        return super().run(argv, stdin)


def test_dry_run_without_ipvs_prints_full_plan_for_an_empty_node(caplog):
    runner = NoIPVSRunner(node_state(), dry_run=True)
    result = sync_once(runner, EXAMPLE, NODE3, ProxyOptions())
    lines = runner.out.getvalue().splitlines()
    assert lines[:2] == ["ip link add kube-dummy-if type dummy", "ip link set kube-dummy-if up"]
    assert "ipvsadm -A -t 192.168.123.249:30080 -s rr" in lines  # node IP from the Node object
    assert "ipvsadm -A -u 10.254.0.10:53 -s sh -b sh-fallback,sh-port" in lines
    assert lines[-3:] == ["sysctl -w net.ipv4.vs.expire_quiescent_template=1",
                          "sysctl -w net.ipv4.conf.all.arp_ignore=1", "sysctl -w net.ipv4.conf.all.arp_announce=2"]
    assert all(line.split()[0] in ("ip", "ipvsadm", "sysctl") for line in lines)
    assert "cannot read the kernel" in caplog.text and result.plan.counts["virtual servers added"] == 11


def test_apply_then_verify_against_the_kernel_read_again():
    first = node_state(sysctl="0\n0\n0\n")
    # The kernel did not change, and ipvsadm -R said so on stderr (exit 0 all the same): sync must notice.
    runner = RecordingRunner(first, first, stderr={"ipvsadm": "Memory allocation problem\n"})
    result = sync_once(runner, EXAMPLE, NODE3, ProxyOptions())
    assert [b.tool for b in runner.batches][:3] == ["ip", "ipvsadm", "sysctl"]
    assert not result.converged and result.remaining == result.plan.command_lines()
    assert "NOT CONVERGED" in result.summary()


def test_one_malformed_service_never_stops_the_others():
    runner = RecordingRunner(node_state(), dry_run=True)
    result = sync_once(runner, EXAMPLE, NODE3, ProxyOptions())
    out = runner.out.getvalue()
    assert "ipvsadm -A -t 10.254.0.60:80 -s rr" in out  # default/broken's good port, default scheduler
    assert ":70000" not in out and "-D " not in out
    assert any("spec.ports[1].port: 70000" in str(p) for p in result.desired.problems)


def test_a_new_ipv4_service_written_by_clean_batches_is_not_read_back():
    """`ip -force -batch` prints a refused line and exits 1; silence and exit 0 mean the address and its
    repaired route are in, as kipvs.applied models them: the sync is verified without a single read."""
    from tests.unit.k8s import ep, eps, snapshot, svc

    rules = "-A -t 10.96.0.10:80 -s rr\n-a -t 10.96.0.10:80 -r 10.1.0.5:8080 -m -w 1\n"
    state = node_state(rules=rules, dummy_ips=("10.96.0.10",), routes_src={"10.96.0.10": "192.168.123.249"})
    runner = RecordingRunner(state, {})  # any read after the batches would fail: the fake has no answer
    snap = snapshot(svc("web"), eps("web", [ep("10.1.0.5")]),
                    svc("new", cluster_ips=("10.96.0.11",)), eps("new", [ep("10.1.0.6")]))
    result = sync_once(runner, snap, NodeIdentity("node3", ("192.168.123.249",)), ProxyOptions(netfilter=None))
    assert result.converged, result.remaining
    assert [b.tool for b in runner.batches] == ["ip", "ipvsadm"]
    route = [r for r in result.kernel_after.net.local_routes if r.dst == "10.96.0.11"]
    assert [(r.dev, r.prefsrc) for r in route] == [("kube-dummy-if", "192.168.123.249")]
    # The same batch reported a refused line: addresses and routes are read back.
    failed = RecordingRunner(state, state, stderr={"ip": "RTNETLINK answers: File exists\n"})
    assert not sync_once(failed, snap, NodeIdentity("node3", ("192.168.123.249",)), ProxyOptions()).converged
    assert failed.reads.count("ip -j -d -batch -") == 3  # the first read, the read-back, after the retry


def test_cli_unreachable_api_changes_nothing(tmp_path, monkeypatch):
    config = tmp_path / "kubeconfig"
    config.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}], "users": [{"name": "u", "user": {}}]}))
    runners = []

    def factory(dry_run, timeout, out=None):
        runners.append(RecordingRunner({}))  # no state at all: any command it were asked for would fail
        return runners[-1]
    result = invoke(["sync", "--kubeconfig", str(config)], factory)
    assert result.exit_code == 2 and all(not r.reads and not r.batches for r in runners)
    assert "API server http://127.0.0.1:9 unreachable" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_bad_options_are_one_line_errors():
    result = CliRunner().invoke(cli.app, ["sync", "-f", "examples/cluster.yaml", "--scheduler", "fast"])
    assert result.exit_code == 2 and "--scheduler 'fast': not an IPVS scheduler" in result.stderr
    result = CliRunner().invoke(cli.app, ["sync", "-f", "examples/cluster.yaml", "--excluded-cidrs", "10.0.0.0/33"])
    assert result.exit_code == 2 and "--excluded-cidrs '10.0.0.0/33' is not a CIDR" in result.stderr


def test_cli_missing_cluster_file():
    result = CliRunner().invoke(cli.app, ["sync", "-f", "/nonexistent/cluster.yaml", "--dry-run"])
    assert result.exit_code == 2 and "cannot read cluster file /nonexistent/cluster.yaml" in result.stderr


class LateKernelRoute(RecordingRunner):
    """IPv6 inserts a new address's local route from a work queue: the first reads after
    our batch do not show it yet."""

    def __init__(self, *states, late_reads):
        super().__init__(*states)
        self.late_reads = late_reads

    def run(self, argv, stdin=None):
        key = " ".join(argv)
        if key == "ip -j -6 -batch -" and self.late_reads == 0 and len(self.states) == 3:
            self.states.pop(0)  # the kernel's route appears
        if key == "ip -j -6 -batch -":
            self.late_reads -= 1
        return super().run(argv, stdin)


def test_settle_waits_for_the_ipv6_kernel_route_then_removes_it():
    from tests.unit.k8s import snapshot, svc

    snap = snapshot(svc("v6", cluster_ips=("fd00:96::10",), ports=[{"name": "h", "port": 80, "protocol": "TCP"}]))
    rules = "-A -t [fd00:96::10]:80 -s rr\n"
    ours = node_state(rules=rules, dummy_ips=("fd00:96::10",), routes_src={"fd00:96::10": "fd00:123::249"})
    ours["ipvsadm -L -n --exact -t [fd00:96::10]:80"] = "TCP  [fd00:96::10]:80 rr\n"
    both = dict(ours)
    routes = json.loads(ours["ip -j -6 route show table local"])
    routes.append({"type": "local", "dst": "fd00:96::10", "dev": "kube-dummy-if", "protocol": "kernel", "metric": 0})
    both["ip -j -6 route show table local"] = json.dumps(routes)
    runner = LateKernelRoute(node_state(), ours, both, ours, late_reads=3)
    result = sync_once(runner, snap, NodeIdentity("node3", ("192.168.123.249", "fd00:123::249")), ProxyOptions())
    assert result.converged, result.remaining
    assert runner.applied_lines[-1] == "ip route del local fd00:96::10 dev kube-dummy-if table local proto kernel metric 0"


def test_a_small_change_is_verified_service_by_service_not_by_rereading_the_table():
    from tests.unit.k8s import ep, eps, snapshot, svc

    rules = "-A -t 10.96.0.10:80 -s rr\n-a -t 10.96.0.10:80 -r 10.1.0.5:8080 -m -w 1\n"
    state = node_state(rules=rules, dummy_ips=("10.96.0.10",), routes_src={"10.96.0.10": "192.168.123.249"})
    after = dict(state, **{"ipvsadm -L -n --exact -t 10.96.0.10:80": (
        "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
        "TCP  10.96.0.10:80 rr\n  -> 10.1.0.5:8080                Masq    1      0          0\n"
        "  -> 10.1.0.6:8080                Masq    1      0          0\n")})
    runner = RecordingRunner(state, after, stderr={"ipvsadm": "Destination already exists\n"})
    snap = snapshot(svc("web"), eps("web", [ep("10.1.0.5"), ep("10.1.0.6")]))
    result = sync_once(runner, snap, NodeIdentity("node3", ("192.168.123.249",)), ProxyOptions())
    assert result.converged and runner.applied_lines == ["ipvsadm -a -t 10.96.0.10:80 -r 10.1.0.6:8080 -m -w 1"]
    assert runner.reads.count("ipvsadm -S -n") == 1 and runner.reads[-1] == "ipvsadm -L -n --exact -t 10.96.0.10:80"


def test_an_ipvsadm_batch_that_reports_nothing_is_not_read_back():
    """`ipvsadm -R` prints every line the kernel refused (and exits 0): silence means every line was
    applied, so the table is the planned one without another process, and nothing is left to settle."""
    from tests.unit.k8s import ep, eps, snapshot, svc

    rules = "-A -t 10.96.0.10:80 -s rr\n-a -t 10.96.0.10:80 -r 10.1.0.5:8080 -m -w 1\n"
    state = node_state(rules=rules, dummy_ips=("10.96.0.10",), routes_src={"10.96.0.10": "192.168.123.249"})
    runner = RecordingRunner(state, {})  # any read after the batch would fail: the fake has no answer
    snap = snapshot(svc("web"), eps("web", [ep("10.1.0.5"), ep("10.1.0.6")]))
    result = sync_once(runner, snap, NodeIdentity("node3", ("192.168.123.249",)), ProxyOptions(netfilter=None))
    assert result.converged and runner.applied_lines == ["ipvsadm -a -t 10.96.0.10:80 -r 10.1.0.6:8080 -m -w 1"]
    after = {vs.key: vs for vs in result.kernel_after.rules}[("tcp", "10.96.0.10", 80)]
    assert [(rs.ip, rs.port, rs.weight) for rs in after.real_servers] == [("10.1.0.5", 8080, 1), ("10.1.0.6", 8080, 1)]
