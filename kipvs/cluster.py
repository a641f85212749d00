"""Parse and validate: raw API objects (JSON dicts, any shape at all) -> typed, checked values with their problems.

Anyone who can write a Service or an EndpointSlice in any namespace, or hand kipvs a
cluster file, controls these objects. Every reader here is total: whatever the input
(wrong types, nulls inside lists, booleans where numbers belong, markup in names), it
returns a value or a Problem naming the object and the field, never an exception.
A value that cannot be understood makes its Service `malformed` (what it had stays
programmed); what is understood but not allowed is decided later, in expansion.
Pure: no I/O.
"""
from __future__ import annotations

import reprlib
import socket
import sys
from collections import defaultdict
from dataclasses import dataclass
from typing import NamedTuple

from kipvs.addresses import (METADATA_V6_PACKED, PLAIN_FIRST_BYTE, endpoint_reason, parse_network, refusal,
                             special_reason)
from kipvs.model import canonical_ip

PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
DEFAULT_AFFINITY_TIMEOUT = 10800
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
ZONE_LABEL = "topology.kubernetes.io/zone"
# A hostile object can carry thousands of bad fields: report the first few, then count the rest.
PROBLEMS_PER_OBJECT = 5

# A message about a cluster object stays on one line whatever the object contains.
_CONTROL_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(32), 127)}


@dataclass(frozen=True)
class Problem:
    object: str  # "Service default/web"
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.object}: {self.field}: {self.message}".translate(_CONTROL_ESCAPES)


def is_int(value) -> bool:
    """A JSON integer; YAML's `on`/`yes`/`true` load as bool, which Python also calls an int."""
    return isinstance(value, int) and not isinstance(value, bool)


def shown(value) -> str:
    """A value from the cluster, quoted and cut short, safe in a one-line message. Bounded work whatever the
    value: reprlib looks at a few items only, and an integer too long to print (YAML's hex or sexagesimal
    forms build ones of any size; str() refuses more than 4,300 digits) is given by its size."""
    if is_int(value):
        return str(value) if -10**18 < value < 10**18 else f"an integer of {value.bit_length()} bits"
    if isinstance(value, str):
        return repr(value[:64])
    try:
        text = f"{type(value).__name__} {reprlib.repr(value)[:48]}"
    except ValueError:
        text = type(value).__name__
    return repr(text[:64])


class Reader:
    """Typed access to one object's fields; every mismatch becomes a Problem and a safe default."""

    def __init__(self, ref: str, problems: list[Problem]):
        self.ref = ref
        self.problems = problems
        self.count = 0
        self.malformed = False

    def problem(self, path: str, message: str, malformed: bool = True) -> None:
        self.malformed = self.malformed or malformed
        self.count += 1
        if self.count <= PROBLEMS_PER_OBJECT:
            self.problems.append(Problem(self.ref, path, message))

    def finish(self) -> None:
        if self.count > PROBLEMS_PER_OBJECT:
            self.problems.append(Problem(self.ref, "(object)",
                                         f"{self.count - PROBLEMS_PER_OBJECT} more problem(s) not shown"))

    def map(self, value, path: str) -> dict:
        if value is None:
            return {}
        if isinstance(value, dict):
            return value
        self.problem(path, f"expected a map, got {shown(value)}")
        return {}

    def list(self, value, path: str) -> list:
        if value is None:
            return []
        if isinstance(value, list):
            return value
        self.problem(path, f"expected a list, got {shown(value)}")
        return []

    def str(self, value, path: str, default: str = "") -> str:
        if value is None:
            return default
        if isinstance(value, str):
            return value
        self.problem(path, f"expected a string, got {shown(value)}")
        return default

    def bool(self, value, path: str) -> bool | None:
        if value is None or isinstance(value, bool):
            return value
        self.problem(path, f"expected true or false, got {shown(value)}")
        return False

    def port(self, value, path: str) -> int | None:
        if is_int(value) and 0 < value < 65536:
            return value
        self.problem(path, f"{shown(value)} is not a port (1-65535); skipped")
        return None

    def ip(self, value, path: str, malformed: bool = True) -> str | None:
        ip = canonical_ip(value)
        if ip is None:
            scoped = " (it has an IPv6 scope id)" if isinstance(value, str) and "%" in value else ""
            self.problem(path, f"{shown(value)} is not an IP address{scoped}; skipped", malformed)
        return ip

    def string_map(self, value, path: str) -> dict[str, str]:
        """labels and annotations: string keys to string values; other entries are reported and dropped."""
        found = {}
        for key, item in self.map(value, path).items():
            if isinstance(key, str) and isinstance(item, str):
                found[sys.intern(key)] = item  # the same few keys on every object of a dump
            else:
                self.problem(f"{path}[{str(key)[:64]}]", f"expected a string, got {shown(item)}")
        return found


