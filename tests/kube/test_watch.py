"""kipvs watch against the real kube-apiserver, one failure mode per test; the node is a SimKernel.

The watcher reaches the server through a TCP proxy (tests/kube/tcpproxy.py) that can cut or
stall its connections; the test writes as the admin, directly."""
import dataclasses
import random
import threading
import time

from tests.kube.conftest import FAST, NAMESPACE, start_watcher, through
from tests.unit.k8s import ep, eps, node, svc


def service(i, endpoints=2, scheduler=None):
    """Service s<i> (cluster IP allocated by the server) and its EndpointSlice."""
    annotations = {"kube-router.io/service.scheduler": scheduler} if scheduler else None
    return (svc(f"s{i}", cluster_ips=(), annotations=annotations, namespace=NAMESPACE),
            eps(f"s{i}", [ep(f"10.1.{i // 200}.{j + 2}") for j in range(endpoints)], name=f"s{i}-x",
                namespace=NAMESPACE))


def seed(kube, count=5):
    if kube.may_create_nodes:  # kipvs is given its node IP (conftest.NODE), so it needs no Node object
        kube.apply(node("node-a", "192.168.1.10"))
    for i in range(count):
        for obj in service(i):
            kube.apply(obj)


def random_changes(kube, rng, count, live):
    for _ in range(count):
        i = rng.randrange(40)
        action = rng.random()
        if action < 0.5:
            for obj in service(i, endpoints=rng.randrange(0, 4), scheduler=rng.choice([None, "lc", "sh"])):
                kube.apply(obj)
            live.add(i)
        elif i in live:
            kube.delete("Service", f"s{i}")
            if action < 0.8:
                kube.delete("EndpointSlice", f"s{i}-x")
            live.discard(i)


def programmed(running, kube) -> set[str]:
    """Names of the test's Services that have a virtual server in the node's kernel."""
    ips = {ip: name for name, ip in kube.cluster_ips().items()}
    return {ips[vs_ip] for (_, vs_ip, _) in running.kernel.services if vs_ip in ips}


def test_converges_after_random_creates_updates_deletes(kube, running):
    seed(kube)
    running.wait_converged()
    live = set(range(5))
    random_changes(kube, random.Random(376), 300, live)
    running.wait_converged()
    assert programmed(running, kube) == {f"s{i}" for i in live}


def test_converges_after_dropped_connections(kube, pair, proxy, running):
    seed(kube)
    running.wait_converged()
    rng, live = random.Random(1), set(range(5))
    for _ in range(10):
        random_changes(kube, rng, 10, live)
        proxy.drop()
        time.sleep(0.1)
    running.wait_converged()
    assert programmed(running, kube) == {f"s{i}" for i in live}
    broken = sum(r.stats.errors + r.stats.watch_restarts for r in running.watcher.reflectors)
    assert broken >= 10, broken  # the cuts were noticed, not slept through


def test_compaction_410_relists_and_notices_deletions(kube, pair, proxy):
    """A watch that ends as the server's timeout says, then a fresh API server (restarted, or the other
    replica behind a load balancer) whose cache starts after changes etcd has compacted away: the
    returning watcher's resourceVersion is too old, it gets a real 410, re-lists, and must notice
    the deletions it never saw as events."""
    settings = dataclasses.replace(FAST, watch_timeout=3, read_grace=30)  # stalls below must not be read timeouts
    run = start_watcher(kube, through(kube, proxy), settings)
    try:
        seed(kube, count=10)
        run.wait_converged()
        proxy.stall(True)  # hold what the server sends ...
        time.sleep(settings.watch_timeout + 1)  # ... until every open watch has ended on the server's side
        for i in range(5):  # no watch is open on the server now: nobody is told
            kube.delete("Service", f"s{i}")
        pair.compact()
        pair.kill_apiserver()
        pair.start_apiserver()
        proxy.stall(False)  # the old streams end cleanly; the watchers come back from before the compaction
        run.wait_converged(30)
        assert sum(r.stats.relists_410 for r in run.watcher.reflectors) >= 1
        assert programmed(run, kube) == {f"s{i}" for i in range(5, 10)}
    finally:
        run.stop()


