"""Connection lifecycle decisions from recorded kernel output: drain, restore, delete; timeouts; node sysctls."""
import json
from dataclasses import replace

from kipvs.config import ProxyOptions
from kipvs.desired import build_desired
from kipvs.endpoints import select
from kipvs.cluster import Endpoint
from kipvs.draining import record_key
from kipvs.facts.ipvs_timeouts import parse_timeouts
from kipvs.facts.kernel import KernelFacts
from kipvs.plan import Plan, plan_sysctls, plan_timeouts
from kipvs.reconcile import NodeIdentity, sync_once
from tests.unit.fakes import RecordingRunner
from tests.unit.k8s import ep, eps, node, snapshot, svc
from tests.unit.kernel_states import node_state

NODE_IP = "192.168.123.249"
NODE3 = NodeIdentity("node3")
VIP = "10.96.0.10"
A, B = "172.20.1.2", "172.20.2.2"
RECORD = "/run/kipvs-draining.json"
OPTS = ProxyOptions(drain_record=RECORD)
BOTH = f"""-A -t {VIP}:80 -s rr
-a -t {VIP}:80 -r {A}:8080 -m -w 1
-a -t {VIP}:80 -r {B}:8080 -m -w 1
"""
LIST = f"ipvsadm -L -n --exact -t {VIP}:80"


def listing(active_a: int, inactive_a: int = 0, weight_a: int | None = 1, proto: str = "TCP") -> str:
    """`ipvsadm -L -n --exact -t VIP:80` as ipvsadm 1.31 prints it (weight_a None: A is not there).
    The same read serves the counters before a sync and the verification after it."""
    a = f"  -> {A}:8080              Masq    {weight_a}      {active_a}          {inactive_a}\n" \
        if weight_a is not None else ""
    return f"""IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
{proto}  {VIP}:80 rr
{a}  -> {B}:8080              Masq    1      0          0
"""


GONE = {LIST: listing(0, weight_a=None)}


def state(rules=BOTH, **outputs):
    base = node_state(rules, dummy_ips=(VIP,), routes_src={VIP: NODE_IP})
    base.update(outputs)
    return base


def cluster(*endpoints, protocol="TCP"):
    ports = [{"name": "http", "port": 80, "protocol": protocol, "targetPort": 8080}]
    return snapshot(svc("web", ports=ports),
                    eps("web", list(endpoints), ports=[{"name": "http", "port": 8080, "protocol": protocol}]),
                    node("node3", NODE_IP))


ROLLING = (ep(A, "node1", ready=False, serving=True, terminating=True), ep(B, "node2"))


def test_kube_proxy_rule_ready_first_then_serving_terminating_and_the_rest_held():
    a = Endpoint(A, "n1", "a", False, True, True)
    b = Endpoint(B, "n2", "b", True, True, False)
    c = Endpoint("172.20.3.2", "n3", "c", False, False, False)
    assert select([(a, 1), (b, 1), (c, 1)]) == ([(b, 1)], [(a, 1), (c, 1)])
    assert select([(a, 1), (c, 1)]) == ([(a, 1)], [(c, 1)])  # no ready one: serving-terminating at full weight
    assert select([(b, 1)]) == ([(b, 1)], [])


def test_terminating_endpoint_with_a_connection_drains_at_weight_zero_and_stays_while_listed():
    runner = RecordingRunner(state(**{LIST: listing(1)}), state(**{LIST: listing(1, weight_a=0)}))
    result = sync_once(runner, cluster(*ROLLING), NODE3, OPTS)
    assert runner.applied_lines == [f"ipvsadm -e -t {VIP}:80 -r {A}:8080 -m -w 0"] and result.converged
    assert [(d.server, d.active, d.deadline) for d in result.drains] == [((A, 8080), 1, None)]
    assert runner.written == {}  # still listed: no clock runs, nothing recorded