def _identity(kind: str, obj: dict, problems: list[Problem]) -> tuple[Reader, dict, str, str]:
    meta_raw = obj.get("metadata")
    meta = meta_raw if isinstance(meta_raw, dict) else {}
    namespace = sys.intern(meta.get("namespace")) if isinstance(meta.get("namespace"), str) and meta.get("namespace") \
        else "default"  # interned, like the other strings every object of a dump repeats (memory)
    name = meta.get("name")
    reader = Reader(f"{kind} {namespace}/{name if isinstance(name, str) and name else shown(name)}", problems)
    if not isinstance(meta_raw, dict):
        reader.problem("metadata", f"expected a map, got {shown(meta_raw)}")
    reader.str(meta.get("namespace"), "metadata.namespace")
    if not isinstance(name, str) or not name:
        reader.problem("metadata.name", f"expected a name, got {shown(name)}")
        name = ""
    return reader, meta, namespace, name


# --- Services ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServicePort:
    index: int
    name: str
    protocol: str  # tcp, udp, sctp
    port: int
    node_port: int | None


@dataclass(frozen=True, slots=True)
class ExternalAddress:
    ip: str
    kind: str  # ExternalIP or LoadBalancer
    field: str


@dataclass(frozen=True, slots=True)  # slots: a dump's 50,000 of them are kept while it is planned
class ServiceSpec:
    """A Service as kipvs understands it. `malformed`: some field could not be understood, so the
    virtual servers its addresses had are kept; `addresses_known`: its cluster IPs could be read."""

    namespace: str
    name: str
    created: str
    type: str
    cluster_ips: tuple[str, ...]
    ports: tuple[ServicePort, ...]
    externals: tuple[ExternalAddress, ...]
    labels: dict
    annotations: dict
    affinity_timeout: int | None
    external_local: bool
    internal_local: bool
    skip_reason: str | None = None
    malformed: bool = False
    addresses_known: bool = True
    health_check_node_port: int | None = None
    traffic_distribution: str = ""
    selects_pods: bool = False  # a non-empty spec.selector: the EndpointSlice controller writes its slices

    @property
    def ref(self) -> str:
        return f"Service {self.namespace}/{self.name}"


def _cluster_ips(r: Reader, spec: dict) -> tuple[list[str], bool]:
    """(the cluster IPs, whether the Service is headless)."""
    raw = spec.get("clusterIPs")
    if raw is not None and not isinstance(raw, list):
        r.list(raw, "spec.clusterIPs")
        raw = None
    if not raw:
        single = r.str(spec.get("clusterIP"), "spec.clusterIP")
        raw = [single] if single else []
    if raw and raw[0] == "None":
        return [], True
    ips = []
    for i, value in enumerate(raw):
        ip = r.ip(value, f"spec.clusterIPs[{i}]")
        if ip and ip not in ips:
            ips.append(ip)
    return ips, False


def _ports(r: Reader, spec: dict) -> list[ServicePort]:
    ports = []
    for i, raw in enumerate(r.list(spec.get("ports"), "spec.ports")):
        path = f"spec.ports[{i}]"
        if not isinstance(raw, dict):
            r.problem(path, f"expected a port, got {shown(raw)}")
            continue
        protocol_name = r.str(raw.get("protocol"), f"{path}.protocol", "TCP")
        protocol = PROTOCOLS.get(protocol_name)
        if protocol is None:
            r.problem(f"{path}.protocol", f"unknown protocol {shown(protocol_name)}; port skipped")
            continue
        number = r.port(raw.get("port"), f"{path}.port")
        if number is None:
            continue
        node_port = raw.get("nodePort")
        if node_port is not None and not is_int(node_port):
            r.problem(f"{path}.nodePort", f"{shown(node_port)} is not a port number")
            node_port = None
        ports.append(ServicePort(i, sys.intern(r.str(raw.get("name"), f"{path}.name")), protocol, number,
                                 node_port or None))
    return ports


