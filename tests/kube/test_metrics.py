import urllib.error
import urllib.request

from kipvs.metrics import Metrics, serve
from tests.kube.test_watch import seed


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_metrics_and_healthz_follow_the_syncs(kube, running):
    server = serve(running.watcher.metrics, ("127.0.0.1", 0), max_age=60)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    seed(kube)
    running.wait_converged()
    code, text = get(base + "/metrics")
    assert code == 200
    assert 'kipvs_sync_duration_seconds_bucket{le="+Inf"}' in text and "kipvs_sync_duration_seconds_count" in text
    gauges = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
              if line.startswith(("kipvs_virtual_servers ", "kipvs_real_servers ", "kipvs_services "))}
    # Ours (5 services, 2 endpoints each) and whatever else the server holds (its own `kubernetes` Service).
    others = [s for s in kube.snapshot().services if s["metadata"]["namespace"] != "kipvs-test"]
    assert gauges["kipvs_services"] == 5 + len(others)
    assert gauges["kipvs_virtual_servers"] >= 5 and gauges["kipvs_real_servers"] >= 10
    assert 'kipvs_reflector_lists_total{resource="Service"} 1' in text
    assert "kipvs_commands_applied_total" in text and "kipvs_last_successful_sync_timestamp_seconds" in text
    assert get(base + "/healthz")[0] == 200
    server.shutdown()


def test_healthz_fails_before_the_first_sync_and_when_stale():
    metrics = Metrics()
    server = serve(metrics, ("127.0.0.1", 0), max_age=0.0)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    assert get(base + "/healthz") == (503, "no completed sync yet\n")
    metrics.observe_sync(0.01, True, 3, 1, 1, 1)
    code, body = get(base + "/healthz")
    assert code == 503 and body.startswith("stale")
    server.shutdown()


def test_a_sync_that_does_not_converge_is_a_metric_not_a_liveness_failure():
    metrics = Metrics()
    server = serve(metrics, ("127.0.0.1", 0), max_age=60)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    metrics.observe_sync(0.01, False, 3, 1, 1, 1, remaining=2)  # one Service's line keeps failing
    assert get(base + "/healthz")[0] == 200
    text = get(base + "/metrics")[1]
    assert "kipvs_sync_converged 0\n" in text and "kipvs_sync_remaining_differences 2\n" in text
    assert "kipvs_sync_errors_total 1\n" in text
    server.shutdown()


def test_metrics_listen_on_ipv6_loopback():
    server = serve(Metrics(), ("::1", 0), max_age=60)
    assert get(f"http://[::1]:{server.server_address[1]}/metrics")[0] == 200
    server.shutdown()