def test_without_connections_it_is_deleted_at_once():
    runner = RecordingRunner(state(**{LIST: listing(0)}), state(**GONE))
    result = sync_once(runner, cluster(*ROLLING), NODE3, OPTS)
    assert runner.applied_lines == [f"ipvsadm -d -t {VIP}:80 -r {A}:8080"] and result.drains == []


def test_left_the_slice_drains_until_the_grace_period_counted_from_the_record_then_goes(monkeypatch):
    gone = cluster(ep(B, "node2"))
    drained = BOTH.replace(f"{A}:8080 -m -w 1", f"{A}:8080 -m -w 0")
    monkeypatch.setattr("kipvs.reconcile.time.time", lambda: 1000.0)
    runner = RecordingRunner(state(drained, **{LIST: listing(0, inactive_a=1, weight_a=0)}))
    result = sync_once(runner, gone, NODE3, OPTS)
    assert runner.applied_lines == [] and result.drains[0].deadline == 1030.0
    name = record_key(("tcp", VIP, 80), (A, 8080))
    assert name == f"TCP {VIP}:80 {A}:8080" and json.loads(runner.written[RECORD]) == {name: 1000.0}
    # Another process (cron sync after a watch restart) reads the same start: before the deadline, kept ...
    monkeypatch.setattr("kipvs.reconcile.time.time", lambda: 1029.0)
    later = RecordingRunner(state(drained, **{LIST: listing(1, weight_a=0), f"read {RECORD}": runner.written[RECORD]}))
    assert sync_once(later, gone, NODE3, OPTS).drains and later.applied_lines == [] and later.written == {}
    # ... after it, deleted even with a connection, and the record forgets it.
    monkeypatch.setattr("kipvs.reconcile.time.time", lambda: 1031.0)
    last = RecordingRunner(state(drained, **{LIST: listing(1, weight_a=0), f"read {RECORD}": runner.written[RECORD]}),
                           state(**GONE))
    assert sync_once(last, gone, NODE3, OPTS).drains == []
    assert last.applied_lines == [f"ipvsadm -d -t {VIP}:80 -r {A}:8080"] and json.loads(last.written[RECORD]) == {}


def test_an_endpoint_that_comes_back_is_restored_to_weight_one():
    drained = BOTH.replace(f"{A}:8080 -m -w 1", f"{A}:8080 -m -w 0")
    runner = RecordingRunner(state(drained), state(**{LIST: listing(1)}))
    sync_once(runner, cluster(ep(A, "node1"), ep(B, "node2")), NODE3, OPTS)
    assert runner.applied_lines == [f"ipvsadm -e -t {VIP}:80 -r {A}:8080 -m -w 1"]
    assert runner.reads.count(LIST) == 0  # nothing leaves: no counters read; the clean batch is not read back


def test_udp_and_disabled_graceful_termination_delete_at_once_without_reading_counters():
    udp = BOTH.replace("-t ", "-u ")
    udp_list = f"ipvsadm -L -n --exact -u {VIP}:80"
    runner = RecordingRunner(state(udp), state(**{udp_list: listing(0, weight_a=None, proto="UDP")}),
                             stderr={"ipvsadm": "No such destination\n"})  # read back: the kernel's answer
    sync_once(runner, cluster(*ROLLING, protocol="UDP"), NODE3, OPTS)
    assert runner.applied_lines == [f"ipvsadm -d -u {VIP}:80 -r {A}:8080"] and runner.reads.count(udp_list) == 1
    off = RecordingRunner(state(), state(**GONE), stderr={"ipvsadm": "No such destination\n"})
    sync_once(off, cluster(*ROLLING), NODE3, replace(OPTS, graceful_termination=False))
    assert off.applied_lines == [f"ipvsadm -d -t {VIP}:80 -r {A}:8080"] and off.reads.count(LIST) == 1