def _externals(r: Reader, spec: dict, status: dict) -> list[ExternalAddress]:
    found = []
    for i, raw in enumerate(r.list(spec.get("externalIPs"), "spec.externalIPs")):
        ip = r.ip(raw, f"spec.externalIPs[{i}]")
        if ip:
            found.append(ExternalAddress(ip, "ExternalIP", f"spec.externalIPs[{i}]"))
    load_balancer = r.map(status.get("loadBalancer"), "status.loadBalancer")
    for i, raw in enumerate(r.list(load_balancer.get("ingress"), "status.loadBalancer.ingress")):
        path = f"status.loadBalancer.ingress[{i}]"
        if not isinstance(raw, dict):
            r.problem(path, f"expected a map, got {shown(raw)}")
            continue
        if raw.get("ip") is None or r.str(raw.get("ipMode"), f"{path}.ipMode") == "Proxy":
            continue  # a hostname-only ingress, or a load balancer that proxies (kube-proxy skips those too)
        ip = r.ip(raw.get("ip"), f"{path}.ip")
        if ip:
            found.append(ExternalAddress(ip, "LoadBalancer", f"{path}.ip"))
    return found


def _affinity_timeout(r: Reader, spec: dict) -> int | None:
    if r.str(spec.get("sessionAffinity"), "spec.sessionAffinity") != "ClientIP":
        return None
    config = r.map(spec.get("sessionAffinityConfig"), "spec.sessionAffinityConfig")
    client_ip = r.map(config.get("clientIP"), "spec.sessionAffinityConfig.clientIP")
    timeout = client_ip.get("timeoutSeconds")
    if timeout is None:
        return DEFAULT_AFFINITY_TIMEOUT
    if is_int(timeout) and 0 < timeout <= 86400:
        return timeout
    r.problem("spec.sessionAffinityConfig.clientIP.timeoutSeconds",
              f"{shown(timeout)} is not 1-86400; using {DEFAULT_AFFINITY_TIMEOUT}", malformed=False)
    return DEFAULT_AFFINITY_TIMEOUT


def _health_check_port(r: Reader, spec: dict) -> int | None:
    """Only a health check is lost to a bad value: the Service itself stays programmed."""
    value = spec.get("healthCheckNodePort")
    if value is None or value == 0:
        return None
    if is_int(value) and 0 < value < 65536:
        return value
    r.problem("spec.healthCheckNodePort", f"{shown(value)} is not a port (1-65535); no health check",
              malformed=False)
    return None


def parse_service(obj: dict, problems: list[Problem]) -> ServiceSpec:
    r, meta, namespace, name = _identity("Service", obj, problems)
    labels = r.string_map(meta.get("labels"), "metadata.labels")
    annotations = r.string_map(meta.get("annotations"), "metadata.annotations")
    created = meta.get("creationTimestamp")
    # JSON gives a string; YAML loads the same timestamp as a datetime.
    created = created if isinstance(created, str) else created.isoformat() if hasattr(created, "isoformat") else ""
    spec_raw = obj.get("spec")
    spec = r.map(spec_raw, "spec")
    status = r.map(obj.get("status"), "status")
    service_type = sys.intern(r.str(spec.get("type"), "spec.type", "ClusterIP"))
    if service_type not in SERVICE_TYPES:
        r.problem("spec.type", f"unknown type {shown(service_type)}; treated as ClusterIP")
        service_type = "ClusterIP"
    cluster_ips, headless = _cluster_ips(r, spec)
    skip = "ExternalName" if service_type == "ExternalName" else "headless" if headless else \
        "no clusterIP" if not cluster_ips and isinstance(spec_raw, dict) and not r.malformed else None
    service = ServiceSpec(
        namespace=namespace, name=name, created=created, type=service_type, cluster_ips=tuple(cluster_ips),
        ports=tuple(_ports(r, spec)), externals=tuple(_externals(r, spec, status)), labels=labels,
        annotations=annotations, affinity_timeout=_affinity_timeout(r, spec),
        external_local=r.str(spec.get("externalTrafficPolicy"), "spec.externalTrafficPolicy") == "Local",
        internal_local=r.str(spec.get("internalTrafficPolicy"), "spec.internalTrafficPolicy") == "Local",
        health_check_node_port=_health_check_port(r, spec), traffic_distribution=r.str(
            spec.get("trafficDistribution"), "spec.trafficDistribution"),
        selects_pods=isinstance(selector := spec.get("selector"), dict) and bool(selector),
        skip_reason=skip, malformed=r.malformed or not name,
        addresses_known=isinstance(spec_raw, dict) and bool(cluster_ips or headless or service_type == "ExternalName"))
    r.finish()
    return service


