"""Cluster snapshot + node + options -> the virtual servers, addresses and routes this node should have.

Pure: no I/O. This is where Kubernetes semantics live (kube-router's service
proxy, kube-proxy's where it is the standard). A malformed object or field is
reported as a Problem naming namespace/name/field and skipped; it never stops
the other services, and the addresses it names are protected from removal.
"""
from __future__ import annotations

import ipaddress
from collections import defaultdict
from dataclasses import dataclass, field

from kipvs.config import KNOWN_SCHEDULERS, ProxyOptions
from kipvs.model import RealServer, VirtualServer, canonical_ip, family_of
from kipvs.sources import Snapshot

PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}
DEFAULT_AFFINITY_TIMEOUT = 10800
SCHEDULER_ANNOTATIONS = ("kube-router.io/service.scheduler", "kipvs.io/scheduler")
SCHEDFLAGS_ANNOTATION = "kube-router.io/service.schedflags"
LOCAL_ANNOTATION = "kube-router.io/service.local"
PROXY_NAME_LABEL = "service.kubernetes.io/service-proxy-name"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
# kube-router's generic flag names, as ipvsadm names them for the schedulers that use them.
# flag-3 means nothing to sh or mh (ipvsadm -S never shows it): accepted, not sent.
SCHED_FLAG_NAMES = {
    "sh": {"flag-1": "sh-fallback", "flag-2": "sh-port", "flag-3": None},
    "mh": {"flag-1": "mh-fallback", "flag-2": "mh-port", "flag-3": None},
}


# A message about a cluster object stays on one line whatever the object contains.
_CONTROL_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(32), 127)}


@dataclass(frozen=True)
class Problem:
    object: str  # "Service default/web"
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.object}: {self.field}: {self.message}".translate(_CONTROL_ESCAPES)


@dataclass(frozen=True)
class Origin:
    """Which Service (and port) a virtual server stands for, and how it is reached."""

    namespace: str
    name: str
    port_name: str
    kind: str  # ClusterIP, NodePort, ExternalIP, LoadBalancer


@dataclass(frozen=True)
class BackendInfo:
    pod: str
    node: str


@dataclass(frozen=True)
class Desired:
    virtual_servers: tuple[VirtualServer, ...] = ()
    addresses: tuple[str, ...] = ()
    node_ips: dict[int, str] = field(default_factory=dict)
    origins: dict[tuple, Origin] = field(default_factory=dict)
    backends: dict[tuple[str, int], BackendInfo] = field(default_factory=dict)
    protected_addresses: frozenset[str] = frozenset()
    problems: tuple[Problem, ...] = ()
    skipped: tuple[str, ...] = ()


@dataclass(frozen=True)
class Endpoint:
    ip: str
    port: int
    node: str
    pod: str
    ready: bool
    serving: bool


def _meta(obj: dict) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace") or "default", meta.get("name") or "?"


def _show(value) -> str:
    """A value from the cluster, quoted and cut short, safe in a one-line message."""
    return str(value) if isinstance(value, int) else repr(str(value)[:64])


def _valid_ip(value) -> str | None:
    return canonical_ip(value)


def node_ips_from_objects(nodes: tuple[dict, ...], node_name: str) -> dict[int, str]:
    """InternalIP addresses of this node's Node object, one per family."""
    for node in nodes:
        if (node.get("metadata") or {}).get("name") != node_name:
            continue
        found: dict[int, str] = {}
        for address in (node.get("status") or {}).get("addresses") or []:
            ip = _valid_ip(address.get("address")) if address.get("type") == "InternalIP" else None
            if ip:
                found.setdefault(family_of(ip), ip)
        return found
    return {}


