"""Per-Service traffic on /metrics: the kernel's IPVS counters of kipvs's virtual servers, named
and labelled as kube-router's kube_router_service_* (kipvs_service_*), plus namespace/service.

Read when Prometheus scrapes, not on every sync: a scrape comes every 15-60 s whatever the churn,
while watch may sync several times a second during a rollout, and a sync must not wait on two
listings of every virtual and real server (about 1 s per 10,000 lines under the lab's UML). A
listing younger than `min_interval` is reused, so scrapers hammering /metrics cannot run ipvsadm
more than once per interval, and concurrent scrapes share one read.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from kipvs.errors import KipvsError
from kipvs.facts.ipvs_stats import Traffic, read_traffic
from kipvs.runner import Runner

log = logging.getLogger("kipvs.metrics")

# (kube-router's name after its prefix, Prometheus type, help, Traffic field)
SERIES = (
    ("total_connections", "counter", "Connections to the virtual server since it was created.", "connections"),
    ("packets_in", "counter", "Packets received by the virtual server.", "packets_in"),
    ("packets_out", "counter", "Packets sent by the virtual server.", "packets_out"),
    ("bytes_in", "counter", "Bytes received by the virtual server.", "bytes_in"),
    ("bytes_out", "counter", "Bytes sent by the virtual server.", "bytes_out"),
    ("pps_in", "gauge", "Incoming packets per second (kernel estimator).", "pps_in"),
    ("pps_out", "gauge", "Outgoing packets per second (kernel estimator).", "pps_out"),
    ("cps", "gauge", "Connections per second (kernel estimator).", "cps"),
    ("bps_in", "gauge", "Incoming bytes per second (kernel estimator).", "bps_in"),
    ("bps_out", "gauge", "Outgoing bytes per second (kernel estimator).", "bps_out"),
)


def _label(value: str) -> str:
    """A Prometheus label value: backslash, quote and newline escaped (names come from the cluster)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_traffic(traffic: dict[tuple, Traffic], origins: dict[tuple, object]) -> list[str]:
    """Exposition lines for the virtual servers kipvs programmed (`origins`: key -> Origin); others'
    virtual servers are not ours to report."""
    rows = []
    for key in sorted(k for k in traffic if k in origins):
        origin = origins[key]
        protocol, vip, port = key
        labels = f'namespace="{_label(origin.namespace)}",service="{_label(origin.name)}",vip="{vip}",' \
                 f'protocol="{protocol.upper()}",port="{port}"'
        rows.append((labels, traffic[key]))
    lines = []
    for name, kind, help_text, field in SERIES:
        lines += [f"# HELP kipvs_service_{name} {help_text}", f"# TYPE kipvs_service_{name} {kind}"]
        lines += [f"kipvs_service_{name}{{{labels}}} {getattr(value, field)}" for labels, value in rows]
    return lines


class TrafficMetrics:
    """A /metrics collector (Metrics.collectors): reads the counters on scrape, at most every `min_interval`."""

    def __init__(self, runner: Runner, origins: Callable[[], dict], min_interval: float = 5.0,
                 clock: Callable[[], float] = time.monotonic):
        self.runner = runner
        self.origins = origins
        self.min_interval = min_interval
        self.clock = clock
        self.lock = threading.Lock()
        self.read_at: float | None = None
        self.traffic: dict[tuple, Traffic] = {}
        self.read_seconds = 0.0
        self.errors = 0

    def current(self) -> dict[tuple, Traffic]:
        with self.lock:
            now = self.clock()
            if self.read_at is None or now - self.read_at >= self.min_interval:
                started = time.monotonic()
                try:
                    self.traffic = read_traffic(self.runner)
                except KipvsError as exc:
                    self.errors += 1
                    self.traffic = {}
                    log.warning("cannot read the IPVS counters for /metrics: %s", exc)
                self.read_seconds = time.monotonic() - started
                self.read_at = now
            return self.traffic

    def render(self) -> list[str]:
        lines = render_traffic(self.current(), self.origins())
        return lines + [
            "# HELP kipvs_service_stats_read_seconds Time of the last read of the IPVS counters.",
            "# TYPE kipvs_service_stats_read_seconds gauge", f"kipvs_service_stats_read_seconds {self.read_seconds:.6f}",
            "# HELP kipvs_service_stats_errors_total Failed reads of the IPVS counters.",
            "# TYPE kipvs_service_stats_errors_total counter", f"kipvs_service_stats_errors_total {self.errors}"]