def parse_source_ranges(obj: dict, problems: list[Problem]) -> tuple:
    """spec.loadBalancerSourceRanges as networks; a bad entry is a problem and is left out (so its
    clients are refused, as kube-proxy does), the rest still apply. Call after parse_service, which
    reports the object's other problems."""
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    r = Reader(_identity("Service", obj, [])[0].ref, problems)  # identity problems: parse_service's
    found = []
    for i, raw in enumerate(r.list(spec.get("loadBalancerSourceRanges"), "spec.loadBalancerSourceRanges")):
        path = f"spec.loadBalancerSourceRanges[{i}]"
        try:
            found.append(parse_network(raw))
        except ValueError as exc:
            r.problem(path, f"{shown(raw)} is not a CIDR{refusal(exc)}; skipped", malformed=False)
    r.finish()
    return tuple(found)


def service_key(obj) -> tuple[str, str]:
    """The (namespace, name) parse_service gives a Service (raw or parsed early), read without parsing the rest."""
    if isinstance(obj, ParsedService):
        return obj.spec.namespace, obj.spec.name
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    namespace, name = meta.get("namespace"), meta.get("name")
    return (namespace if isinstance(namespace, str) and namespace else "default",
            name if isinstance(name, str) and name else "")


def _is_load_balancer(obj: dict) -> bool:
    spec = obj.get("spec")
    return isinstance(spec, dict) and spec.get("type") == "LoadBalancer"  # parse_service's type exactly


class ParsedService(NamedTuple):
    """A Service parsed as its file was read (`parse_early`), holding all that any consumer reads from it,
    so the raw object is not kept. Problems are reported where they would be: `problems` when the desired
    state is built, `range_problems` when netfilter rules are."""

    spec: ServiceSpec
    problems: tuple[Problem, ...]
    source_ranges: tuple | None  # parse_source_ranges of a LoadBalancer; None for any other type
    range_problems: tuple[Problem, ...] = ()


def parse_service_early(obj: dict) -> ParsedService:
    problems: list[Problem] = []
    spec = parse_service(obj, problems)
    range_problems: list[Problem] = []
    ranges = parse_source_ranges(obj, range_problems) if _is_load_balancer(obj) else None
    return ParsedService(spec, tuple(problems), ranges, tuple(range_problems))


def service_spec(obj, problems: list[Problem]) -> ServiceSpec:
    """parse_service, for a raw object or one parsed early."""
    if isinstance(obj, ParsedService):
        problems.extend(obj.problems)
        return obj.spec
    return parse_service(obj, problems)


def load_balancer_source_ranges(obj, problems: list[Problem]) -> tuple | None:
    """parse_source_ranges of a LoadBalancer Service (raw or parsed early); None for any other type."""
    if isinstance(obj, ParsedService):
        problems.extend(obj.range_problems)
        return obj.source_ranges
    return parse_source_ranges(obj, problems) if _is_load_balancer(obj) else None


# --- EndpointSlices -----------------------------------------------------------


class Endpoint(NamedTuple):
    """One endpoint address (a NamedTuple: a large cluster builds hundreds of thousands of these)."""

    ip: str
    node: str
    pod: str
    ready: bool
    serving: bool
    terminating: bool
    # Topology hints (hints.forZones[].name, hints.forNodes[].name); () when the endpoint has none.
    zones: tuple[str, ...] = ()
    nodes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SlicePort:
    name: str
    protocol: str  # TCP, UDP, SCTP as the API writes it
    port: int


@dataclass(frozen=True, slots=True)
class EndpointSliceSpec:
    namespace: str
    service: str
    family: int
    ports: tuple[SlicePort, ...]
    endpoints: tuple[Endpoint, ...]


FAMILY_OF_TYPE = {"IPv4": 4, "IPv6": 6}


