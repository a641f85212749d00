"""Prometheus metrics and /healthz for `kipvs watch`, through prometheus_client (the ecosystem's library:
histograms with buckets, process_* and a build-info metric). Only watch mode imports this module.

Besides kipvs's own series, kube-proxy's: the network programming latency (its SLI, from an
EndpointSlice's last-change trigger time to the kernel write) and the sync durations of full and
event syncs, with kube-proxy's buckets, so the same dashboards and alerts read both.
"""
from __future__ import annotations

import platform
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector,
                               disable_created_metrics, generate_latest)
from prometheus_client.core import CounterMetricFamily

from kipvs import __version__
from kipvs.errors import ConfigError
from kipvs.programming_latency import latencies

TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"  # what generate_latest writes
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# kube-proxy's sync_{full,partial}_proxy_rules_duration_seconds: 1 ms doubling to 16 s.
SYNC_BUCKETS = tuple(0.001 * 2 ** i for i in range(15))
# kube-proxy's network_programming_duration_seconds: 0.25 s, 0.5 s, every second to 59 s, every 5 s to
# 115 s, every 30 s from 2 to 5 minutes.
PROGRAMMING_BUCKETS = (0.25, 0.5, *range(1, 60), *range(60, 120, 5), *range(120, 301, 30))
# (ReflectorStats field, help) of the kipvs_reflector_<field>_total counters
REFLECTOR_SERIES = (("watch_restarts", "Watch streams that ended and were started again."),
                    ("relists_410", "Re-lists after 410 Gone."),
                    ("errors", "List or watch failures (retried with backoff)."),
                    ("lists", "Complete lists."),
                    ("watches", "Watch requests the API server accepted."))

disable_created_metrics()  # no *_created series: kube-proxy (Go client, text format) sends none either


class Metrics:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.registry = CollectorRegistry()
        registry = self.registry
        self.duration = Histogram("kipvs_sync_duration_seconds", "Time of one sync (read, plan, apply, verify).",
                                  buckets=BUCKETS, registry=registry)
        self.full_duration = Histogram(
            "kipvs_sync_full_duration_seconds", "Time of one full sync: the kernel read and every Service "
            "recomputed (at start, after a re-list, every --sync-period).", buckets=SYNC_BUCKETS, registry=registry)
        self.event_duration = Histogram(
            "kipvs_sync_event_duration_seconds", "Time of one event sync: only the changed Services, planned "
            "against the kernel the last sync verified.", buckets=SYNC_BUCKETS, registry=registry)
        self.programming = Histogram(
            "kipvs_network_programming_duration_seconds", "From an EndpointSlice's "
            "endpoints.kubernetes.io/last-change-trigger-time to the sync that wrote it into the kernel "
            "(kube-proxy's network_programming_duration_seconds).", buckets=PROGRAMMING_BUCKETS, registry=registry)
        self.sync_errors = Counter("kipvs_sync_errors_total", "Syncs that failed or did not converge.",
                                   registry=registry)
        self.commands = Counter("kipvs_commands_applied_total", "Commands sent to ip, ipvsadm and sysctl.",
                                registry=registry)
        self.last_success_gauge = Gauge("kipvs_last_successful_sync_timestamp_seconds",
                                        "Unix time of the last converged sync.", registry=registry)
        self.converged = Gauge("kipvs_sync_converged", "1 when the last sync left the kernel as wanted.",
                               registry=registry)
        self.remaining = Gauge("kipvs_sync_remaining_differences", "What still differed after the last sync.",
                               registry=registry)
        self.services = Gauge("kipvs_services", "Services programmed.", registry=registry)
        self.virtual_servers = Gauge("kipvs_virtual_servers", "IPVS virtual servers programmed.", registry=registry)
        self.real_servers = Gauge("kipvs_real_servers", "IPVS real servers programmed.", registry=registry)
        Info("kipvs_build", "kipvs's version and the Python that runs it.", registry=registry).info(
            {"version": __version__, "python_version": platform.python_version(),
             "python_implementation": platform.python_implementation()})
        ProcessCollector(registry=registry)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
        self.reflector_stats: dict[str, object] = {}
        registry.register(_ReflectorCollector(self))
        self.last_success = 0.0  # unix time
        self.last_success_monotonic: float | None = None
        # Liveness follows syncs that completed, converged or not: one Service whose line keeps failing
        # is a problem and a metric (kipvs_sync_converged, kipvs_sync_remaining_differences), and
        # restarting kipvs would not fix it.
        self.last_completed_monotonic: float | None = None

    def add_collector(self, collector) -> None:
        """More series for /metrics, collected when scraped (prometheus_client's Collector: `collect()`)."""
        self.registry.register(collector)

    def observe_sync(self, seconds: float, ok: bool, commands: int, services: int, virtual_servers: int,
                     real_servers: int, remaining: int = 0, full: bool | None = None) -> None:
        """One completed sync; `full`: which of the full/event histograms it also goes to (None: neither)."""
        self.duration.observe(seconds)
        if full is not None:
            (self.full_duration if full else self.event_duration).observe(seconds)
        self.commands.inc(commands)
        self.converged.set(int(ok))
        self.remaining.set(remaining)
        if ok:
            now = time.time()
            self.last_success_gauge.set(now)
            self.services.set(services)
            self.virtual_servers.set(virtual_servers)
            self.real_servers.set(real_servers)
        else:
            self.sync_errors.inc()
        with self.lock:
            self.last_completed_monotonic = time.monotonic()
            if ok:
                self.last_success, self.last_success_monotonic = now, time.monotonic()

    def observe_error(self) -> None:
        self.sync_errors.inc()

    def observe_programmed(self, trigger_times: list[float], written_at: float) -> None:
        """The EndpointSlice changes (their trigger times, unix seconds) a converged sync wrote at `written_at`."""
        for seconds in latencies(trigger_times, written_at):
            self.programming.observe(seconds)

    def age(self) -> float | None:
        """Seconds since the last completed sync (None before the first)."""
        with self.lock:
            return None if self.last_completed_monotonic is None else time.monotonic() - self.last_completed_monotonic

    def render(self) -> str:
        """/metrics in the text exposition format."""
        return generate_latest(self.registry).decode()


