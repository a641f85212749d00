"""Expand: validated cluster values + node + options -> the virtual servers, addresses and routes this node wants.

Pure: no I/O. Kubernetes semantics live here (kube-router's service proxy, kube-proxy's
where it is the standard); parsing and type checks live in `kipvs.cluster`. Two kinds of
problem come out, with different effects on the kernel:
- a Service kipvs cannot fully understand (malformed) keeps the virtual servers its
  addresses had: `protected_addresses`, or `hold_removals` when not even its addresses
  could be read;
- what is understood but not allowed (an address outside the allowed ranges, a NodePort
  outside the range, an address another Service already serves) is simply not wanted,
  so whatever it had programmed is removed.
Placement is predictable: ClusterIPs first, then external and load-balancer IPs, then
NodePorts; within each, the older Service (creationTimestamp), then namespace/name, wins.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from kipvs.addresses import special_reason
from kipvs.cluster import (Endpoint, EndpointIndex, Problem, ServicePort, ServiceSpec, endpoint_slice_spec,
                           find_node, node_ips_of, node_zone_of, service_spec, shown)
from kipvs.config import KNOWN_SCHEDULERS, ProxyOptions
from kipvs.endpoints import select
from kipvs.gc_pause import gc_paused
from kipvs.model import RealServer, VirtualServer, family_of, known_family, plain_real_server
from kipvs.sources import Snapshot
from kipvs.topology import SAME_ZONE, closest

__all__ = ["BackendInfo", "Desired", "Origin", "Problem", "build_desired", "node_ips_from_objects"]

SCHEDULER_ANNOTATIONS = ("kube-router.io/service.scheduler", "kipvs.io/scheduler")
SCHEDFLAGS_ANNOTATION = "kube-router.io/service.schedflags"
LOCAL_ANNOTATION = "kube-router.io/service.local"
SKIP_LB_IPS_ANNOTATION = "kube-router.io/service.skiplbips"
PROXY_NAME_LABEL = "service.kubernetes.io/service-proxy-name"
# kube-router's generic flag names, as ipvsadm names them for the schedulers that use them.
# flag-3 means nothing to sh or mh (ipvsadm -S never shows it): accepted, not sent.
SCHED_FLAG_NAMES = {
    "sh": {"flag-1": "sh-fallback", "flag-2": "sh-port", "flag-3": None},
    "mh": {"flag-1": "mh-fallback", "flag-2": "mh-port", "flag-3": None},
}


@dataclass(frozen=True, slots=True)
class Origin:
    """Which Service (and port) a virtual server stands for, and how it is reached."""

    namespace: str
    name: str
    port_name: str
    kind: str  # ClusterIP, NodePort, ExternalIP, LoadBalancer


# What `backends` keeps for each real server: the parsed Endpoint itself (its .pod and .node are what
# show and netfilter read); a copy per endpoint cost ~25 MB and 0.2 s at 500,000 endpoints.
BackendInfo = Endpoint


@dataclass(frozen=True)
class Desired:
    virtual_servers: tuple[VirtualServer, ...] = ()
    addresses: tuple[str, ...] = ()
    node_ips: dict[int, str] = field(default_factory=dict)
    origins: dict[tuple, Origin] = field(default_factory=dict)
    # (ip, port) -> its endpoint (pod, node), for `show` only: build_desired(backends=True); 500,000 of them
    # are ~65 MB at scale that a sync does not need. What netfilter and watch need is `local_backends`.
    backends: dict[tuple[str, int], BackendInfo] = field(default_factory=dict)
    local_backends: frozenset[tuple[str, int]] = frozenset()  # (ip, port) of endpoints on this node
    # Per virtual server: endpoints still listed but not chosen (terminating, unready): they drain.
    held: dict[tuple, frozenset[tuple[str, int]]] = field(default_factory=dict)
    protected_addresses: frozenset[str] = frozenset()
    protected_keys: frozenset[tuple] = frozenset()  # virtual servers kept for a Service that cannot be read now
    # Services ("Service ns/name") whose addresses could not be read, with nothing known of what they had:
    # no stale virtual server, address or route is removed this time (plan counts what is held).
    holding: tuple[str, ...] = ()
    problems: tuple[Problem, ...] = ()
    skipped: tuple[str, ...] = ()
    # (namespace, name) -> why what is programmed differs from the plain Service (annotations, topology)
    notes: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)

    @property
    def hold_removals(self) -> bool:
        return bool(self.holding)


def unusable_reason(ip: str, host_addresses: frozenset[str]) -> str | None:
    """Why an address can never be a service address on this node (None when it can be)."""
    if ip in host_addresses:
        return "is one of this host's own addresses"
    why = special_reason(ip)
    return f"is {why}" if why else None


def node_ips_from_objects(nodes, node_name: str) -> dict[int, str]:
    """InternalIP addresses of this node's Node object, one per family."""
    return node_ips_of(find_node(nodes, node_name), [])