def _endpoint(r: Reader, raw, path: str, family: int) -> Endpoint | None:
    # The hot loop of a large cluster (every endpoint of every slice): well-typed fields take the
    # direct path, and only a mismatch goes through the Reader.
    if not isinstance(raw, dict):
        r.problem(path, f"expected an endpoint, got {shown(raw)}")
        return None
    addresses = raw.get("addresses")
    if not isinstance(addresses, list):
        addresses = r.list(addresses, f"{path}.addresses")
    if not addresses:
        r.problem(f"{path}.addresses", "no address; skipped")
        return None
    ip = canonical_ip(addresses[0])
    if ip is None:
        r.ip(addresses[0], f"{path}.addresses[0]")
        return None
    if (6 if ":" in ip else 4) != family:
        r.problem(f"{path}.addresses[0]", f"{ip} is not an IPv{family} address (addressType); skipped")
        return None
    why = endpoint_reason(ip)
    if why:  # the API server refuses these (ValidateEndpointIP); a cluster file is not checked by it
        r.problem(f"{path}.addresses[0]", f"{ip} is {why}: never a real server; skipped", malformed=False)
        return None
    conditions = raw.get("conditions")
    if not isinstance(conditions, dict):
        conditions = r.map(conditions, f"{path}.conditions")
    flags = []
    for name in ("ready", "serving", "terminating"):
        value = conditions.get(name)
        flags.append(value if value is None or isinstance(value, bool) else r.bool(value, f"{path}.conditions.{name}"))
    ready, serving, terminating = flags
    # The API's rule: an unset `ready` means ready; an unset `serving` follows `ready`.
    ready = ready is not False
    node = raw.get("nodeName")
    if not isinstance(node, str):
        node = r.str(node, f"{path}.nodeName")
    node = sys.intern(node)  # a few node names shared by every endpoint
    target = raw.get("targetRef")
    if isinstance(target, dict):
        pod = target.get("name")
        if not isinstance(pod, str):
            pod = r.str(pod, f"{path}.targetRef.name")
    else:
        r.map(target, f"{path}.targetRef")
        pod = ""
    hints = raw.get("hints")
    zones, nodes = _hints(r, hints, f"{path}.hints") if hints is not None else ((), ())
    return Endpoint(ip, node, pod, ready, serving if serving is not None else ready, bool(terminating),
                    zones, nodes)


_AF = {4: socket.AF_INET, 6: socket.AF_INET6}


def _pton_takes_only_canonical_ipv4() -> bool:
    """Whether inet_pton(AF_INET) refuses every IPv4 spelling but the one inet_ntop writes (glibc and musl
    do: four decimal octets, no leading zero), so an address it takes needs no writing back."""
    for text in ("01.2.3.4", "1.2.3.00", "1.2.3", "0x1.2.3.4", " 1.2.3.4", "1.2.3.4 ", "1.2.3.256", "1.2.3.4.5"):
        try:
            socket.inet_pton(socket.AF_INET, text)
            return False
        except (OSError, ValueError):
            pass
    return True


_CANONICAL_FAMILIES = frozenset({4} if _pton_takes_only_canonical_ipv4() else ())
_new_endpoint = tuple.__new__  # Endpoint(...) without the Python-level __new__ a NamedTuple adds
_NO_CONDITIONS: dict = {}
_NO_HINTS = ((), ())


def _hint_names(entries) -> tuple[str, ...] | None:
    """The names of well-formed hint entries ([{"name": "zone-a"}]; absent is none), or None when any
    entry is not one (then `_hints` reports it)."""
    if entries is None:
        return ()
    if entries.__class__ is not list:
        return None
    if len(entries) == 1:  # the EndpointSlice controller's hints: one zone, or this node
        entry = entries[0]
        name = entry.get("name") if entry.__class__ is dict else None
        return (name,) if name.__class__ is str and name else None
    names = tuple([entry.get("name") if entry.__class__ is dict else None for entry in entries])
    for name in names:
        if name.__class__ is not str or not name:
            return None
    return names


def _hint_struct_names(entries) -> tuple[str, ...] | None:
    """`_hint_names` for hint entries decoded as structs (kipvs.sources.fast_json: each has `.name`)."""
    if entries is None:
        return ()
    if len(entries) == 1:
        name = entries[0].name
        return (name,) if name.__class__ is str and name else None
    names = tuple([entry.name for entry in entries])
    for name in names:
        if name.__class__ is not str or not name:
            return None
    return names


_INVALID = object()  # a condition that is not a map: the general reader reports it