class _ReflectorCollector:
    """kipvs_reflector_*_total{resource}: the reflectors' own counters, read when scraped."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def collect(self):
        stats = sorted(self.metrics.reflector_stats.items())
        for name, help_text in REFLECTOR_SERIES:
            family = CounterMetricFamily(f"kipvs_reflector_{name}_total", help_text, labels=["resource"])
            for resource, values in stats:
                family.add_metric([resource], getattr(values, name))
            yield family


class _Server(ThreadingHTTPServer):
    def server_bind(self):
        # HTTPServer.server_bind looks the address's name up (getfqdn): on a node whose DNS does not
        # answer that costs seconds per server, inside the sync that opens health checks.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


class _IPv6Server(_Server):
    address_family = socket.AF_INET6


def serve(metrics: Metrics, address: tuple[str, int], max_age: float) -> ThreadingHTTPServer:
    """/metrics, and /healthz: 200 while the last completed sync is younger than `max_age` seconds.
    `address`: (host, port) as `config.parse_listen_address` gives it; an IPv6 host listens on IPv6."""
    host, port = address

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_):
            pass

        def do_GET(self):
            if self.path == "/metrics":
                code, body, ctype = 200, metrics.render(), TEXT_FORMAT
            elif self.path == "/healthz":
                age = metrics.age()
                healthy = age is not None and age <= max_age
                code = 200 if healthy else 503
                body = f"ok: last sync {age:.1f}s ago\n" if healthy else \
                    ("no completed sync yet\n" if age is None else f"stale: last completed sync {age:.0f}s ago\n")
                ctype = "text/plain"
            else:
                code, body, ctype = 404, "not found\n", "text/plain"
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    try:
        return listen((host, port), Handler, "metrics")
    except OSError as exc:
        raise ConfigError(f"--metrics-addr {host}:{port}: cannot listen: {exc.strerror}") from None


def listen(address: tuple[str, int], handler: type[BaseHTTPRequestHandler], name: str) -> ThreadingHTTPServer:
    """An HTTP server on (host, port), IPv6 when the host is, answering from a daemon thread.
    Raises OSError when the address cannot be bound."""
    server_class = _IPv6Server if ":" in address[0] else _Server
    server = server_class(address, handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name=name, daemon=True).start()
    return server