def test_dry_run_plans_the_drain_and_keeps_no_record():
    runner = RecordingRunner(state(**{LIST: listing(0, inactive_a=2)}), dry_run=True)
    sync_once(runner, cluster(ep(B, "node2")), NODE3, OPTS)
    assert runner.out.getvalue() == f"ipvsadm -e -t {VIP}:80 -r {A}:8080 -m -w 0\n" and runner.written == {}


TIMEOUTS = "Timeout (tcp tcpfin udp): 900 120 300\n"


def test_timeouts_are_set_only_when_they_differ_and_zero_keeps_the_kernels():
    assert parse_timeouts(TIMEOUTS) == (900, 120, 300)
    kernel = KernelFacts(timeouts=(900, 120, 300))
    plan = Plan()
    assert plan_timeouts(kernel, replace(OPTS, tcp_timeout=3600, udp_timeout=300), plan) == ["--set 3600 0 300"]
    assert plan_timeouts(kernel, replace(OPTS, tcp_timeout=900, udp_timeout=0), Plan()) == []
    assert plan_timeouts(KernelFacts(timeouts=None), OPTS, Plan()) == []


def test_sync_reads_timeouts_only_when_asked_and_sends_them_in_the_ipvsadm_batch():
    runner = RecordingRunner(state(**{"ipvsadm -L --timeout": TIMEOUTS}),
                             state(**{"ipvsadm -L --timeout": "Timeout (tcp tcpfin udp): 3600 120 300\n"}))
    result = sync_once(runner, cluster(ep(A, "node1"), ep(B, "node2")), NODE3, replace(OPTS, tcp_timeout=3600))
    assert runner.applied_lines == ["ipvsadm --set 3600 0 0"] and result.converged
    plain = RecordingRunner(state())
    sync_once(plain, cluster(ep(A, "node1"), ep(B, "node2")), NODE3, OPTS)
    assert "ipvsadm -L --timeout" not in plain.reads and plain.applied_lines == []


def test_strict_arp_and_conn_reuse_mode_per_kernel_version():
    converged = {"net.ipv4.vs.conntrack": "1", "net.ipv4.vs.expire_nodest_conn": "1",
                 "net.ipv4.vs.expire_quiescent_template": "1"}
    old = KernelFacts(sysctls={**converged, "kernel.osrelease": "5.4.0-150-generic"})
    assert plan_sysctls(old, Plan(), OPTS) == ["net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2",
                                               "net.ipv4.vs.conn_reuse_mode=0"]
    new = KernelFacts(sysctls={**converged, "kernel.osrelease": "6.1.0-18-amd64"})
    assert plan_sysctls(new, Plan(), replace(OPTS, strict_arp=False)) == []
    ancient = KernelFacts(sysctls={**converged, "kernel.osrelease": "3.10.0-1160.el7.x86_64"})
    assert plan_sysctls(ancient, Plan(), replace(OPTS, strict_arp=False)) == []


def test_local_policy_external_address_without_a_local_endpoint_is_not_bound():
    lb = svc("lb", type="LoadBalancer", externalTrafficPolicy="Local",
             ports=[{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080, "nodePort": 30080}],
             status={"loadBalancer": {"ingress": [{"ip": "192.168.201.10"}]}})
    options = replace(OPTS, loadbalancer_ip_ranges=(__import__("ipaddress").ip_network("192.168.201.0/24"),))
    elsewhere = build_desired(snapshot(lb, eps("lb", [ep(A, "node1")]), node("node3", NODE_IP)), "node3",
                              {4: NODE_IP}, options)
    assert "192.168.201.10" not in elsewhere.addresses
    assert {vs.ip for vs in elsewhere.virtual_servers} == {VIP, NODE_IP}  # ClusterIP and NodePort stay
    assert any("192.168.201.10" in s and "not bound" in s for s in elsewhere.skipped)
    here = build_desired(snapshot(lb, eps("lb", [ep(A, "node3")]), node("node3", NODE_IP)), "node3",
                         {4: NODE_IP}, options)
    assert "192.168.201.10" in here.addresses