def _endpoints(r: Reader, raws: list, family: int, structs: type | None = None) -> list[Endpoint]:
    """The hot loop of a large cluster (every endpoint of every slice). An endpoint whose fields are all
    well-typed and valid is built here, where it can have no problem, whichever optional fields it has
    (conditions, nodeName, targetRef and hints may each be absent, a non-canonical address is written
    canonically): real dumps hold every such shape, and one left to the general reader costs twice as
    much. Anything else goes to `_endpoint`, which reports what is wrong, so problems come out as they
    always did (a property test compares both on every shape).

    An endpoint is a map, or (JSON dumps decoded by kipvs.sources.fast_json) an instance of `structs`:
    the same fields as attributes, a condition, targetRef and hints entry decoded only as maps (with
    `.ready`, `.name`, ...), absent fields None, and `as_dict()` giving the map the general reader reads."""
    af, pton, ntop, intern, new = _AF[family], socket.inet_pton, socket.inet_ntop, sys.intern, _new_endpoint
    plain, metadata = PLAIN_FIRST_BYTE[family], METADATA_V6_PACKED  # a special address takes the general path
    canonical = family in _CANONICAL_FAMILIES  # an address inet_pton takes is written as inet_ntop would
    shared_hints: dict = {}  # the few distinct hints of a slice, one tuple each (memory)
    shared_zones: dict = {}
    endpoints = []
    for i, raw in enumerate(raws):
        kind = raw.__class__
        if kind is dict:
            get = raw.get
            addresses, conditions, node, target, hints = \
                get("addresses"), get("conditions"), get("nodeName"), get("targetRef"), get("hints")
            if conditions is None:
                ready = serving = terminating = None
            elif conditions.__class__ is dict:
                ready, serving, terminating = \
                    conditions.get("ready"), conditions.get("serving"), conditions.get("terminating")
            else:
                ready = serving = terminating = _INVALID
            if target is None:
                pod = ""
            elif target.__class__ is dict:
                pod = target.get("name")
                if pod is None:
                    pod = ""
            else:
                pod = None
            if hints is None:
                found = _NO_HINTS
            elif hints.__class__ is dict:
                zones, nodes = _hint_names(hints.get("forZones")), _hint_names(hints.get("forNodes"))
                found = None if zones is None or nodes is None else shared_hints.setdefault((zones, nodes),
                                                                                            (zones, nodes))
            else:
                found = None
        elif kind is structs:
            addresses, conditions, node, target, hints = \
                raw.addresses, raw.conditions, raw.nodeName, raw.targetRef, raw.hints
            if conditions is None:
                ready = serving = terminating = None
            else:
                ready, serving, terminating = conditions.ready, conditions.serving, conditions.terminating
            pod = "" if target is None or target.name is None else target.name
            if hints is None:
                found = _NO_HINTS
            else:
                zones, nodes = hints.forZones, hints.forNodes
                if nodes is None and zones is not None and len(zones) == 1 and \
                        (zone := zones[0].name).__class__ is str and zone:  # the controller's hint: one zone
                    found = shared_zones.get(zone)
                    if found is None:
                        found = shared_zones[zone] = ((zone,), ())
                else:
                    zones, nodes = _hint_struct_names(zones), _hint_struct_names(nodes)
                    found = None if zones is None or nodes is None else shared_hints.setdefault((zones, nodes),
                                                                                                (zones, nodes))
        else:
            addresses = None
        if addresses.__class__ is list and addresses and (node is None or node.__class__ is str) and \
                pod.__class__ is str and found is not None:
            ip = addresses[0]
            try:
                packed = pton(af, ip) if ip.__class__ is str else None
            except (OSError, ValueError):
                packed = None
            if packed is not None and plain[packed[0]] and packed != metadata and \
                    (ready is None or ready.__class__ is bool) and \
                    (serving is None or serving.__class__ is bool) and \
                    (terminating is None or terminating.__class__ is bool):
                if not canonical:
                    text = ntop(af, packed)
                    if text != ip:
                        ip = text
                ready = ready is not False
                endpoints.append(new(Endpoint, (ip, intern(node) if node else "", pod,
                                                ready, ready if serving is None else serving,
                                                terminating is True, found[0], found[1])))
                continue
        endpoint = _endpoint(r, raw.as_dict() if kind is structs else raw, f"endpoints[{i}]", family)
        if endpoint:
            endpoints.append(endpoint)
    return endpoints


