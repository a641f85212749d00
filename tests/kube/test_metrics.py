"""kipvs watch's /metrics and /healthz, scraped over HTTP while it watches the real kube-apiserver."""
import time
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from kipvs import __version__
from kipvs.metrics import Metrics, serve
from kipvs.programming_latency import ANNOTATION
from tests.kube.test_watch import seed, service


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def samples(text: str) -> dict:
    """(name, sorted labels) -> value, of every sample in an exposition."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(text: str, name: str, **labels) -> float:
    return samples(text)[(name, tuple(sorted(labels.items())))]


def test_metrics_and_healthz_follow_the_syncs(kube, running):
    server = serve(running.watcher.metrics, ("127.0.0.1", 0), max_age=60)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    seed(kube)
    running.wait_converged()
    code, text = get(base + "/metrics")
    assert code == 200
    assert value(text, "kipvs_sync_duration_seconds_bucket", le="+Inf") == value(text, "kipvs_sync_duration_seconds_count")
    gauges = {name: value(text, name) for name in ("kipvs_virtual_servers", "kipvs_real_servers", "kipvs_services")}
    # Ours (5 services, 2 endpoints each) and whatever else the server holds (its own `kubernetes` Service).
    others = [s for s in kube.snapshot().services if s["metadata"]["namespace"] != "kipvs-test"]
    assert gauges["kipvs_services"] == 5 + len(others)
    assert gauges["kipvs_virtual_servers"] >= 5 and gauges["kipvs_real_servers"] >= 10
    assert value(text, "kipvs_reflector_lists_total", resource="Service") == 1
    assert value(text, "kipvs_commands_applied_total") > 0
    assert value(text, "kipvs_last_successful_sync_timestamp_seconds") > time.time() - 60
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
    assert value(text, "kipvs_sync_converged") == 0 and value(text, "kipvs_sync_remaining_differences") == 2
    assert value(text, "kipvs_sync_errors_total") == 1
    server.shutdown()


def test_metrics_listen_on_ipv6_loopback():
    server = serve(Metrics(), ("::1", 0), max_age=60)
    assert get(f"http://[::1]:{server.server_address[1]}/metrics")[0] == 200
    server.shutdown()


def test_a_watch_exports_kube_proxy_s_latency_histograms_process_and_build_info(kube, running):
    """An endpoint change stamped as the EndpointSlice controller stamps it (this server runs no
    controller: the test writes the annotation) is timed to its kernel write; full and event syncs
    have their own histograms; process_* and the build info come with prometheus_client."""
    server = serve(running.watcher.metrics, ("127.0.0.1", 0), max_age=60)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        seed(kube)
        running.wait_converged()
        time.sleep(0.2)
        before = get(base + "/metrics")[1]
        assert value(before, "kipvs_sync_full_duration_seconds_count") >= 1
        name = "kipvs_network_programming_duration_seconds"
        assert value(before, f"{name}_count") == 0  # the seed's slices carry no trigger time
        svc, slice_ = service(30, endpoints=3)
        kube.apply(svc)
        # Changes triggered before the watch began are not timed: this one is 2 s old, and younger than the watch.
        time.sleep(max(0.0, max(r.started for r in running.watcher.reflectors) + 2.1 - time.time()))
        triggered = time.time() - 2.0  # the Pod change the controller saw, 2 s before it wrote the slice
        slice_["metadata"]["annotations"] = {ANNOTATION: time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(triggered))
                                             + f".{int(triggered % 1 * 1e9):09d}Z"}
        kube.apply(slice_)
        running.wait_converged()
        took = time.time() - triggered
        code, text = get(base + "/metrics")
        assert code == 200
        assert value(text, f"{name}_count") == 1
        assert 2.0 <= value(text, f"{name}_sum") <= took
        assert value(text, f"{name}_bucket", le="1.0") == 0 and value(text, f"{name}_bucket", le="+Inf") == 1
        assert value(text, "kipvs_sync_event_duration_seconds_count") > value(before, "kipvs_sync_event_duration_seconds_count")
        assert value(text, "kipvs_sync_full_duration_seconds_bucket", le="0.001") <= \
            value(text, "kipvs_sync_full_duration_seconds_bucket", le="16.384")  # kube-proxy's buckets
        assert value(text, "kipvs_sync_duration_seconds_count") == \
            value(text, "kipvs_sync_full_duration_seconds_count") + value(text, "kipvs_sync_event_duration_seconds_count")
        assert value(text, "process_resident_memory_bytes") > 10e6 and value(text, "process_cpu_seconds_total") > 0
        info = [labels for (n, labels) in samples(text) if n == "kipvs_build_info"]
        assert len(info) == 1 and ("version", __version__) in info[0]
        assert value(text, "kipvs_reflector_watches_total", resource="EndpointSlice") >= 1
    finally:
        server.shutdown()
