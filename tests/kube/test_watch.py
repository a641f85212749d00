"""kipvs watch against the test API server, one failure mode per test; the node is a SimKernel."""
import random
import time

from tests.kube.conftest import FAST
from tests.unit.k8s import ep, eps, node, svc


def service(i, endpoints=2, scheduler=None):
    annotations = {"kube-router.io/service.scheduler": scheduler} if scheduler else None
    return (svc(f"s{i}", cluster_ips=(f"10.96.{i // 200}.{i % 200 + 1}",), annotations=annotations),
            eps(f"s{i}", [ep(f"10.1.{i // 200}.{j + 2}") for j in range(endpoints)], name=f"s{i}-x"))


def seed(store, count=5):
    store.apply(node("node-a", "192.168.1.10"))
    for i in range(count):
        for obj in service(i):
            store.apply(obj)


def random_changes(store, rng, count, live):
    for _ in range(count):
        i = rng.randrange(40)
        action = rng.random()
        if action < 0.5:
            for obj in service(i, endpoints=rng.randrange(0, 4), scheduler=rng.choice([None, "lc", "sh"])):
                store.apply(obj)
            live.add(i)
        elif i in live:
            store.delete("Service", f"s{i}", "default")
            if action < 0.8:
                store.delete("EndpointSlice", f"s{i}-x", "default")
            live.discard(i)


def test_converges_after_random_creates_updates_deletes(api, running):
    seed(api.store)
    running.wait_converged()
    random_changes(api.store, random.Random(376), 300, set(range(5)))
    running.wait_converged()
    assert running.kernel.services  # something is programmed, and it is exactly what the server says


def test_converges_after_dropped_connections(api, running):
    seed(api.store)
    running.wait_converged()
    rng, live = random.Random(1), set(range(5))
    for _ in range(10):
        random_changes(api.store, rng, 10, live)
        api.store.drop_watches()
        time.sleep(0.05)
    running.wait_converged()
    assert sum(r.stats.watch_restarts for r in running.watcher.reflectors) >= 10


def test_compaction_410_relists_and_notices_deletions(api, running):
    seed(api.store, count=10)
    running.wait_converged()
    api.store.set_silent(True)  # the watchers see nothing of what follows
    for i in range(5):
        api.store.delete("Service", f"s{i}", "default")
    api.store.compact()
    api.store.set_silent(False)
    api.store.drop_watches()  # they come back with a resourceVersion older than the horizon
    running.wait_converged()
    assert sum(r.stats.relists_410 for r in running.watcher.reflectors) >= 1
    assert len(running.kernel.services) == 5


def test_server_down_backs_off_keeps_rules_then_recovers(api, running):
    seed(api.store)
    running.wait_converged()
    rules_before = running.kernel._rules()
    batches_before = len(running.kernel.batches)
    api.stop()
    time.sleep(4)
    assert running.kernel._rules() == rules_before and len(running.kernel.batches) == batches_before
    for obj in service(7):
        api.store.apply(obj)
    started = len(api.store.requests)
    api.start()
    running.wait_converged()
    assert "10.96.0.8" in running.kernel._rules()
    errors = sum(r.stats.errors for r in running.watcher.reflectors)
    downtime_requests = [r for r in api.store.requests if r[3] != 200]
    assert downtime_requests == []  # nothing reached a stopped server; the errors are connection failures
    assert 3 <= errors <= 3 * 12, errors  # bounded: capped backoff, not a tight loop
    assert len(api.store.requests) > started


def test_backoff_is_visible_in_the_request_log(api, running):
    seed(api.store)
    running.wait_converged()
    start = len(api.store.requests)
    api.store.fail_next(15, 500)
    api.store.drop_watches()
    for obj in service(6):
        api.store.apply(obj)
    running.wait_converged(30)
    log = [r for r in api.store.requests[start:] if r[2] == "/api/v1/services"]
    delays = [b[0] - a[0] for a, b in zip(log, log[1:]) if a[3] == 500]
    assert len(delays) >= 3, log
    assert delays[-1] >= 2 * delays[0], delays  # exponential: retries slow down instead of hammering
    assert max(delays) <= FAST.backoff_cap + 0.5