def test_show_marks_a_draining_server_with_its_connections_and_calls_the_node_in_sync():
    import io

    from rich.console import Console

    from kipvs.commands.show import show
    from kipvs.render import print_show

    drained = BOTH.replace(f"{A}:8080 -m -w 1", f"{A}:8080 -m -w 0")
    runner = RecordingRunner(state(drained, **{LIST: listing(2, 3, weight_a=0),
                                               "ipvsadm -L -n --exact": listing(2, 3, weight_a=0),
                                               "ipvsadm -L -n --rate --exact": ""}))
    report = show(runner, cluster(*ROLLING), NODE3, OPTS)
    rows = {r["label"]: r for r in report["services"][0]["virtual_servers"][0]["real_servers"]}
    assert (rows[f"{A}:8080"]["state"], rows[f"{A}:8080"]["kernel_weight"], rows[f"{A}:8080"]["active"],
            rows[f"{A}:8080"]["inactive"]) == ("draining", 0, 2, 3)
    assert rows[f"{B}:8080"]["state"] == "ok" and report["in_sync"] and runner.written == {}
    out = io.StringIO()
    print_show(report, console=Console(file=out, width=160))
    assert any("draining" in line and A in line for line in out.getvalue().splitlines())


class _StillCache:
    """A reflector whose cache was listed once and never changes: only the loop's re-checks sync."""

    def __init__(self, items):
        import threading

        self._items, self._listed = list(items), True
        self.synced = threading.Event()
        self.synced.set()

    def start(self):
        return self

    def items(self):
        return self._items

    def drain(self):
        from kipvs.sources.reflector import Drained

        listed, self._listed = self._listed, False
        return Drained(listed, {}, [])

    def pending(self):
        return []


def _watch_syncs(kernel_state: dict, seconds: float) -> int:
    """How many syncs `watch`'s loop runs in `seconds` with nothing changing in the cluster."""
    import threading

    from kipvs.commands.watch import Watcher, WatchSettings

    watcher = Watcher([], RecordingRunner(kernel_state), NODE3, OPTS,
                      WatchSettings(min_sync_period=0.01, sync_period=3600, drain_recheck=0.1))
    snapshot = cluster(*ROLLING)
    watcher.reflectors = [_StillCache(snapshot.services), _StillCache(snapshot.endpoint_slices),
                          _StillCache(snapshot.nodes)]
    thread = threading.Thread(target=watcher.run)
    thread.start()
    threading.Event().wait(seconds)
    watcher.shutdown()
    thread.join(timeout=5)
    return watcher.sync_count


def test_watch_rechecks_draining_servers_every_few_seconds_and_only_while_they_drain():
    drained = BOTH.replace(f"{A}:8080 -m -w 1", f"{A}:8080 -m -w 0")
    assert _watch_syncs(state(drained, **{LIST: listing(1, weight_a=0)}), 0.8) >= 4
    settled = f"-A -t {VIP}:80 -s rr\n-a -t {VIP}:80 -r {B}:8080 -m -w 1\n"
    assert _watch_syncs(state(settled), 0.8) == 1


def test_an_unwritable_drain_record_is_one_error_line_and_the_sync_still_drains(caplog):
    class ReadOnly(RecordingRunner):
        def write_file(self, path, text):
            raise PermissionError(13, "Permission denied", path)

    runner = ReadOnly(state(**{LIST: listing(0, inactive_a=1)}), state(**{LIST: listing(0, 1, weight_a=0)}))
    result = sync_once(runner, cluster(ep(B, "node2")), NODE3, OPTS)
    assert runner.applied_lines == [f"ipvsadm -e -t {VIP}:80 -r {A}:8080 -m -w 0"] and result.converged
    assert "cannot write the drain record /run/kipvs-draining.json (Permission denied)" in caplog.text


