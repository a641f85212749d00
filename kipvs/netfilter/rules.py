"""Desired netfilter rules and sets, per family, from the desired IPVS state and the cluster (pure, no I/O).

Every rule and set member is written in the exact form `iptables-save` / `ipset save` print it back
(measured in the lab), so a converged node compares equal and writes nothing. The rules are a fixed
handful whatever the number of Services; the per-Service data lives in sets (kipvs.netfilter.sets):
kube-proxy IPVS mode's shape (KUBE-IPVS-FILTER, KUBE-CLUSTER-IP, KUBE-LOOP-BACK, KUBE-MARK-MASQ).

nat PREROUTING -> KIPVS-SERVICES (first packet of a connection only): mark for SNAT what kube-proxy
  masquerades: NodePort, external and LB virtual servers of Cluster-policy Services (from anywhere,
  pods of other nodes too), and ClusterIP virtual servers unless the traffic is local (the detector of
  --detect-local-mode; none -> ClusterIP traffic is not SNATed, with a warning). Local-policy external
  traffic keeps the client's IP.
nat POSTROUTING -> KIPVS-POSTROUTING, only for IPVS-NAT traffic (`-m ipvs --vdir ORIGINAL --vmethod MASQ`):
  hairpin (a local endpoint reaching itself through a service) is MASQUERADEd; marked traffic is SNATed
  to the node IP of its family (--random-fully when the kernel has it); the rest is left alone.
filter INPUT -> KIPVS-INPUT, only for destinations in the service-address set (the node's own IP never
  enters): a loadBalancerSourceRanges port passes only from its ranges (the node and its pods too are
  bound, as kube-proxy since kubernetes #119791) and is dropped otherwise; with the firewall, Service
  ports and ICMP RETURN, new connections to any other port are REJECTed.
mangle OUTPUT -> KIPVS-OUTPUT, only for source-ranged address+ports: the same source-range check for the
  node's own connections, which IPVS takes before they could reach INPUT.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from kipvs.addresses import address_token, network_token
from kipvs.cluster import Problem, find_node, load_balancer_source_ranges, node_pod_cidrs, service_key, service_spec
from kipvs.config import NetfilterOptions
from kipvs.desired import LOCAL_ANNOTATION, Desired
from kipvs.gc_pause import gc_paused
from kipvs.model import known_family
from kipvs.netfilter import sets
from kipvs.netfilter.sets import PREFIX, SetContents, set_name
from kipvs.sources import Snapshot

__all__ = ["PREFIX"]

NAT_CHAIN = "KIPVS-POSTROUTING"
MARK_CHAIN = "KIPVS-SERVICES"
FILTER_CHAIN = "KIPVS-INPUT"
OUTPUT_CHAIN = "KIPVS-OUTPUT"
NAT_JUMP = ('-m comment --comment "kipvs: masquerade and hairpin" -m ipvs --vdir ORIGINAL --vmethod MASQ '
            f'-j {NAT_CHAIN}')
MARK_JUMP = f'-m comment --comment "kipvs: service traffic to SNAT" -j {MARK_CHAIN}'
ICMP = {4: "icmp", 6: "ipv6-icmp"}
REJECT = {4: "icmp-port-unreachable", 6: "icmp6-port-unreachable"}
# The packet-mark bit meaning "SNAT this": kube-proxy's default masquerade bit (--iptables-masquerade-bit 14).
MASQ_MARK = 0x4000
LOCAL_MODES = ("auto", "ClusterCIDR", "NodeCIDR", "BridgeInterface", "InterfaceNamePrefix")


def filter_jump(family: int) -> str:
    return (f'-m comment --comment "kipvs: service address firewall" '
            f'-m set --match-set {set_name(sets.SERVICE_IPS, family)} dst -j {FILTER_CHAIN}')


def output_jump(family: int) -> str:
    return (f'-m comment --comment "kipvs: source ranges for the node itself" '
            f'-m set --match-set {set_name(sets.RANGED_PORTS, family)} dst,dst -j {OUTPUT_CHAIN}')


def _match(base: str, family: int, directions: str) -> str:
    return f"-m set --match-set {set_name(base, family)} {directions}"


@dataclass(frozen=True)
class Jump:
    table: str
    chain: str   # a built-in chain
    rule: str    # inserted first in it


@dataclass(frozen=True)
class Ruleset:
    """One family's kipvs rules: its chains' contents and the jumps into them, and the sets they use."""

    chains: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)  # (table, chain) -> rules
    jumps: tuple[Jump, ...] = ()
    sets: SetContents | None = None


@dataclass(frozen=True)
class ServiceNetfilter:
    """What netfilter does for one Service, for `show` and `doctor`."""

    masquerade: str        # the node-wide SNAT rule, the same text for every Service (show prints it once)
    client_ip_kept: bool   # externalTrafficPolicy Local: NodePort/external/LB traffic is not SNATed
    hairpin: str
    firewall: str
    source_ranges: tuple[str, ...] = ()


@dataclass(frozen=True)
class DesiredNetfilter:
    rulesets: dict[int, Ruleset]
    services: dict[tuple[str, str], ServiceNetfilter]
    problems: tuple[Problem, ...] = ()
    warnings: tuple[str, ...] = ()


def _of(networks, family: int) -> list:
    return [n for n in networks if n.version == family]


class _Builder:
    def __init__(self, desired: Desired, snapshot: Snapshot, node_name: str, options: NetfilterOptions,
                 random_fully: bool):
        self.desired = desired
        self.node_name = node_name
        self.options = options
        self.random = " --random-fully" if random_fully else ""
        self.problems: list[Problem] = []
        self.ips: dict[str, object] = {}  # each address parsed once (a node IP serves every NodePort)
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

    def local_mode(self) -> str:
        mode = self.options.detect_local_mode
        if mode == "auto":
            return "ClusterCIDR" if self.options.cluster_cidrs else "NodeCIDR"
        return mode

    def local_traffic(self, family: int) -> list[str] | None:
        """Matches for traffic from this node's pods (kube-proxy's local-traffic detector), each its own
        RETURN rule; None when the detector has nothing to go on."""
        mode = self.local_mode()
        if mode == "ClusterCIDR":
            return [f"-s {network_token(n)}" for n in _of(self.options.cluster_cidrs, family)] or None
        if mode == "NodeCIDR":
            return [f"-s {network_token(n)}" for n in _of(self.pod_cidrs, family)] or None
        if mode == "BridgeInterface":
            return [f"-i {self.options.pod_bridge_interface}"] if self.options.pod_bridge_interface else None
        prefix = self.options.pod_interface_name_prefix
        return [f"-i {prefix}+"] if prefix else None

    def warnings(self) -> list[str]:
        families = [f for f in (4, 6) if self.servers(f)]
        if self.options.masquerade_all or not families:
            return []
        missing = [f for f in families if self.local_traffic(f) is None]
        if not missing:
            return []
        mode = self.local_mode()
        need = {"ClusterCIDR": "no --cluster-cidr", "NodeCIDR": "the Node has no spec.podCIDRs",
                "BridgeInterface": "no --pod-bridge-interface",
                "InterfaceNamePrefix": "no --pod-interface-name-prefix"}[mode]
        return [f"--detect-local-mode {mode}: {need} for IPv{'/IPv'.join(map(str, missing))}: pod traffic to "
                "ClusterIPs cannot be told from other traffic and none of it is SNATed (set --cluster-cidr, "
                "--detect-local-mode, or --masquerade-all)"]

    def ip(self, text: str):
        found = self.ips.get(text)
        if found is None:
            found = self.ips[text] = ipaddress.ip_address(text)
        return found

    def servers(self, family: int) -> list:
        return [vs for vs in self.desired.virtual_servers if vs.protocol != "fwmark" and known_family(vs.ip) == family]

    def set_members(self, family: int, servers: list) -> SetContents:
        addresses = {self.ip(a) for a in self.desired.addresses if known_family(a) == family}
        found: dict[str, set[str]] = {base: set() for base in sets.KINDS}
        found[sets.SERVICE_IPS] = {sets.address(a) for a in addresses}
        local = self.desired.local_backends
        for vs in servers:
            ip = self.ip(vs.ip)
            member = sets.ip_port(ip, vs.protocol, vs.port)
            origin = self.desired.origins.get(vs.key)
            if origin is None or origin.kind == "ClusterIP":
                found[sets.CLUSTER_IPS].add(member)
            elif not self.local_policy((origin.namespace, origin.name)):
                found[sets.EXTERNAL].add(member)
            ranges = self.ranges.get((origin.namespace, origin.name)) if origin and \
                origin.kind == "LoadBalancer" else None
            if ip not in addresses:
                pass  # NodePorts on node addresses: the filter jump never sees them
            elif ranges:
                found[sets.RANGED_PORTS].add(member)
                found[sets.RANGED_SOURCES].update(f"{member},{net}" for r in _of(ranges, family)
                                                  for net in sets.network(r))
            else:
                found[sets.SERVICE_PORTS].add(member)
            if local:
                for rs in vs.real_servers:
                    if rs.key in local:
                        endpoint = sets.address(self.ip(rs.ip))
                        found[sets.HAIRPIN].add(f"{endpoint},{sets.port(vs.protocol, rs.port)},{endpoint}")
        return SetContents(family, {base: frozenset(members) for base, members in found.items()})

    def mark_rules(self, family: int) -> tuple[str, ...]:
        mark = f"-j MARK --set-xmark {MASQ_MARK:#x}/{MASQ_MARK:#x}"
        rules = [f"{_match(sets.EXTERNAL, family, 'dst,dst')} {mark}"]
        if self.options.masquerade_all:
            return (*rules, f"{_match(sets.CLUSTER_IPS, family, 'dst,dst')} {mark}")
        local = self.local_traffic(family)
        if local is None:
            return tuple(rules)  # no detector: ClusterIP traffic is not SNATed (warned)
        return (*rules, *[f"{m} -j RETURN" for m in local], f"{_match(sets.CLUSTER_IPS, family, 'dst,dst')} {mark}")

    def nat_rules(self, family: int) -> tuple[str, ...]:
        node_ip = self.desired.node_ips.get(family)
        return (f"{_match(sets.HAIRPIN, family, 'dst,dst,src')} -j MASQUERADE{self.random}",
                f"-m mark ! --mark {MASQ_MARK:#x}/{MASQ_MARK:#x} -j RETURN",
                f"-j MARK --set-xmark 0x0/{MASQ_MARK:#x}",  # the mark means nothing past this point
                f"-j SNAT --to-source {address_token(node_ip)}{self.random}" if node_ip else
                f"-j MASQUERADE{self.random}")

    def source_range_rules(self, family: int) -> list[str]:
        return [f"{_match(sets.RANGED_SOURCES, family, 'dst,dst,src')} -j RETURN",
                f"{_match(sets.RANGED_PORTS, family, 'dst,dst')} -j DROP"]

    def filter_rules(self, family: int) -> tuple[str, ...]:
        rules = self.source_range_rules(family)
        if self.options.firewall:
            rules += [f"{_match(sets.SERVICE_PORTS, family, 'dst,dst')} -j RETURN",
                      f"-p {ICMP[family]} -j RETURN",
                      f"-m conntrack --ctstate NEW -j REJECT --reject-with {REJECT[family]}"]
        return tuple(rules)

    def ruleset(self, family: int) -> Ruleset:
        servers = self.servers(family)
        if not servers:
            return Ruleset()
        # The node's own connections to a service address: IPVS takes them at LOCAL_OUT (priority -99),
        # before filter OUTPUT and without passing INPUT; mangle OUTPUT (-150) still sees the address.
        chains = {("nat", MARK_CHAIN): self.mark_rules(family), ("nat", NAT_CHAIN): self.nat_rules(family),
                  ("filter", FILTER_CHAIN): self.filter_rules(family),
                  ("mangle", OUTPUT_CHAIN): tuple(self.source_range_rules(family))}
        jumps = (Jump("nat", "PREROUTING", MARK_JUMP), Jump("nat", "POSTROUTING", NAT_JUMP),
                 Jump("filter", "INPUT", filter_jump(family)), Jump("mangle", "OUTPUT", output_jump(family)))
        return Ruleset(chains, jumps, self.set_members(family, servers))

    def service_states(self) -> dict[tuple[str, str], ServiceNetfilter]:
        states = {}
        cluster_ip = "ClusterIP SNAT always (--masquerade-all)" if self.options.masquerade_all else \
            f"ClusterIP SNAT unless from pods ({self.local_mode()})" if any(self.local_traffic(f) for f in (4, 6)) \
            else "ClusterIP no SNAT (no local-traffic detector)"
        node_wide = f"{cluster_ip}, NodePort/external/LB SNAT unless externalTrafficPolicy Local"
        for origin in self.desired.origins.values():
            key = (origin.namespace, origin.name)
            if key in states:
                continue
            ranges = self.ranges.get(key, ())
            states[key] = ServiceNetfilter(
                masquerade=node_wide, client_ip_kept=self.local_policy(key),
                hairpin="on", firewall="on" if self.options.firewall else "off (--ipvs-permit-all)",
                source_ranges=tuple(network_token(n) for n in ranges))
        return states


def build_netfilter(desired: Desired, snapshot: Snapshot, node_name: str, options: NetfilterOptions,
                    per_service: bool = True, random_fully: bool = True) -> DesiredNetfilter:
    """`per_service`: also what each Service gets (for `show`; a sync does not need it)."""
    with gc_paused():  # acyclic bulk data, like the desired state (kipvs.gc_pause)
        builder = _Builder(desired, snapshot, node_name, options, random_fully)
        rulesets = {family: builder.ruleset(family) for family in (4, 6)}
        return DesiredNetfilter(rulesets, builder.service_states() if per_service else {},
                                tuple(builder.problems), tuple(builder.warnings()))
