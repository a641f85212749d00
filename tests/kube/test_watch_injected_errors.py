"""kipvs watch against the protocol fake, for the one kind of fault a real kube-apiserver cannot be made
to show on demand: error answers (500, 429) to chosen requests. Everything else is tested against the
real server in test_watch.py."""
import threading
import time

from kipvs.commands.watch import Watcher, api_resources
from kipvs.sources import Snapshot
from tests.kube.conftest import FAST, NODE, OPTIONS, fake_api_client
from tests.kube.simkernel import SimKernel
from tests.unit.k8s import ep, eps, node, svc


def service(i):
    return (svc(f"s{i}", cluster_ips=(f"10.96.0.{i + 1}",)), eps(f"s{i}", [ep(f"10.1.0.{i + 2}")], name=f"s{i}-x"))


def seed(store, count=5):
    store.apply(node("node-a", "192.168.1.10"))
    for i in range(count):
        for obj in service(i):
            store.apply(obj)


def start(api, tmp_path):
    kernel = SimKernel()
    watcher = Watcher(api_resources(fake_api_client(api, tmp_path), NODE.name), kernel, NODE, OPTIONS, FAST)
    threading.Thread(target=watcher.run, daemon=True).start()
    return watcher, kernel


def wait_for(predicate, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {seconds}s")


def has_vip(kernel, vip):
    return f"-A -t {vip}:80" in kernel._rules()


def test_backoff_is_visible_in_the_request_log(fake_api, tmp_path):
    seed(fake_api.store)
    watcher, kernel = start(fake_api, tmp_path)
    try:
        wait_for(lambda: has_vip(kernel, "10.96.0.5"), 15)
        begin = len(fake_api.store.requests)
        fake_api.store.fail_next(15, 500)
        fake_api.store.drop_watches()
        for obj in service(6):
            fake_api.store.apply(obj)
        wait_for(lambda: has_vip(kernel, "10.96.0.7"), 30)
        log = [r for r in fake_api.store.requests[begin:] if r[2] == "/api/v1/services"]
        delays = [b[0] - a[0] for a, b in zip(log, log[1:]) if a[3] == 500]
        assert len(delays) >= 3, log
        assert delays[-1] >= 2 * delays[0], delays  # exponential: retries slow down instead of hammering
        assert max(delays) <= FAST.backoff_cap + 0.5
    finally:
        watcher.shutdown()


def test_429_is_retried(fake_api, tmp_path):
    seed(fake_api.store)
    watcher, kernel = start(fake_api, tmp_path)
    try:
        wait_for(lambda: has_vip(kernel, "10.96.0.5"), 15)
        fake_api.store.fail_next(4, 429)
        fake_api.store.drop_watches()
        for obj in service(9):
            fake_api.store.apply(obj)
        wait_for(lambda: has_vip(kernel, "10.96.0.10"), 20)
        assert sum(r.stats.errors for r in watcher.reflectors) >= 1
    finally:
        watcher.shutdown()


def test_first_sync_waits_for_every_cache(fake_api, tmp_path):
    seed(fake_api.store)
    fake_api.store.fail_next(3, 500)
    watcher, kernel = start(fake_api, tmp_path)
    deadline = time.monotonic() + 15
    while not watcher.sync_count and time.monotonic() < deadline:
        if kernel.batches:
            assert watcher.synced()
        time.sleep(0.01)
    watcher.shutdown()
    assert watcher.sync_count and len(kernel.services) == 5
    assert isinstance(watcher.snapshot(), Snapshot)