def test_apiserver_killed_mid_watch_keeps_rules_then_recovers(kube, pair, running):
    seed(kube)
    running.wait_converged()
    rules_before = running.kernel._rules()
    batches_before = len(running.kernel.batches)
    errors_before = sum(r.stats.errors for r in running.watcher.reflectors)
    pair.kill_apiserver()
    time.sleep(4)
    assert running.kernel._rules() == rules_before and len(running.kernel.batches) == batches_before
    pair.start_apiserver()
    for obj in service(7):
        kube.apply(obj)
    running.wait_converged(30)
    assert "s7" in programmed(running, kube)
    errors = sum(r.stats.errors for r in running.watcher.reflectors) - errors_before
    assert errors >= 3, errors  # every reflector noticed the outage ...
    assert errors <= 3 * 40, errors  # ... and retried with capped backoff, not in a tight loop


def test_silent_stream_is_abandoned_by_the_read_timeout(kube, pair, proxy, running):
    seed(kube)
    running.wait_converged()
    proxy.stall(True)
    for obj in service(8):
        kube.apply(obj)
    time.sleep(FAST.watch_timeout + FAST.read_grace + 1.5)
    assert "s8" not in programmed(running, kube)
    proxy.stall(False)
    running.wait_converged()
    assert "s8" in programmed(running, kube)
    assert sum(r.stats.errors for r in running.watcher.reflectors) >= 1  # read timeout, then a fresh watch


def test_burst_of_writes_takes_few_syncs(kube, running):
    seed(kube)
    running.wait_converged()
    syncs_before = running.watcher.sync_count
    count = 300
    started = time.monotonic()
    for i in range(count):
        for obj in service(i):
            kube.apply(obj)
    writing = time.monotonic() - started
    seconds = running.wait_converged(60)
    syncs = running.watcher.sync_count - syncs_before
    assert len(programmed(running, kube)) == count
    assert syncs < writing / FAST.min_sync_period + 5, syncs  # debounced: at most one sync per period
    print(f"burst of {2 * count} writes to kube-apiserver in {writing:.1f}s: converged {seconds:.2f}s after the "
          f"last, with {syncs} syncs")


def test_other_nodes_heartbeats_cause_no_sync(kube, pair, running):
    """kipvs watches its own Node only (field selector): other nodes' status heartbeats never reach it."""
    seed(kube)
    for name, ip in (("node-b", "192.168.1.11"), ("node-c", "192.168.1.12")):
        kube.apply(node(name, ip))
    running.wait_converged()
    time.sleep(0.5)
    node_reflector = next(r for r in running.watcher.reflectors if r.resource.kind == "Node")
    assert {key[1] for key in node_reflector.cache} == {"node-a"}
    syncs, node_events = running.watcher.sync_count, node_reflector.stats.events

    def heartbeat(name, i):
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        kube.core.patch_node_status(name, {"status": {"conditions": [
            {"type": "Ready", "status": "True", "reason": f"beat{i}", "lastHeartbeatTime": now,
             "lastTransitionTime": now}]}})

    for i in range(10):
        heartbeat("node-b", i)
        heartbeat("node-c", i)
    time.sleep(FAST.min_sync_period * 10 + 1)
    assert node_reflector.stats.events == node_events
    assert running.watcher.sync_count == syncs
    heartbeat("node-a", 0)  # our own Node's changes do arrive: the silence above is the selector, not a dead watch
    deadline = time.monotonic() + 10
    while node_reflector.stats.events == node_events and time.monotonic() < deadline:
        time.sleep(0.05)
    assert node_reflector.stats.events == node_events + 1


