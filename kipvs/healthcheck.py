"""Health checks load balancers ask this node (`kipvs watch`), as kube-proxy answers them.

- Per Service: every LoadBalancer Service with `externalTrafficPolicy: Local` has a
  `spec.healthCheckNodePort`; on it, on the node IPs, any path answers kube-proxy's JSON
  (pkg/proxy/healthcheck/service_health.go): 200 when this node has ready endpoints of the
  Service and the proxy is healthy, 503 otherwise, so the load balancer sends traffic only to
  nodes that can serve it locally. Servers open and close as Services come and go; a port that
  cannot be bound is a problem line about that Service, never a crash.
- Per node: /healthz and /livez on kube-proxy's port 10256 (--healthz-bind-address), the check
  load balancers use for `externalTrafficPolicy: Cluster`; /healthz also fails while the Node
  is being deleted or is tainted for deletion by the cluster autoscaler (kube-proxy's rule).

"Healthy" is the watch's own freshness rule (the last completed sync is younger than
--health-max-age), the same as the metrics server's /healthz.
"""
from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from kipvs.cluster import (SERVICE_NAME_LABEL, ParsedEndpointSlice, ParsedService, Problem, endpoint_slice_spec,
                           find_node, service_spec)
from kipvs.metrics import listen
from kipvs.sources import Snapshot

log = logging.getLogger("kipvs.health")

TO_BE_DELETED_TAINT = "ToBeDeletedByClusterAutoscaler"
HEADERS = {"Content-Type": "application/json", "X-Content-Type-Options": "nosniff"}


@dataclass(frozen=True)
class HealthCheck:
    namespace: str
    name: str
    port: int
    local_endpoints: int


def _raw_spec(obj) -> dict:
    spec = obj.get("spec") if isinstance(obj, dict) else None
    return spec if isinstance(spec, dict) else {}


def wants_health_check(obj) -> bool:
    """A LoadBalancer Service with externalTrafficPolicy Local and a health check port (unparsed: cheap)."""
    if isinstance(obj, ParsedService):
        return obj.spec.type == "LoadBalancer" and obj.spec.external_local and \
            obj.spec.health_check_node_port is not None
    spec = _raw_spec(obj)
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local" and \
        spec.get("healthCheckNodePort") is not None


def _service_name(obj) -> str | None:
    """The Service an EndpointSlice belongs to, without parsing its endpoints (watch keeps slices parsed)."""
    if isinstance(obj, ParsedEndpointSlice):
        return obj.spec.service if obj.spec else None
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    labels = meta.get("labels") if isinstance(meta, dict) else None
    name = labels.get(SERVICE_NAME_LABEL) if isinstance(labels, dict) else None
    return name if isinstance(name, str) else None


def wanted_checks(snapshot: Snapshot, node_name: str, node_port_range: tuple[int, int] = (30000, 32767)
                  ) -> dict[tuple[str, str], HealthCheck]:
    """The health checks this node serves, with its ready local endpoints per Service. A port outside
    --service-node-port-range is never listened on (the desired state reports it): a Service must not
    make watch bind 22 or 10250.

    Only the few Local-policy LoadBalancer Services and their slices are parsed (their problems
    are already reported by the sync that read the same snapshot)."""
    scratch: list[Problem] = []
    ports: dict[tuple[str, str], int] = {}
    for obj in snapshot.services:
        if not wants_health_check(obj):
            continue
        service = service_spec(obj, scratch)
        low, high = node_port_range
        if service.health_check_node_port and service.name and not service.skip_reason and \
                low <= service.health_check_node_port <= high:
            ports[(service.namespace, service.name)] = service.health_check_node_port
    local: dict[tuple[str, str], set[str]] = {key: set() for key in ports}
    names = {name for _, name in ports}
    for obj in snapshot.endpoint_slices:
        if _service_name(obj) not in names:
            continue
        parsed = endpoint_slice_spec(obj, scratch)
        if parsed and (parsed.namespace, parsed.service) in local:
            local[(parsed.namespace, parsed.service)].update(
                e.ip for e in parsed.endpoints if e.ready and e.node == node_name)
    return {key: HealthCheck(key[0], key[1], port, len(local[key])) for key, port in ports.items()}


def node_eligible(snapshot: Snapshot, node_name: str) -> bool:
    """False while this Node is being deleted or the cluster autoscaler is about to delete it."""
    node = find_node(snapshot.nodes, node_name)
    if node is None:
        return True
    meta = node.get("metadata") if isinstance(node.get("metadata"), dict) else {}
    spec = node.get("spec") if isinstance(node.get("spec"), dict) else {}
    taints = spec.get("taints") if isinstance(spec.get("taints"), list) else []
    return not meta.get("deletionTimestamp") and \
        not any(isinstance(t, dict) and t.get("key") == TO_BE_DELETED_TAINT for t in taints)