def test_an_event_sync_decides_only_its_own_drains_and_keeps_the_other_clocks(monkeypatch):
    """watch's event syncs see only the changed virtual servers: drains elsewhere keep their start times."""
    from kipvs.facts.kernel import read_kernel_or_empty
    from kipvs.reconcile import compute, with_draining

    monkeypatch.setattr("kipvs.reconcile.time.time", lambda: 1000.0)
    other = "TCP 10.96.0.99:80 172.20.9.9:8080"
    name = record_key(("tcp", VIP, 80), (A, 8080))
    gone = cluster(ep(B, "node2"))
    drained = BOTH.replace(f"{A}:8080 -m -w 1", f"{A}:8080 -m -w 0")
    for partial, expected in ((True, {other: 900.0, name: 1000.0}), (False, {name: 1000.0})):
        runner = RecordingRunner(state(drained, **{LIST: listing(1, weight_a=0),
                                                   f"read {RECORD}": json.dumps({other: 900.0})}))
        kernel = read_kernel_or_empty(runner)
        _, drains = with_draining(runner, compute(gone, NODE3, OPTS, kernel), kernel, OPTS, True, partial)
        assert [d.server for d in drains] == [(A, 8080)] and json.loads(runner.written[RECORD]) == expected
    # A is gone from the kernel: its stale start is dropped, the other drain's is kept.
    runner = RecordingRunner(state(f"-A -t {VIP}:80 -s rr\n-a -t {VIP}:80 -r {B}:8080 -m -w 1\n",
                                   **{f"read {RECORD}": json.dumps({other: 900.0, name: 990.0})}))
    kernel = read_kernel_or_empty(runner)
    assert with_draining(runner, compute(gone, NODE3, OPTS, kernel), kernel, OPTS, True, True)[1] == []
    assert json.loads(runner.written[RECORD]) == {other: 900.0}


class _CacheAnEventReaches(_StillCache):
    """A reflector's cache that one watch event changes later: pending (with its trigger time) until drained."""

    def __init__(self, items):
        super().__init__(items)
        self._changed, self._triggers = {}, []

    def event(self, items, trigger: float):
        self._items = list(items)
        self._changed = {(item["metadata"]["namespace"], item["metadata"]["name"]): item for item in items}
        self._triggers = [trigger]

    def drain(self):
        from kipvs.sources.reflector import Drained

        drained = Drained(self._listed, self._changed, self._triggers)
        self._listed, self._changed, self._triggers = False, {}, []
        return drained


def test_a_change_that_comes_while_a_full_sync_reads_the_kernel_joins_that_sync(monkeypatch):
    """The periodic full sync reads the whole kernel first (seconds on a large node): an event that lands
    meanwhile is planned by that sync (its latency counted with it), not left for a sync of its own after."""
    from kipvs.commands.watch import Watcher, WatchSettings

    rolling, recovered = cluster(*ROLLING), cluster(ep(A, "node1"), ep(B, "node2"))  # A serves again
    slices = _CacheAnEventReaches(rolling.endpoint_slices)

    class EventDuringTheRead(RecordingRunner):
        delivered = False

        def run(self, argv, stdin=None):
            if argv[:2] == ["ipvsadm", "-S"] and not self.delivered:  # the full sync's kernel read
                self.delivered = True
                slices.event(recovered.endpoint_slices, trigger=123.0)
            return super().run(argv, stdin)

    # Without the event, this sync would drain A (weight 0: it still has a connection).
    watcher = Watcher([], EventDuringTheRead(state(**{LIST: listing(1)})), NODE3, OPTS,
                      WatchSettings(sync_period=3600))
    watcher.reflectors = [_StillCache(rolling.services), slices, _StillCache(rolling.nodes)]
    programmed = []
    monkeypatch.setattr(watcher.metrics, "observe_programmed", lambda triggers, at: programmed.extend(triggers))
    result = watcher.sync(full=True)
    assert result.converged and result.plan.empty, result.plan.command_lines()
    assert programmed == [123.0]
    assert slices.drain().changed == {}  # nothing left for another sync