_NOTHING_HELD: frozenset[tuple[str, int]] = frozenset()  # shared: 50,000 empty frozensets were 10 MB


@dataclass(slots=True)
class _Placement:
    """One virtual server a Service asks for, waiting for its turn."""

    service: ServiceSpec
    port: ServicePort
    ip: str
    vport: int
    kind: str
    local_only: bool


class _Expander:
    def __init__(self, node_name: str, node_ips: dict[int, str], local_ips: list[str], options: ProxyOptions,
                 endpoints: EndpointIndex, problems: list[Problem], host_addresses: frozenset[str], zone: str = "",
                 keep_backends: bool = True):
        self.node_name = node_name
        self.zone = zone
        self.notes: dict[tuple[str, str], dict[str, None]] = {}
        self.host_addresses = host_addresses | frozenset(node_ips.values())
        self.node_ips = node_ips
        self.local_ips = local_ips
        self.options = options
        self.index = endpoints
        self.problems = problems
        self.skipped: list[str] = []
        self.servers: dict[tuple, VirtualServer] = {}
        self.origins: dict[tuple, Origin] = {}
        self.addresses: dict[str, None] = {}
        self.protected: set[str] = set()
        self.holding: list[str] = []
        self.backends: dict[tuple[str, int], BackendInfo] = {}
        self.keep_backends = keep_backends
        self.local_backends: set[tuple[str, int]] = set()
        self.chosen: dict[tuple, tuple] = {}  # (Service, port, family, local only) -> its real_servers()
        self.held: dict[tuple, frozenset[tuple[str, int]]] = {}
        self.unbound: set[tuple] = set()  # Local-policy external virtual servers without a local endpoint
        # Every key each Service asked for, won or not: who gets a key depends only on who asks for it
        # (kipvs.incremental recomputes a changed Service with the others asking for its keys).
        self.claims: dict[tuple[str, str], list[tuple]] = {}

    def problem(self, service: ServiceSpec, path: str, message: str) -> None:
        self.problems.append(Problem(service.ref, path, message))

    def note(self, service: ServiceSpec, text: str) -> None:
        self.notes.setdefault((service.namespace, service.name), {})[text] = None

    def flag(self, service: ServiceSpec, key: str) -> bool:
        """A true/false annotation; any other value is a problem and counts as unset."""
        value = service.annotations.get(key)
        if value is None:
            return False
        if value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        self.problem(service, f"metadata.annotations[{key}]", f"expected true or false, got {shown(value)}; ignored")
        return False

    # --- annotations: only values from a known set ever reach a command line ---

    def scheduler(self, service: ServiceSpec) -> tuple[str, tuple[str, ...]]:
        scheduler = self.options.scheduler
        for key in SCHEDULER_ANNOTATIONS:
            value = service.annotations.get(key)
            if value is None:
                continue
            if value.strip() in KNOWN_SCHEDULERS:
                scheduler = value.strip()
                self.note(service, f"scheduler {scheduler} from annotation {key}")
                break
            self.problem(service, f"metadata.annotations[{key}]",
                         f"unknown scheduler {shown(value)}: using {self.options.scheduler}")
        raw = service.annotations.get(SCHEDFLAGS_ANNOTATION)
        if raw is None:
            return scheduler, ()
        names = SCHED_FLAG_NAMES.get(scheduler)
        parts = [p.strip() for p in raw.split(",")]
        if names is None or any(p not in names for p in parts):
            why = f"flags apply to sh and mh only, not {scheduler}" if names is None else "expected flag-1,flag-2,flag-3"
            self.problem(service, f"metadata.annotations[{SCHEDFLAGS_ANNOTATION}]", f"ignored {shown(raw)}: {why}")
            return scheduler, ()
        return scheduler, tuple(dict.fromkeys(names[p] for p in parts if names[p]))

    def usable_cluster_ips(self, service: ServiceSpec) -> list[str]:
        usable = []
        for i, ip in enumerate(service.cluster_ips):
            reason = unusable_reason(ip, self.host_addresses)
            if reason:
                self.problem(service, f"spec.clusterIPs[{i}]", f"{ip} {reason}; skipped")
            else:
                usable.append(ip)
        return usable

    def allowed_externals(self, service: ServiceSpec, skip_lb_ips: bool = False) -> list[tuple[str, str]]:
        """Policy: never a host or special address, never inside the cluster IP range (it would shadow
        a ClusterIP), and only inside their ranges (CVE-2020-8554)."""
        allowed = []
        for external in service.externals:
            if skip_lb_ips and external.kind == "LoadBalancer":
                self.note(service, f"no virtual server for load-balancer IP {external.ip} "
                                   f"(annotation {SKIP_LB_IPS_ANNOTATION})")
                continue
            reason = unusable_reason(external.ip, self.host_addresses)
            if reason:
                self.problem(service, external.field, f"{external.ip} {reason}; skipped")
                continue
            if any(ipaddress.ip_address(external.ip) in n for n in self.options.cluster_ip_ranges):
                self.problem(service, external.field,
                             f"{external.ip} is inside --service-cluster-ip-range; skipped")
                continue
            ranges = self.options.external_ip_ranges if external.kind == "ExternalIP" \
                else self.options.loadbalancer_ip_ranges
            if self.options.strict_external_ip_validation and \
                    not any(ipaddress.ip_address(external.ip) in n for n in ranges):
                option = "--service-external-ip-range" if external.kind == "ExternalIP" else "--loadbalancer-ip-range"
                self.problem(service, external.field, f"{external.ip} is outside {option} (CVE-2020-8554); skipped")
                continue
            allowed.append((external.ip, external.kind))
        return allowed

    def real_servers(self, service: ServiceSpec, port: ServicePort, family: int,
                     local_only: bool) -> tuple[tuple[RealServer, ...], frozenset[tuple[str, int]]]:
        """The chosen real servers, and the listed endpoints that are only held (draining)."""
        protocol = {"tcp": "TCP", "udp": "UDP", "sctp": "SCTP"}[port.protocol]
        node_name = self.node_name
        usable = self.index.endpoints(service.namespace, service.name, port.name, protocol, family)
        if local_only:
            usable = [(e, n) for e, n in usable if e.node == node_name]
        else:
            usable = self.nearby(service, usable)
        chosen, held = select(usable)
        if self.keep_backends:
            self.backends.update(((e.ip, n), e) for e, n in chosen + held)
        self.local_backends.update((e.ip, n) for e, n in (chosen + held if held else chosen) if e.node == node_name)
        # Sorting plain tuples is several times cheaper than sorting ordered dataclasses.
        return (tuple(plain_real_server(ip, n) for ip, n in sorted((e.ip, n) for e, n in chosen)),
                frozenset((e.ip, n) for e, n in held) if held else _NOTHING_HELD)

    def nearby(self, service: ServiceSpec, usable: list) -> list:
        """Topology hints (kipvs.topology), and a note when they narrowed the endpoints."""
        near, mode = closest(usable, self.node_name, self.zone)
        if mode:
            where = f"zone {self.zone}" if mode == SAME_ZONE else f"node {self.node_name}"
            self.note(service, f"topology hints ({mode}): {len(near)} of {len(usable)} endpoints, those for {where}")
        elif service.traffic_distribution and usable:
            where = f"zone {self.zone}" if self.zone else "this node (no topology.kubernetes.io/zone label)"
            self.note(service, f"spec.trafficDistribution {service.traffic_distribution}: hints incomplete or none "
                               f"for {where}; every endpoint used")
        return near

    # --- services ---

    def wants(self, service: ServiceSpec) -> bool:
        proxy_name = service.labels.get(PROXY_NAME_LABEL)
        if proxy_name is not None and proxy_name not in self.options.proxy_names:
            self.skipped.append(f"{service.ref}: served by proxy {proxy_name!r}")
            return False
        if service.skip_reason:
            self.skipped.append(f"{service.ref}: {service.skip_reason}")
            return False
        return True

    def placements(self, service: ServiceSpec) -> tuple[list[_Placement], list[_Placement], list[_Placement]]:
        """What one Service asks for: (cluster IP, external/LB IP, NodePort) virtual servers."""
        external_local = service.external_local
        if self.flag(service, LOCAL_ANNOTATION) and not external_local:
            external_local = True
            self.note(service, f"external traffic only to this node's endpoints (annotation {LOCAL_ANNOTATION})")
        cluster_ips = self.usable_cluster_ips(service)
        externals = self.allowed_externals(service, self.flag(service, SKIP_LB_IPS_ANNOTATION))
        families = sorted({family_of(ip) for ip in service.cluster_ips})
        node_ports_apply = service.type in ("NodePort", "LoadBalancer")
        self.check_health_port(service)
        cluster, external, node_port = [], [], []
        for port in service.ports:
            cluster += [_Placement(service, port, ip, port.port, "ClusterIP", service.internal_local)
                        for ip in cluster_ips]
            external += [_Placement(service, port, ip, port.port, kind, external_local) for ip, kind in externals]
            if node_ports_apply and port.node_port is not None:
                low, high = self.options.node_port_range
                if not low <= port.node_port <= high:
                    self.problem(service, f"spec.ports[{port.index}].nodePort",
                                 f"{port.node_port} is outside --service-node-port-range {low}-{high}; skipped")
                    continue
                node_port += [_Placement(service, port, ip, port.node_port, "NodePort", external_local)
                              for ip in self.node_port_addresses(families)]
        return cluster, external, node_port

    def check_health_port(self, service: ServiceSpec) -> None:
        """healthCheckNodePort is a NodePort too: outside the range, watch serves no health check on it."""
        port, (low, high) = service.health_check_node_port, self.options.node_port_range
        if port is not None and service.type == "LoadBalancer" and not low <= port <= high:
            self.problem(service, "spec.healthCheckNodePort",
                         f"{port} is outside --service-node-port-range {low}-{high}; no health check")

    def place(self, placement: _Placement, schedule: dict) -> None:
        service, port = placement.service, placement.port
        key = (port.protocol, placement.ip, placement.vport)
        self.claims.setdefault((service.namespace, service.name), []).append(key)
        if self.options.excluded(placement.ip):
            self.skipped.append(f"{service.ref}: {VirtualServer(*key).label()} is inside --excluded-cidrs")
            return
        if key in self.servers:
            other = self.origins[key]
            self.problem(service, f"spec.ports[{port.index}]",
                         f"{VirtualServer(*key).label()} is already served by {other.namespace}/{other.name}; skipped")
            return
        scheduler, flags = schedule[(service.namespace, service.name)]
        # A port's ClusterIP and NodePort virtual servers usually get the same real servers: computed
        # once and shared (the same instances), not rebuilt per virtual server.
        family = known_family(placement.ip)
        memo = (service.namespace, service.name, port.index, family, placement.local_only)
        found = self.chosen.get(memo)
        if found is None:
            found = self.chosen[memo] = self.real_servers(service, port, family, placement.local_only)
        servers, held = found
        self.servers[key] = VirtualServer(
            port.protocol, placement.ip, placement.vport, scheduler, flags, service.affinity_timeout, servers)
        if held:
            self.held[key] = held
        if placement.local_only and not servers and placement.kind in ("ExternalIP", "LoadBalancer"):
            self.unbound.add(key)
        self.origins[key] = Origin(service.namespace, service.name, port.name, placement.kind)
        if placement.kind != "NodePort":
            self.addresses.setdefault(placement.ip)

    def expand(self, services: list[ServiceSpec]) -> None:
        rounds: tuple[list[_Placement], ...] = ([], [], [])
        schedule = {}
        for service in services:
            if service.malformed:
                # What cannot be understood keeps what it had; with no readable address, nothing is removed.
                self.protected.update(service.cluster_ips)
                self.protected.update(e.ip for e in service.externals)
                if not service.addresses_known:
                    self.holding.append(service.ref)
            if not self.wants(service):
                continue
            schedule[(service.namespace, service.name)] = self.scheduler(service)
            for bucket, asked in zip(rounds, self.placements(service)):
                bucket += asked
        for bucket in rounds:
            for placement in bucket:
                self.place(placement, schedule)
        self.leave_unbound()

    def leave_unbound(self) -> None:
        """externalTrafficPolicy Local, no local endpoint: like kube-router, the external or LB address
        is not bound here, so this node's pods and processes reach it through the network (the load
        balancer, or the node announcing it) instead of an empty virtual server; outside clients are
        never balanced by this node. An address with a local endpoint on any of its ports stays."""
        if not self.unbound:
            return
        served = {key[1] for key in self.servers if key not in self.unbound}
        for key in self.unbound:
            if key[1] in served:
                continue
            origin = self.origins.pop(key)
            del self.servers[key]
            self.held.pop(key, None)
            self.addresses.pop(key[1], None)
            self.skipped.append(f"Service {origin.namespace}/{origin.name}: {VirtualServer(*key).label()} not bound: "
                                "externalTrafficPolicy Local and no endpoint on this node")

    def node_port_addresses(self, families: list[int]) -> list[str]:
        if self.options.nodeport_bindon_all_ip:  # never a special address, whatever the host has
            return [ip for ip in self.local_ips if family_of(ip) in families and special_reason(ip) is None]
        if self.options.nodeport_addresses:  # kube-proxy's --nodeport-addresses
            return [ip for ip in self.local_ips if family_of(ip) in families and special_reason(ip) is None
                    and any(ipaddress.ip_address(ip) in net for net in self.options.nodeport_addresses)]
        return [self.node_ips[f] for f in families if f in self.node_ips]