def service_answer(check: HealthCheck, healthy: bool) -> tuple[int, str]:
    """(status, body) of one Service's health check, in kube-proxy's JSON."""
    body = {"service": {"namespace": check.namespace, "name": check.name},
            "localEndpoints": check.local_endpoints, "serviceProxyHealthy": healthy}
    return (200 if check.local_endpoints and healthy else 503), json.dumps(body, indent="\t")


def node_answer(path: str, healthy: bool, eligible: bool, last_sync: float | None, now: float) -> tuple[int, str]:
    """(status, body) of /healthz or /livez (404 elsewhere), in kube-proxy's JSON. Times are unix seconds."""
    def stamp(when: float | None) -> str:
        return datetime.fromtimestamp(when or 0, timezone.utc).isoformat()

    if path not in ("/healthz", "/livez"):
        return 404, json.dumps({"error": "not found"})
    ok = healthy and (eligible or path == "/livez")
    body = {"lastUpdated": stamp(now if healthy else last_sync), "currentTime": stamp(now)}
    if path == "/healthz":
        body["nodeEligible"] = eligible
    return (200 if ok else 503), json.dumps(body)


def _handler(answer: Callable[[str], tuple[int, str]]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_):
            pass

        def do_GET(self):
            code, body = answer(self.path.split("?")[0])
            data = (body + "\n").encode()
            self.send_response(code)
            for key, value in HEADERS.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


class HealthServers:
    """The per-Service health check servers and the node's /healthz, kept in step with each sync."""

    def __init__(self, healthy: Callable[[], bool], last_sync: Callable[[], float | None],
                 clock: Callable[[], float]):
        self.healthy = healthy
        self.last_sync = last_sync
        self.clock = clock
        self.lock = threading.Lock()
        self.checks: dict[tuple[str, str], HealthCheck] = {}
        self.servers: dict[tuple[str, str], tuple[tuple, list[ThreadingHTTPServer]]] = {}
        self.eligible = True
        self.node_server: ThreadingHTTPServer | None = None

    def serve_node(self, address: tuple[str, int]) -> None:
        """/healthz and /livez; an address that cannot be bound is logged, and the watch goes on."""
        def answer(path: str) -> tuple[int, str]:
            return node_answer(path, self.healthy(), self.eligible, self.last_sync(), self.clock())

        try:
            self.node_server = listen(address, _handler(answer), "healthz")
        except OSError as exc:
            log.error("--healthz-bind-address %s:%d: cannot listen: %s; no node health check",
                      address[0], address[1], exc.strerror)

    def answer(self, key: tuple[str, str]) -> tuple[int, str]:
        with self.lock:
            check = self.checks.get(key)
        if check is None:  # closed between accept and answer
            return 503, json.dumps({"error": "no such health check"})
        return service_answer(check, self.healthy())

    def update(self, checks: dict[tuple[str, str], HealthCheck], node_ips: list[str],
               eligible: bool = True) -> list[Problem]:
        """Open what is new, close what is gone or moved; returns a problem per check that cannot listen
        (tried again at the next update)."""
        with self.lock:
            self.checks = dict(checks)
            self.eligible = eligible
        problems = []
        for key in list(self.servers):
            where, servers = self.servers[key]
            if key not in checks or where != (checks[key].port, tuple(node_ips)):
                self._close(servers)
                del self.servers[key]
        for key, check in checks.items():
            if key in self.servers:
                continue
            opened, error = [], None
            for ip in node_ips:
                try:
                    opened.append(listen((ip, check.port), _handler(lambda _path, key=key: self.answer(key)),
                                         f"health {key[0]}/{key[1]}"))
                except OSError as exc:
                    error = f"cannot listen on {ip}:{check.port}: {exc.strerror}; no health check on this node"
                    break
            if error or not opened:
                self._close(opened)
                problems.append(Problem(f"Service {key[0]}/{key[1]}", "spec.healthCheckNodePort",
                                        error or "no node IP to listen on; no health check on this node"))
                continue
            self.servers[key] = ((check.port, tuple(node_ips)), opened)
            log.info("health check for Service %s/%s on port %d", key[0], key[1], check.port)
        return problems

    def ports(self) -> dict[tuple[str, str], int]:
        return {key: where[0] for key, (where, _) in self.servers.items()}

    @staticmethod
    def _close(servers: list[ThreadingHTTPServer]) -> None:
        for server in servers:
            server.shutdown()
            server.server_close()

    def close(self) -> None:
        for _, servers in self.servers.values():
            self._close(servers)
        self.servers.clear()
        if self.node_server:
            self._close([self.node_server])
            self.node_server = None