class _Builder:
    def __init__(self, snapshot: Snapshot, node_name: str, node_ips: dict[int, str], local_ips: list[str],
                 options: ProxyOptions):
        self.node_name = node_name
        self.node_ips = node_ips
        self.local_ips = local_ips
        self.options = options
        self.problems: list[Problem] = []
        self.skipped: list[str] = []
        self.servers: dict[tuple, VirtualServer] = {}
        self.origins: dict[tuple, Origin] = {}
        self.addresses: dict[str, None] = {}
        self.protected: set[str] = set()
        self.backends: dict[tuple[str, int], BackendInfo] = {}
        self.slices = defaultdict(list)
        for item in snapshot.endpoint_slices:
            labels = (item.get("metadata") or {}).get("labels") or {}
            service = labels.get(SERVICE_NAME_LABEL)
            if service:
                self.slices[(_meta(item)[0], service)].append(item)

    def problem(self, obj: str, field_path: str, message: str) -> None:
        self.problems.append(Problem(obj, field_path, message))

    # --- annotations: only values from a known set ever reach a command line ---

    def scheduler(self, ref: str, annotations: dict) -> tuple[str, tuple[str, ...]]:
        scheduler = self.options.scheduler
        for key in SCHEDULER_ANNOTATIONS:
            value = annotations.get(key)
            if value is None:
                continue
            if isinstance(value, str) and value.strip() in KNOWN_SCHEDULERS:
                scheduler = value.strip()
                break
            self.problem(ref, f"metadata.annotations[{key}]",
                         f"unknown scheduler {_show(value)}: using {self.options.scheduler}")
        raw = annotations.get(SCHEDFLAGS_ANNOTATION)
        if raw is None:
            return scheduler, ()
        names = SCHED_FLAG_NAMES.get(scheduler)
        parts = [p.strip() for p in str(raw).split(",")] if isinstance(raw, str) else [None]
        if names is None or not parts or any(p not in names for p in parts):
            why = f"flags apply to sh and mh only, not {scheduler}" if names is None else "expected flag-1,flag-2,flag-3"
            self.problem(ref, f"metadata.annotations[{SCHEDFLAGS_ANNOTATION}]",
                         f"ignored {_show(raw)}: {why}")
            return scheduler, ()
        return scheduler, tuple(dict.fromkeys(names[p] for p in parts if names[p]))

    # --- endpoints ---

    def endpoints(self, namespace: str, name: str, port_name: str, protocol: str) -> list[Endpoint]:
        found: dict[tuple[str, int], Endpoint] = {}
        for item in self.slices.get((namespace, name), []):
            if item.get("addressType") not in ("IPv4", "IPv6"):
                continue
            port = next((p for p in item.get("ports") or []
                         if (p.get("name") or "") == port_name and (p.get("protocol") or "TCP") == protocol), None)
            number = port.get("port") if port else None
            if not isinstance(number, int) or not 0 < number < 65536:
                continue
            for endpoint in item.get("endpoints") or []:
                ip = _valid_ip((endpoint.get("addresses") or [None])[0])
                if ip is None:
                    continue
                conditions = endpoint.get("conditions") or {}
                ready = conditions.get("ready") is not False
                serving = conditions.get("serving") is True or (conditions.get("serving") is None and ready)
                pod = ((endpoint.get("targetRef") or {}).get("name")) or ""
                candidate = Endpoint(ip, number, endpoint.get("nodeName") or "", pod, ready, serving)
                previous = found.get((ip, number))
                if previous is None or (candidate.ready and not previous.ready):
                    found[(ip, number)] = candidate
        return list(found.values())

    def real_servers(self, endpoints: list[Endpoint], family: int, local_only: bool) -> tuple[RealServer, ...]:
        usable = [e for e in endpoints if (6 if ":" in e.ip else 4) == family and
                  (not local_only or e.node == self.node_name)]
        chosen = [e for e in usable if e.ready] or [e for e in usable if e.serving]
        for e in chosen:
            self.backends[(e.ip, e.port)] = BackendInfo(e.pod, e.node)
        return tuple(sorted(RealServer(e.ip, e.port) for e in chosen))

    # --- services ---

    def add_server(self, ref: str, vs: VirtualServer, origin: Origin) -> None:
        if self.options.excluded(vs.ip):
            self.skipped.append(f"{ref}: {vs.label()} is inside --excluded-cidrs")
            return
        if vs.key in self.servers:
            other = self.origins[vs.key]
            self.problem(ref, "spec.ports", f"{vs.label()} is already served by {other.namespace}/{other.name}; skipped")
            return
        self.servers[vs.key] = vs
        self.origins[vs.key] = origin

    def external_addresses(self, ref: str, spec: dict, status: dict) -> list[tuple[str, str]]:
        wanted = [(ip, "ExternalIP", f"spec.externalIPs[{i}]") for i, ip in enumerate(spec.get("externalIPs") or [])]
        for i, ingress in enumerate((status.get("loadBalancer") or {}).get("ingress") or []):
            if ingress.get("ip") and ingress.get("ipMode") != "Proxy":
                wanted.append((ingress["ip"], "LoadBalancer", f"status.loadBalancer.ingress[{i}].ip"))
        allowed = []
        for raw, kind, path in wanted:
            ip = _valid_ip(raw)
            if ip is None:
                self.problem(ref, path, f"{_show(raw)} is not an IP address; skipped")
                continue
            ranges = self.options.external_ip_ranges if kind == "ExternalIP" else self.options.loadbalancer_ip_ranges
            if self.options.strict_external_ip_validation and not any(ipaddress.ip_address(ip) in n for n in ranges):
                option = "--service-external-ip-range" if kind == "ExternalIP" else "--loadbalancer-ip-range"
                self.problem(ref, path, f"{ip} is outside {option} (CVE-2020-8554); skipped")
                continue
            allowed.append((ip, kind))
        return allowed

    def service(self, svc: dict) -> None:
        namespace, name = _meta(svc)
        ref = f"Service {namespace}/{name}"
        meta, spec, status = svc.get("metadata") or {}, svc.get("spec") or {}, svc.get("status") or {}
        labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
        proxy_name = labels.get(PROXY_NAME_LABEL)
        if proxy_name is not None and proxy_name not in self.options.proxy_names:
            self.skipped.append(f"{ref}: served by proxy {proxy_name!r}")
            return
        if spec.get("type") == "ExternalName":
            self.skipped.append(f"{ref}: ExternalName")
            return
        raw_ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
        if not raw_ips or raw_ips[0] == "None":
            self.skipped.append(f"{ref}: headless" if raw_ips else f"{ref}: no clusterIP")
            return
        problems_before = len(self.problems)
        cluster_ips = []
        for i, raw in enumerate(raw_ips):
            ip = _valid_ip(raw)
            if ip is None:
                self.problem(ref, f"spec.clusterIPs[{i}]", f"{_show(raw)} is not an IP address; skipped")
            else:
                cluster_ips.append(ip)
        families = sorted({family_of(ip) for ip in cluster_ips})
        scheduler, flags = self.scheduler(ref, annotations)
        persistent = None
        if spec.get("sessionAffinity") == "ClientIP":
            timeout = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds")
            if timeout is None:
                persistent = DEFAULT_AFFINITY_TIMEOUT
            elif isinstance(timeout, int) and 0 < timeout <= 86400:
                persistent = timeout
            else:
                self.problem(ref, "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                             f"{_show(timeout)} is not 1-86400; using {DEFAULT_AFFINITY_TIMEOUT}")
                persistent = DEFAULT_AFFINITY_TIMEOUT
        local_external = spec.get("externalTrafficPolicy") == "Local" or \
            str(annotations.get(LOCAL_ANNOTATION, "")).lower() == "true"
        local_internal = spec.get("internalTrafficPolicy") == "Local"
        externals = self.external_addresses(ref, spec, status)
        node_port_ok = spec.get("type") in ("NodePort", "LoadBalancer")
        for i, port in enumerate(spec.get("ports") or []):
            path = f"spec.ports[{i}]"
            protocol = PROTOCOLS.get(port.get("protocol") or "TCP")
            if protocol is None:
                self.problem(ref, f"{path}.protocol", f"unknown protocol {_show(port.get('protocol'))}; port skipped")
                continue
            number = port.get("port")
            if not isinstance(number, int) or not 0 < number < 65536:
                self.problem(ref, f"{path}.port", f"{_show(number)} is not a port (1-65535); port skipped")
                continue
            port_name = port.get("name") or ""
            endpoints = self.endpoints(namespace, name, port_name, port.get("protocol") or "TCP")

            def server(ip: str, vport: int, local_only: bool) -> VirtualServer:
                return VirtualServer(protocol, ip, vport, scheduler, flags, persistent,
                                     self.real_servers(endpoints, family_of(ip), local_only))

            for ip in cluster_ips:
                self.add_server(ref, server(ip, number, local_internal), Origin(namespace, name, port_name, "ClusterIP"))
            for ip, kind in externals:
                self.add_server(ref, server(ip, number, local_external), Origin(namespace, name, port_name, kind))
            node_port = port.get("nodePort")
            if node_port_ok and node_port is not None:
                low, high = self.options.node_port_range
                if not isinstance(node_port, int) or not low <= node_port <= high:
                    self.problem(ref, f"{path}.nodePort",
                                 f"{_show(node_port)} is outside --service-node-port-range {low}-{high}; skipped")
                    continue
                for ip in self.node_port_addresses(families):
                    self.add_server(ref, server(ip, node_port, local_external),
                                    Origin(namespace, name, port_name, "NodePort"))
        for ip in cluster_ips + [ip for ip, _ in externals]:
            if not self.options.excluded(ip):
                self.addresses.setdefault(ip)
        if len(self.problems) > problems_before:
            # Whatever this service had programmed keeps working while its object is broken.
            self.protected.update(ip for ip in map(_valid_ip, raw_ips + list(spec.get("externalIPs") or [])) if ip)

    def node_port_addresses(self, families: list[int]) -> list[str]:
        if self.options.nodeport_bindon_all_ip:
            return [ip for ip in self.local_ips if family_of(ip) in families]
        return [self.node_ips[f] for f in families if f in self.node_ips]


def build_desired(snapshot: Snapshot, node_name: str, node_ips: dict[int, str], options: ProxyOptions,
                  local_ips: list[str] | None = None) -> Desired:
    """`local_ips`: this host's addresses outside the dummy interface (for --nodeport-bindon-all-ip)."""
    builder = _Builder(snapshot, node_name, node_ips, local_ips or [], options)
    for svc in sorted(snapshot.services, key=_meta):
        builder.service(svc)
    return Desired(
        virtual_servers=tuple(builder.servers.values()),
        addresses=tuple(builder.addresses),
        node_ips=dict(node_ips),
        origins=builder.origins,
        backends=builder.backends,
        protected_addresses=frozenset(builder.protected),
        problems=tuple(builder.problems),
        skipped=tuple(builder.skipped),
    )