def test_event_syncs_plan_from_the_verified_kernel_and_full_resyncs_repair_drift(kube, proxy):
    seed(kube)
    run = start_watcher(kube, through(kube, proxy), dataclasses.replace(FAST, sync_period=1.5))
    kernel, watcher = run.kernel, run.watcher
    try:
        run.wait_converged()
        time.sleep(0.3)
        reads_before, syncs_before = len(kernel.reads), watcher.sync_count
        for obj in service(11):
            kube.apply(obj)
        vip = kube.cluster_ips()["s11"]
        deadline = time.monotonic() + 10
        while not (f"-A -t {vip}:80" in kernel._rules() and watcher.sync_count > syncs_before) \
                and time.monotonic() < deadline:
            time.sleep(0.01)
        reads = kernel.reads[reads_before:]  # only the watcher's reads: the test has not read yet
        # The event sync planned from the verified kernel, and ipvsadm -R reported every line applied:
        # not even the service it changed was read back.
        assert f"ipvsadm -L -n --exact -t {vip}:80" not in reads
        assert reads.count("ipvsadm -S -n") <= 1, reads  # at most one periodic full resync in between
        run.wait_converged()
        # Someone deletes a virtual server by hand: the periodic full resync puts it back.
        key = ("tcp", kube.cluster_ips()["s0"], 80)
        with kernel.lock:
            del kernel.services[key], kernel.real[key]
        deadline = time.monotonic() + 10
        while key not in kernel.services and time.monotonic() < deadline:
            time.sleep(0.05)
        assert key in kernel.services
    finally:
        run.stop()


def test_processes_started_per_event(kube, proxy):
    """An endpoint added starts one process, `ipvsadm -R` (it prints every line the kernel refuses, so a
    silent one is not read back); a new IPv4 Service, or its deletion, one batch per tool (a clean `ip -batch`
    of IPv4 addresses and routes is not read back either; IPv6 adds its routes late and is)."""
    seed(kube)
    run = start_watcher(kube, through(kube, proxy), dataclasses.replace(FAST, sync_period=300))
    kernel = run.kernel
    started: list[str] = []
    read, write = kernel.run, kernel.apply

    def mine() -> bool:  # the watch loop's own processes, not the test's reads of the kernel
        return threading.current_thread() is run.thread

    kernel.run = lambda argv, stdin=None: (mine() and started.append(argv[0])) or read(argv, stdin)
    kernel.apply = lambda batches: (mine() and started.extend(b.tool for b in batches if b.lines)) or write(batches)

    def processes(change) -> list[str]:
        run.wait_converged()
        time.sleep(0.3)  # the first full sync, or the previous event, has settled
        del started[:]
        change()
        time.sleep(0.5)
        run.wait_converged()
        return list(started)

    try:
        assert processes(lambda: kube.apply(service(1, endpoints=3)[1])) == ["ipvsadm"]
        assert processes(lambda: [kube.apply(obj) for obj in reversed(service(7))]) == ["ip", "ipvsadm"]
        # The route and the address go first, then the virtual server.
        assert processes(lambda: kube.delete("Service", "s7")) == ["ip", "ipvsadm"]
    finally:
        run.stop()


def test_a_new_service_written_before_its_slice_is_one_sync(kube, proxy):
    """The EndpointSlice controller writes a Service's slice just after the Service: watch holds the new
    Service (up to --min-sync-period) for it, so both cost one batch per tool, not a second `ipvsadm`."""
    seed(kube)
    run = start_watcher(kube, through(kube, proxy), dataclasses.replace(FAST, min_sync_period=1.0, sync_period=300))
    run.wait_converged()
    time.sleep(1.2)  # past the debounce of the first sync
    syncs, started = run.watcher.sync_count, []
    write = run.kernel.apply
    run.kernel.apply = lambda batches: started.extend(b.tool for b in batches if b.lines) or write(batches)
    try:
        created, its_slice = service(8)
        created["spec"]["selector"] = {"app": "s8"}
        kube.apply(created)
        time.sleep(0.05)  # the controller's usual lag behind the Service
        kube.apply(its_slice)
        time.sleep(0.3)
        run.wait_converged()
        assert (run.watcher.sync_count - syncs, started) == (1, ["ip", "ipvsadm"])
    finally:
        run.stop()
