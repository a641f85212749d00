"""The long-running service stays small and quiet: flat memory over many syncs, a problem logged once."""
import logging
import socket
import threading
import time
import tracemalloc

from tests.kube.conftest import NAMESPACE
from tests.kube.test_watch import seed, service
from tests.unit.fakes import RecordingRunner, invoke
from tests.unit.k8s import svc


def wait_for(condition, seconds=10.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_a_thousand_syncs_keep_memory_flat(kube, running):
    seed(kube, count=60)
    running.wait_converged()
    watcher = running.watcher
    for _ in range(50):
        watcher.sync(full=False)
    tracemalloc.start()
    try:
        for _ in range(200):
            watcher.sync(full=False)
        early, _ = tracemalloc.get_traced_memory()
        for _ in range(800):
            watcher.sync(full=False)
        late, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert watcher.sync_count >= 1050
    # One result at 60 services is ~100 KB: keeping every result would grow by ~80 MB here.
    assert late - early < 2_000_000, (early, late)
    print(f"memory after 250 syncs {early / 1e6:.2f} MB, after 1050 {late / 1e6:.2f} MB")


def test_a_problem_is_logged_when_it_appears_and_when_it_goes_not_every_sync(kube, running, caplog):
    """A Service the API server accepts but kipvs cannot use as given (the real server refuses a port of
    70000 itself, so the problem here is an unknown scheduler annotation)."""
    seed(kube)
    running.wait_converged()
    caplog.set_level(logging.WARNING, logger="kipvs")
    name = f"{NAMESPACE}/broken"
    kube.apply(svc("broken", cluster_ips=(), namespace=NAMESPACE,
                   annotations={"kube-router.io/service.scheduler": "no-such-scheduler"}))
    wait_for(lambda: any(name in p for p in running.watcher.problem_log.current))
    for _ in range(5):
        running.watcher.sync(full=False)
    # A warning (the rest was programmed), not an error: errors are for what failed.
    warnings = [r for r in caplog.records if r.getMessage().startswith(f"problem: Service {name}")]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING, [r.getMessage() for r in caplog.records]
    for obj in service(3):
        kube.apply(obj)
    kube.apply(svc("broken", cluster_ips=(), namespace=NAMESPACE))
    wait_for(lambda: not running.watcher.problem_log.current)
    resolved = [r for r in caplog.records if r.getMessage().startswith(f"resolved: Service {name}")]
    assert len(resolved) == 1


def test_sync_gives_up_on_a_silent_api_server_within_the_api_timeout(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held = []
    stop = threading.Event()

    def accept_and_say_nothing():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    threading.Thread(target=accept_and_say_nothing, daemon=True).start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(f"""apiVersion: v1
kind: Config
current-context: c
clusters: [{{name: c, cluster: {{server: "http://127.0.0.1:{listener.getsockname()[1]}"}}}}]
contexts: [{{name: c, context: {{cluster: c, user: u}}}}]
users: [{{name: u, user: {{}}}}]
""")
    started = time.monotonic()
    try:
        runners = []
        result = invoke(["sync", "--kubeconfig", str(kubeconfig), "--api-timeout", "1.5", "--node-name", "n"],
                        lambda *a: runners.append(RecordingRunner({})) or runners[-1])
    finally:
        stop.set()
        for conn in held:
            conn.close()
        listener.close()
    elapsed = time.monotonic() - started
    assert result.exit_code == 2 and "did not answer within 1.5s (--api-timeout)" in result.stderr, result.stderr
    assert elapsed < 5, elapsed
    assert all(not r.reads and not r.batches for r in runners)  # nothing run without a cluster
