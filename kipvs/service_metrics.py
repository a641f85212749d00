"""Per-Service traffic on /metrics: the kernel's IPVS counters of kipvs's virtual servers, named
and labelled as kube-router's kube_router_service_* (kipvs_service_*), plus namespace/service.

Read when Prometheus scrapes, not on every sync: a scrape comes every 15-60 s whatever the churn,
while watch may sync several times a second during a rollout, and a sync must not wait on two
listings of every virtual and real server (about 1 s per 10,000 lines under the lab's UML). A
listing younger than `min_interval` is reused, so scrapers hammering /metrics cannot run ipvsadm
more than once per interval, and concurrent scrapes share one read.

The kernel's cumulative counters are typed gauge, as kube-router types the same series: the
Prometheus client names every counter *_total, and these keep kube-router's names.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from kipvs.errors import KipvsError
from kipvs.facts.ipvs_stats import Traffic, read_traffic
from kipvs.runner import Runner

log = logging.getLogger("kipvs.metrics")

# (kube-router's name after its prefix, help, Traffic field)
SERIES = (
    ("total_connections", "Connections to the virtual server since it was created.", "connections"),
    ("packets_in", "Packets received by the virtual server since it was created.", "packets_in"),
    ("packets_out", "Packets sent by the virtual server since it was created.", "packets_out"),
    ("bytes_in", "Bytes received by the virtual server since it was created.", "bytes_in"),
    ("bytes_out", "Bytes sent by the virtual server since it was created.", "bytes_out"),
    ("pps_in", "Incoming packets per second (kernel estimator).", "pps_in"),
    ("pps_out", "Outgoing packets per second (kernel estimator).", "pps_out"),
    ("cps", "Connections per second (kernel estimator).", "cps"),
    ("bps_in", "Incoming bytes per second (kernel estimator).", "bps_in"),
    ("bps_out", "Outgoing bytes per second (kernel estimator).", "bps_out"),
)
LABELS = ("namespace", "service", "vip", "protocol", "port")


def traffic_families(traffic: dict[tuple, Traffic], origins: dict[tuple, object]) -> list[GaugeMetricFamily]:
    """The kipvs_service_* families of the virtual servers kipvs programmed (`origins`: key -> Origin);
    others' virtual servers are not ours to report."""
    rows = []
    for key in sorted(k for k in traffic if k in origins):
        origin = origins[key]
        protocol, vip, port = key
        rows.append(([origin.namespace, origin.name, vip, protocol.upper(), str(port)], traffic[key]))
    families = []
    for name, help_text, field in SERIES:
        family = GaugeMetricFamily(f"kipvs_service_{name}", help_text, labels=LABELS)
        for labels, value in rows:
            family.add_metric(labels, getattr(value, field))
        families.append(family)
    return families


class TrafficMetrics:
    """A /metrics collector (Metrics.add_collector): reads the counters on scrape, at most every `min_interval`."""

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

    def collect(self):
        """prometheus_client's Collector protocol: called on every scrape of /metrics."""
        yield from traffic_families(self.current(), self.origins())
        yield GaugeMetricFamily("kipvs_service_stats_read_seconds", "Time of the last read of the IPVS counters.",
                                value=self.read_seconds)
        yield CounterMetricFamily("kipvs_service_stats_errors_total", "Failed reads of the IPVS counters.",
                                  value=self.errors)