def test_429_is_retried(api, running):
    seed(api.store)
    running.wait_converged()
    api.store.fail_next(4, 429)
    api.store.drop_watches()
    for obj in service(9):
        api.store.apply(obj)
    running.wait_converged(20)


def test_silent_stream_is_abandoned_by_the_read_timeout(api, running):
    seed(api.store)
    running.wait_converged()
    api.store.set_silent(True)
    for obj in service(8):
        api.store.apply(obj)
    time.sleep(FAST.watch_timeout + FAST.read_grace + 1.5)
    api.store.set_silent(False)
    running.wait_converged()
    assert sum(r.stats.errors for r in running.watcher.reflectors) >= 1  # read timeout, then a fresh watch


def test_burst_of_1000_changes_takes_few_syncs(api, running):
    seed(api.store)
    running.wait_converged()
    syncs_before = running.watcher.sync_count
    for i in range(500):
        for obj in service(i):
            api.store.apply(obj)
    seconds = running.wait_converged(60)
    syncs = running.watcher.sync_count - syncs_before
    assert len(running.kernel.services) == 500
    assert syncs < 60, syncs
    print(f"burst of 1000 writes: converged in {seconds:.2f}s with {syncs} syncs")


def test_first_sync_waits_for_every_cache(api, tmp_path):
    from kipvs.commands.watch import Watcher, api_resources
    from tests.kube.conftest import NODE, OPTIONS, api_client
    from tests.kube.simkernel import SimKernel

    seed(api.store)
    api.store.fail_next(3, 500)
    kernel = SimKernel()
    watcher = Watcher(api_resources(api_client(api, tmp_path)), kernel, NODE, OPTIONS, FAST)
    import threading
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not watcher.sync_count and time.monotonic() < deadline:
        if kernel.batches:
            assert watcher.synced()
        time.sleep(0.01)
    watcher.shutdown()
    thread.join(5)
    assert watcher.sync_count and len(kernel.services) == 5


def test_event_syncs_plan_from_the_verified_kernel_and_full_resyncs_repair_drift(api, tmp_path):
    import dataclasses
    import threading

    from kipvs.commands.watch import Watcher, api_resources
    from tests.kube.conftest import NODE, OPTIONS, Running, api_client
    from tests.kube.simkernel import SimKernel

    seed(api.store)
    kernel = SimKernel()
    settings = dataclasses.replace(FAST, sync_period=1.5)
    watcher = Watcher(api_resources(api_client(api, tmp_path)), kernel, NODE, OPTIONS, settings)
    run = Running(watcher, kernel, api)
    threading.Thread(target=watcher.run, daemon=True).start()
    try:
        run.wait_converged()
        time.sleep(0.3)
        reads_before, syncs_before = len(kernel.reads), watcher.sync_count
        for obj in service(11):
            api.store.apply(obj)
        deadline = time.monotonic() + 10
        while not ("-A -t 10.96.0.12:80" in kernel._rules() and watcher.sync_count > syncs_before) \
                and time.monotonic() < deadline:
            time.sleep(0.01)
        reads = kernel.reads[reads_before:]  # only the watcher's reads: the test has not read yet
        # The event sync planned from the verified kernel and checked only the service it changed.
        assert "ipvsadm -L -n --exact -t 10.96.0.12:80" in reads
        assert reads.count("ipvsadm -S -n") <= 1, reads  # at most one periodic full resync in between
        assert watcher.sync_count > syncs_before
        run.wait_converged()
        # Someone deletes a virtual server by hand: the periodic full resync puts it back.
        with kernel.lock:
            key = ("tcp", "10.96.0.1", 80)
            del kernel.services[key], kernel.real[key]
        deadline = time.monotonic() + 10
        while ("tcp", "10.96.0.1", 80) not in kernel.services and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ("tcp", "10.96.0.1", 80) in kernel.services
    finally:
        watcher.shutdown()