def _precedence(service: ServiceSpec) -> tuple:
    # Older Services keep their addresses; a missing timestamp (hand-written files) sorts last.
    return (service.created == "", service.created, service.namespace, service.name)


def build_desired(snapshot: Snapshot, node_name: str, node_ips: dict[int, str], options: ProxyOptions,
                  local_ips: list[str] | None = None, host_addresses: frozenset[str] = frozenset(),
                  zone: str | None = None, backends: bool = False) -> Desired:
    """`local_ips`: this host's global addresses outside the dummy interface (for --nodeport-bindon-all-ip);
    `host_addresses`: every address of this host outside the dummy interface (never a service address);
    `zone`: this node's zone label (None: read from its Node in the snapshot); `backends`: fill
    Desired.backends (every real server's pod and node, which `show` prints)."""
    with gc_paused():
        return _build_desired(snapshot, node_name, node_ips, options, local_ips, host_addresses, zone, backends)


def _build_desired(snapshot: Snapshot, node_name: str, node_ips: dict[int, str], options: ProxyOptions,
                   local_ips: list[str] | None, host_addresses: frozenset[str], zone: str | None,
                   backends: bool) -> Desired:
    problems: list[Problem] = list(snapshot.problems)
    services = sorted((service_spec(obj, problems) for obj in snapshot.services), key=_precedence)
    slices = [s for s in (endpoint_slice_spec(obj, problems) for obj in snapshot.endpoint_slices) if s]
    expander = _Expander(node_name, node_ips, local_ips or [], options, EndpointIndex(slices), problems,
                         host_addresses, node_zone_of(find_node(snapshot.nodes, node_name), problems) if zone is None
                         else zone, keep_backends=backends)
    expander.expand(services)
    return Desired(
        virtual_servers=tuple(expander.servers.values()),
        addresses=tuple(expander.addresses),
        node_ips=dict(node_ips),
        origins=expander.origins,
        backends=expander.backends,
        local_backends=frozenset(expander.local_backends),
        held=expander.held,
        protected_addresses=frozenset(expander.protected),
        holding=tuple(expander.holding),
        problems=tuple(problems),
        skipped=tuple(expander.skipped),
        notes={key: tuple(texts) for key, texts in expander.notes.items()},
    )