def _hints(r: Reader, raw, path: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(zones, nodes) named by an endpoint's hints. A bad entry is reported and left out; an endpoint left
    without hints makes topology fall back to every endpoint (kube-proxy's rule)."""
    hints = r.map(raw, path)
    found = []
    for kind in ("forZones", "forNodes"):
        names = []
        for i, entry in enumerate(r.list(hints.get(kind), f"{path}.{kind}")):
            name = entry.get("name") if isinstance(entry, dict) else None
            if isinstance(name, str) and name:
                names.append(name)
            elif isinstance(entry, dict):
                r.problem(f"{path}.{kind}[{i}].name", f"expected a name, got {shown(name)}; hint ignored",
                          malformed=False)
            else:
                r.problem(f"{path}.{kind}[{i}]", f"expected a map, got {shown(entry)}; hint ignored",
                          malformed=False)
        found.append(tuple(names))
    return found[0], found[1]


def parse_endpoint_slice(obj: dict, problems: list[Problem], structs: type | None = None) -> EndpointSliceSpec | None:
    """None for a slice that belongs to no Service (no `kubernetes.io/service-name` label) or is FQDN.
    `structs`: the class of endpoints decoded as structs (see `_endpoints`)."""
    r, meta, namespace, _ = _identity("EndpointSlice", obj, problems)
    labels = r.map(meta.get("labels"), "metadata.labels")
    service = labels.get(SERVICE_NAME_LABEL)
    if service is None:
        return None
    if not isinstance(service, str):
        r.problem(f"metadata.labels[{SERVICE_NAME_LABEL}]", f"expected a string, got {shown(service)}")
        r.finish()
        return None
    address_type = obj.get("addressType")
    if address_type == "FQDN":
        return None
    family = FAMILY_OF_TYPE.get(address_type) if isinstance(address_type, str) else None
    if family is None:
        r.problem("addressType", f"{shown(address_type)} is not IPv4, IPv6 or FQDN; slice skipped")
        r.finish()
        return None
    ports = []
    for i, raw in enumerate(r.list(obj.get("ports"), "ports")):
        name, protocol, number = (raw.get("name"), raw.get("protocol"), raw.get("port")) if raw.__class__ is dict \
            else (None, None, None)
        if (name is None or name.__class__ is str) and (protocol is None or protocol.__class__ is str) and \
                number.__class__ is int and 0 < number < 65536:  # well-typed: no path strings, no reader calls
            ports.append(SlicePort(sys.intern(name or ""), "TCP" if protocol is None else sys.intern(protocol), number))
            continue
        if not isinstance(raw, dict):
            r.problem(f"ports[{i}]", f"expected a port, got {shown(raw)}")
            continue
        number = r.port(raw.get("port"), f"ports[{i}].port")
        if number is not None:
            ports.append(SlicePort(sys.intern(r.str(raw.get("name"), f"ports[{i}].name")),
                                   sys.intern(r.str(raw.get("protocol"), f"ports[{i}].protocol", "TCP")), number))
    endpoints = _endpoints(r, r.list(obj.get("endpoints"), "endpoints"), family, structs)
    r.finish()
    return EndpointSliceSpec(namespace, service, family, tuple(ports), tuple(endpoints))


class ParsedEndpointSlice(NamedTuple):
    """An EndpointSlice parsed while its file was decoded (see `parse_early`): `spec` is None
    for a slice kipvs skips; `problems` are reported when the desired state is built, as they would be."""

    spec: EndpointSliceSpec | None
    problems: tuple[Problem, ...]
    key: tuple[str, str] = ("", "")  # the slice's (namespace, name) as the reflector keys it


def parse_endpoint_slice_early(obj: dict, structs: type | None = None) -> ParsedEndpointSlice:
    problems: list[Problem] = []
    spec = parse_endpoint_slice(obj, problems, structs)
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    namespace = meta.get("namespace") or ""
    return ParsedEndpointSlice(spec, tuple(problems), (sys.intern(namespace) if isinstance(namespace, str) else namespace,
                                                       meta.get("name") or ""))


def parse_early(obj):
    """One item of a JSON dump, parsed as soon as it is decoded (kipvs.sources.file): a Service or an
    EndpointSlice becomes its compact parsed form, so a dump's raw objects (500,000 endpoint dicts at
    scale) are never all in memory at once. Anything else is returned as it is."""
    kind = obj.get("kind") if isinstance(obj, dict) else None
    if kind == "Service":
        return parse_service_early(obj)
    if kind == "EndpointSlice":
        return parse_endpoint_slice_early(obj)
    return obj


def endpoint_slice_spec(obj, problems: list[Problem]) -> EndpointSliceSpec | None:
    """parse_endpoint_slice, for a raw object or one parsed early."""
    if isinstance(obj, ParsedEndpointSlice):
        problems.extend(obj.problems)
        return obj.spec
    return parse_endpoint_slice(obj, problems)


class EndpointIndex:
    """The endpoints of each Service, from its slices, by (namespace, service)."""

    def __init__(self, slices: list[EndpointSliceSpec]):
        self.by_service: dict[tuple[str, str], list[EndpointSliceSpec]] = defaultdict(list)
        for item in slices:
            self.by_service[(item.namespace, item.service)].append(item)

    def endpoints(self, namespace: str, name: str, port_name: str, protocol: str,
                  family: int | None = None) -> list[tuple[Endpoint, int]]:
        """(endpoint, target port) for one Service port, matched by name and protocol (and address family:
        a slice's endpoints are all of its family); duplicates merged, a ready copy winning over a not-ready one."""
        protocol = protocol.upper()
        matching = []
        for item in self.by_service.get((namespace, name), ()):
            number = next((p.port for p in item.ports if p.name == port_name and p.protocol == protocol), None)
            if number is not None and (family is None or item.family == family):
                matching.append((item, number))
        if len(matching) == 1:  # the common case: one slice, its addresses usually all different
            item, number = matching[0]
            if len({e.ip for e in item.endpoints}) == len(item.endpoints):
                return [(e, number) for e in item.endpoints]
        found: dict[tuple[str, int], tuple[Endpoint, int]] = {}
        for item, number in matching:
            for endpoint in item.endpoints:
                previous = found.get((endpoint.ip, number))
                if previous is None or (endpoint.ready and not previous[0].ready):
                    found[(endpoint.ip, number)] = (endpoint, number)
        return list(found.values())


# --- Nodes --------------------------------------------------------------------


def find_node(nodes, node_name: str):
    """This node's Node object, or None."""
    for item in nodes:
        meta = item.get("metadata") if isinstance(item, dict) else None
        if isinstance(meta, dict) and meta.get("name") == node_name:
            return item
    return None


def node_zone_of(node: dict | None, problems: list[Problem]) -> str:
    """This node's topology.kubernetes.io/zone label ("" when it has none or it is not a string)."""
    if node is None:
        return ""
    r, meta, _, _ = _identity("Node", node, [])  # its identity's problems are node_ips_of's to report
    r.problems = problems
    labels = r.map(meta.get("labels"), "metadata.labels")
    zone = r.str(labels.get(ZONE_LABEL), f"metadata.labels[{ZONE_LABEL}]")
    r.finish()
    return zone


def node_ips_of(node: dict | None, problems: list[Problem]) -> dict[int, str]:
    """InternalIP addresses of a Node object, one per family (the first of each)."""
    if node is None:
        return {}
    r, _, _, _ = _identity("Node", node, problems)
    found: dict[int, str] = {}
    status = r.map(node.get("status"), "status")
    for i, raw in enumerate(r.list(status.get("addresses"), "status.addresses")):
        if not isinstance(raw, dict):
            r.problem(f"status.addresses[{i}]", f"expected a map, got {shown(raw)}")
            continue
        if raw.get("type") != "InternalIP":
            continue
        ip = r.ip(raw.get("address"), f"status.addresses[{i}].address")
        why = special_reason(ip) if ip else None
        if why:  # it would become NodePort addresses, route sources and SNAT targets (CVE-2020-8558's class)
            r.problem(f"status.addresses[{i}].address", f"{ip} is {why}: not a node IP; skipped", malformed=False)
        elif ip:
            found.setdefault(6 if ":" in ip else 4, ip)
    r.finish()
    return found


def node_pod_cidrs(node: dict | None, problems: list[Problem]) -> tuple:
    """A Node's spec.podCIDRs (else spec.podCIDR) as networks; a bad entry is a problem and left out."""
    if node is None:
        return ()
    r, _, _, _ = _identity("Node", node, problems)
    spec = r.map(node.get("spec"), "spec")
    raw = r.list(spec.get("podCIDRs"), "spec.podCIDRs")
    paths = [f"spec.podCIDRs[{i}]" for i in range(len(raw))]
    if not raw and spec.get("podCIDR") is not None:
        raw, paths = [spec.get("podCIDR")], ["spec.podCIDR"]
    found = []
    for value, path in zip(raw, paths):
        try:
            found.append(parse_network(value))
        except ValueError as exc:
            r.problem(path, f"{shown(value)} is not a CIDR{refusal(exc)}; skipped")
    r.finish()
    return tuple(dict.fromkeys(found))
