"""Prometheus metrics and /healthz for `kipvs watch`, in the text exposition format (no extra dependency)."""
from __future__ import annotations

import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from kipvs.errors import ConfigError

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.duration_sum = 0.0
        self.syncs = 0
        self.sync_errors = 0
        self.commands = 0
        self.last_success = 0.0  # unix time
        self.last_success_monotonic: float | None = None
        # Liveness follows syncs that completed, converged or not: one Service whose line keeps failing
        # is a problem and a metric (kipvs_sync_converged, kipvs_sync_remaining_differences), and
        # restarting kipvs would not fix it.
        self.last_completed_monotonic: float | None = None
        self.converged = 0
        self.remaining = 0
        self.services = 0
        self.virtual_servers = 0
        self.real_servers = 0
        self.reflector_stats: dict[str, object] = {}
        # More lines for /metrics, read when scraped (outside the lock: they may run a command).
        self.collectors: list[Callable[[], list[str]]] = []

    def observe_sync(self, seconds: float, ok: bool, commands: int, services: int, virtual_servers: int,
                     real_servers: int, remaining: int = 0) -> None:
        with self.lock:
            self.last_completed_monotonic = time.monotonic()
            self.converged, self.remaining = int(ok), remaining
            self.syncs += 1
            self.duration_sum += seconds
            index = next((i for i, bound in enumerate(BUCKETS) if seconds <= bound), len(BUCKETS))
            self.buckets[index] += 1
            self.commands += commands
            if ok:
                self.last_success = time.time()
                self.last_success_monotonic = time.monotonic()
                self.services, self.virtual_servers, self.real_servers = services, virtual_servers, real_servers
            else:
                self.sync_errors += 1

    def observe_error(self) -> None:
        with self.lock:
            self.sync_errors += 1

    def age(self) -> float | None:
        """Seconds since the last completed sync (None before the first)."""
        with self.lock:
            return None if self.last_completed_monotonic is None else time.monotonic() - self.last_completed_monotonic

    def render(self) -> str:
        extra = [line for collect in self.collectors for line in collect()]
        with self.lock:
            lines = ["# HELP kipvs_sync_duration_seconds Time of one sync (read, plan, apply, verify).",
                     "# TYPE kipvs_sync_duration_seconds histogram"]
            cumulative = 0
            for bound, count in zip(BUCKETS, self.buckets):
                cumulative += count
                lines.append(f'kipvs_sync_duration_seconds_bucket{{le="{bound}"}} {cumulative}')
            lines += [f'kipvs_sync_duration_seconds_bucket{{le="+Inf"}} {self.syncs}',
                      f"kipvs_sync_duration_seconds_sum {self.duration_sum:.6f}",
                      f"kipvs_sync_duration_seconds_count {self.syncs}"]
            gauges = [
                ("kipvs_sync_errors_total", "counter", "Syncs that failed or did not converge.", self.sync_errors),
                ("kipvs_commands_applied_total", "counter", "Commands sent to ip, ipvsadm and sysctl.", self.commands),
                ("kipvs_last_successful_sync_timestamp_seconds", "gauge", "Unix time of the last converged sync.",
                 self.last_success),
                ("kipvs_sync_converged", "gauge", "1 when the last sync left the kernel as wanted.", self.converged),
                ("kipvs_sync_remaining_differences", "gauge", "What still differed after the last sync.",
                 self.remaining),
                ("kipvs_services", "gauge", "Services programmed.", self.services),
                ("kipvs_virtual_servers", "gauge", "IPVS virtual servers programmed.", self.virtual_servers),
                ("kipvs_real_servers", "gauge", "IPVS real servers programmed.", self.real_servers),
            ]
            for name, kind, help_text, value in gauges:
                lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {value}"]
            for name, help_text in (("watch_restarts", "Watch streams restarted."),
                                    ("relists_410", "Re-lists after 410 Gone."),
                                    ("errors", "List or watch failures (retried with backoff)."),
                                    ("lists", "Complete lists.")):
                lines += [f"# HELP kipvs_reflector_{name}_total {help_text}",
                          f"# TYPE kipvs_reflector_{name}_total counter"]
                for resource, stats in sorted(self.reflector_stats.items()):
                    lines.append(f'kipvs_reflector_{name}_total{{resource="{resource}"}} {getattr(stats, name)}')
            return "\n".join(lines + extra) + "\n"


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
                code, body, ctype = 200, metrics.render(), "text/plain; version=0.0.4"
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
