"""deploy/grafana-dashboard.json parses, and every metric it queries is one kipvs exports."""
import json
import re
from pathlib import Path

from kipvs.metrics import Metrics
from kipvs.service_metrics import traffic_families

DASHBOARD = Path(__file__).resolve().parent.parent.parent / "deploy" / "grafana-dashboard.json"
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")


class Collector:
    def __init__(self, collect):
        self.collect = collect


def exported() -> set[str]:
    """Series names in /metrics: each `# TYPE` name, and a histogram's _bucket/_sum/_count series."""
    names = set()
    metrics = Metrics()
    metrics.add_collector(Collector(lambda: traffic_families({}, {})))  # the per-Service series watch adds
    for line in metrics.render().splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names |= {name + s for s in HISTOGRAM_SERIES} if kind == "histogram" else {name}
    return names


def queries(dashboard: dict) -> list[str]:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    return exprs + [v["query"]["query"] for v in dashboard["templating"]["list"] if isinstance(v.get("query"), dict)]


def test_dashboard_parses_and_its_panels_are_whole():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] == "kipvs"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]


def test_every_queried_metric_exists_in_kipvs_metrics():
    used = {name for expr in queries(json.loads(DASHBOARD.read_text())) for name in re.findall(r"\bkipvs_\w+", expr)}
    assert used and used <= exported(), used - exported()
    # what an operator looks for first: sync duration, errors, what is programmed, kube-proxy's latency SLI
    assert {"kipvs_sync_duration_seconds_bucket", "kipvs_sync_errors_total", "kipvs_virtual_servers",
            "kipvs_real_servers", "kipvs_services", "kipvs_service_cps", "kipvs_service_bps_in",
            "kipvs_network_programming_duration_seconds_bucket", "kipvs_sync_full_duration_seconds_bucket",
            "kipvs_sync_event_duration_seconds_bucket", "kipvs_build_info"} <= used


def test_the_process_panels_query_what_prometheus_client_exports():
    dashboard = json.loads(DASHBOARD.read_text())
    used = {name for expr in queries(dashboard) for name in re.findall(r"\bprocess_\w+", expr)}
    assert used == {"process_cpu_seconds_total", "process_resident_memory_bytes"} and used <= exported()


def test_exported_names_are_read_from_metrics_render():
    """Guards the check above: it compares with what /metrics serves, histogram series included."""
    assert {"kipvs_sync_duration_seconds_bucket", "kipvs_reflector_relists_410_total"} <= exported()
