"""Desired netfilter rules, per family, from the desired IPVS state and the cluster (pure, no I/O).

Every rule is written in the exact form `iptables-save` prints it back (measured in the lab),
so a converged node compares equal and writes nothing.

nat POSTROUTING -> KIPVS-POSTROUTING, only for IPVS-NAT traffic (`-m ipvs --vdir ORIGINAL --vmethod MASQ`):
  1. hairpin: a local endpoint reaching itself through a service is MASQUERADEd (else it answers itself);
  2. virtual servers of externalTrafficPolicy Local Services: RETURN (the pod sees the client);
  3. traffic from (and, with pod CIDRs, to) this node's pods or --cluster-cidr: RETURN;
  4. everything else: SNAT to the node IP of the family (kube-router's ensureMasqueradeIptablesRule).
filter INPUT -> KIPVS-INPUT, per service address: the Services' own ports RETURN (loadBalancer IPs
with source ranges only for those sources, the node itself and its pods), ICMP RETURN, new connections
to any other port REJECT (kube-router's setupIpvsFirewall, kube-proxy's KUBE-IPVS-FILTER).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from kipvs.addresses import address_token, network_token
from kipvs.cluster import Problem, find_node, load_balancer_source_ranges, node_pod_cidrs, service_key, service_spec
from kipvs.config import NetfilterOptions
from kipvs.desired import LOCAL_ANNOTATION, Desired
from kipvs.gc_pause import gc_paused
from kipvs.model import known_family
from kipvs.sources import Snapshot

PREFIX = "KIPVS-"
NAT_CHAIN = "KIPVS-POSTROUTING"
FILTER_CHAIN = "KIPVS-INPUT"
NAT_JUMP = ('-m comment --comment "kipvs: masquerade and hairpin" -m ipvs --vdir ORIGINAL --vmethod MASQ '
            f'-j {NAT_CHAIN}')
FILTER_JUMP = f'-m comment --comment "kipvs: service address firewall" -j {FILTER_CHAIN}'
ICMP = {4: "icmp", 6: "ipv6-icmp"}
PROTOCOL_TOKEN = {"tcp": "tcp", "udp": "udp", "sctp": "sctp"}  # a closed set: anything else is a KeyError
REJECT = {4: "icmp-port-unreachable", 6: "icmp6-port-unreachable"}


@dataclass(frozen=True)
class Jump:
    table: str
    chain: str   # a built-in chain
    rule: str    # inserted first in it


@dataclass(frozen=True)
class Ruleset:
    """One family's kipvs rules: its chains' contents and the jumps into them."""

    chains: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)  # (table, chain) -> rules
    jumps: tuple[Jump, ...] = ()


@dataclass(frozen=True)
class ServiceNetfilter:
    """What netfilter does for one Service, for `show`."""

    masquerade: str
    hairpin: str
    firewall: str
    source_ranges: tuple[str, ...] = ()


@dataclass(frozen=True)
class DesiredNetfilter:
    rulesets: dict[int, Ruleset]
    services: dict[tuple[str, str], ServiceNetfilter]
    problems: tuple[Problem, ...] = ()


# Every address and network below is written by address_token / network_token (kipvs.addresses): a
# token from a typed value, never the text it was read from.
def _host(ip: str) -> str:
    return f"{address_token(ip)}/{32 if known_family(ip) == 4 else 128}"


def _port_match(protocol: str, port: int) -> str:
    protocol = PROTOCOL_TOKEN[protocol]
    return f"-p {protocol} -m {protocol} --dport {port:d}"


def _of(networks, family: int) -> list[str]:
    return [network_token(n) for n in networks if n.version == family]


class _Builder:
    def __init__(self, desired: Desired, snapshot: Snapshot, node_name: str, options: NetfilterOptions):
        self.desired = desired
        self.node_name = node_name
        self.options = options
        self.problems: list[Problem] = []
        self.pod_cidrs = node_pod_cidrs(find_node(snapshot.nodes, node_name), self.problems)
        # Only what netfilter asks about is parsed (50,000 Services were parsed a second time per sync):
        # a Service's policy when one of its virtual servers is asked about, source ranges of LoadBalancers.
        self.objects: dict[tuple[str, str], object] = {}  # the last object of a name wins, as in parsing
        self.specs: dict = {}
        self.ranges = {}
        for obj in snapshot.services:
            key = service_key(obj)
            self.objects[key] = obj
            ranges = load_balancer_source_ranges(obj, self.problems)
            if ranges is not None:
                self.ranges[key] = ranges

    def local_policy(self, key: tuple[str, str]) -> bool:
        if key not in self.specs:
            obj = self.objects.get(key)
            self.specs[key] = service_spec(obj, []) if obj is not None else None  # problems: IPVS side's
        spec = self.specs[key]
        return spec is not None and (spec.external_local or
                                     spec.annotations.get(LOCAL_ANNOTATION, "").lower() == "true")

    def unmasqueraded(self, family: int) -> tuple[list[str], bool]:
        """(CIDRs whose traffic is not SNATed, whether destinations count too)."""
        if self.options.cluster_cidrs:
            return _of(self.options.cluster_cidrs, family), False
        return _of(self.pod_cidrs, family), True

    def nat(self, family: int) -> tuple[str, ...]:
        servers = [vs for vs in self.desired.virtual_servers if vs.protocol != "fwmark" and known_family(vs.ip) == family]
        if not servers:
            return ()
        # This node's endpoints (few): real servers are looked at only when there are any.
        local = self.desired.local_backends
        local_endpoints = sorted({rs.ip for vs in servers for rs in vs.real_servers if rs.key in local}) \
            if local else []
        rules = [f"-s {_host(ip)} -d {_host(ip)} -j MASQUERADE" for ip in local_endpoints]
        kept = dict.fromkeys((vs.ip, vs.port) for vs in servers
                             if (origin := self.desired.origins.get(vs.key)) and origin.kind != "ClusterIP"
                             and self.local_policy((origin.namespace, origin.name)))
        rules += [f"-m ipvs --vaddr {address_token(ip)} --vport {port:d} -j RETURN" for ip, port in kept]
        if not self.options.masquerade_all:
            cidrs, destinations = self.unmasqueraded(family)
            rules += [f"-s {cidr} -j RETURN" for cidr in cidrs]
            if destinations:
                rules += [f"-d {cidr} -j RETURN" for cidr in cidrs]
        node_ip = self.desired.node_ips.get(family)
        rules.append(f"-j SNAT --to-source {address_token(node_ip)}" if node_ip else "-j MASQUERADE")
        return tuple(rules)

    def source_range_block(self, family: int, ip: str, protocol: str, port: int, ranges) -> list[str]:
        match = f"-d {_host(ip)} {_port_match(protocol, port)}"
        allowed = _of(ranges, family) + self.unmasqueraded(family)[0]
        rules = [f"-s {cidr} {match} -j RETURN" for cidr in dict.fromkeys(allowed)]
        return rules + [f"{match} -m addrtype --src-type LOCAL -j RETURN", f"{match} -j DROP"]

    def filter(self, family: int) -> tuple[str, ...]:
        by_address: dict[str, list] = {}
        for vs in self.desired.virtual_servers:
            if vs.protocol != "fwmark" and known_family(vs.ip) == family:
                by_address.setdefault(vs.ip, []).append(vs)
        rules: list[str] = []
        for ip in self.desired.addresses:
            if known_family(ip) != family:
                continue
            for vs in by_address.get(ip, ()):
                origin = self.desired.origins.get(vs.key)
                ranges = self.ranges.get((origin.namespace, origin.name)) if origin and \
                    origin.kind == "LoadBalancer" else None
                if ranges:
                    rules += self.source_range_block(family, ip, vs.protocol, vs.port, ranges)
                elif self.options.firewall:
                    rules.append(f"-d {_host(ip)} {_port_match(vs.protocol, vs.port)} -j RETURN")
            if self.options.firewall:
                rules += [f"-d {_host(ip)} -p {ICMP[family]} -j RETURN",
                          f"-d {_host(ip)} -m conntrack --ctstate NEW -j REJECT --reject-with {REJECT[family]}"]
        return tuple(rules)

    def ruleset(self, family: int) -> Ruleset:
        chains, jumps = {}, []
        nat = self.nat(family)
        if nat:
            chains[("nat", NAT_CHAIN)] = nat
            jumps.append(Jump("nat", "POSTROUTING", NAT_JUMP))
        filtered = self.filter(family)
        if filtered:
            chains[("filter", FILTER_CHAIN)] = filtered
            jumps.append(Jump("filter", "INPUT", FILTER_JUMP))
        return Ruleset(chains, tuple(jumps))

    def service_states(self) -> dict[tuple[str, str], ServiceNetfilter]:
        states = {}
        for origin in self.desired.origins.values():
            key = (origin.namespace, origin.name)
            if key in states:
                continue
            base = "SNAT to node IP: everything" if self.options.masquerade_all else \
                "SNAT to node IP unless from --cluster-cidr" if self.options.cluster_cidrs else \
                "SNAT to node IP unless from/to this node's pods" if self.pod_cidrs else \
                "SNAT to node IP: everything (no pod CIDR known)"
            ranges = self.ranges.get(key, ())
            states[key] = ServiceNetfilter(
                masquerade=f"{base}; external traffic keeps the client IP (Local)" if self.local_policy(key) else base,
                hairpin="on", firewall="on" if self.options.firewall else "off (--ipvs-permit-all)",
                source_ranges=tuple(network_token(n) for n in ranges))
        return states


def build_netfilter(desired: Desired, snapshot: Snapshot, node_name: str,
                    options: NetfilterOptions, per_service: bool = True) -> DesiredNetfilter:
    """`per_service`: also what each Service gets (for `show`; a sync does not need it)."""
    with gc_paused():  # acyclic bulk data, like the desired state (kipvs.gc_pause)
        builder = _Builder(desired, snapshot, node_name, options)
        rulesets = {family: builder.ruleset(family) for family in (4, 6)}
        return DesiredNetfilter(rulesets, builder.service_states() if per_service else {}, tuple(builder.problems))
