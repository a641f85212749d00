"""The route repair (kube-router #376, #1698), as a pure function of kernel facts.

A service address bound to the dummy interface gets a kernel route in table
`local` whose preferred source is the address itself. The host then talks to
the service with the VIP as source, and a backend on another node, which holds
the same VIP, drops the packets as martians. The fix is a local route whose
`src` is the node IP.

Only the interface's own routes are looked at and changed (a VIP that is also on
`lo` or eth0 keeps those routes), and a wrong route is removed only once the
repaired one is in: each check splits into `add` lines, which never remove
anything, and `remove` lines, given only when the repaired route is already
there. What the kernel does with each:
- IPv4: `route append` puts our route beside the kernel's (same metric 0);
  `replace` would take over the first route of that address, whatever its
  device (lo's, when the VIP is also on lo). The kernel's is then deleted by
  its `src`, which IPv4 matches exactly.
- IPv6: `replace` adds our route at metric 1024 beside the kernel's (metric 0,
  no src), which still wins, so that one is deleted. IPv6 matches a delete by
  device and metric but not by src, and `metric 0` there means any metric: the
  kernel's route sorts first, so it is the one deleted while it exists.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace

from kipvs.addresses import special_reason
from kipvs.errors import ConfigError
from kipvs.model import InterfaceAddress, LocalRoute, NetFacts, canonical_ip, family_of, known_family

# The metric our IPv6 route lands on (`replace` without a metric): a wrong route there is replaced in place.
IPV6_METRIC = 1024
# IPv6 addresses that never become the node IP: they change or vanish on their own.
UNSTABLE_IPV6 = frozenset({"temporary", "deprecated", "tentative", "dadfailed"})


# While an IPv4 route was wrong, ARP requests went out with the VIP as their sender (arp_announce 0
# takes the packet's source), and the backend's node, which holds the same VIP, never answers those.
# A neighbour entry still INCOMPLETE from them queues the first packets sent after the repair behind
# probes that cannot be answered, and drops them when it fails: the first connection after the repair
# failed every time it came in that window (lab: 3 of 3, "curl: (7)"). Flushing the unresolved entries
# makes the next packet resolve afresh, with the node IP as sender; resolved entries stay. IPv6 is not
# affected: neighbour solicitations take a source only from the outgoing interface, never the dummy's.
FLUSH_UNRESOLVED_NEIGHBOURS = "neigh flush nud incomplete"


@dataclass(frozen=True)
class RouteCheck:
    vip: str
    family: int
    node_ip: str | None
    add: tuple[str, ...] = ()     # `ip -batch` lines that put the repaired route in; they remove nothing
    remove: tuple[str, ...] = ()  # lines deleting the interface's wrong routes; only when the repaired one is in
    stuck: bool = False           # a wrong route no delete can name precisely is left: not correct

    @property
    def lines(self) -> tuple[str, ...]:
        return self.add + self.remove

    @property
    def correct(self) -> bool:
        return self.node_ip is not None and not self.lines and not self.stuck


def add_line(vip: str, interface: str, node_ip: str) -> str:
    return _route_line("append" if known_family(vip) == 4 else "replace", vip, interface, node_ip)


def fresh_route_line(vip: str, interface: str, node_ip: str) -> str:
    """For an IPv4 address added by the same batch when no device had a local route for it: the one
    route `replace` can take over is the kernel's brand-new one (src VIP), so the repair is one step,
    where append + delete needed a read-back and a second batch (~1.5 s of a 1,000-Service sync in the lab)."""
    return _route_line("replace", vip, interface, node_ip)


def _route_line(verb: str, vip: str, interface: str, node_ip: str) -> str:
    return f"route {verb} local {vip} dev {interface} proto kernel scope host src {node_ip} table local"


def delete_line(route: LocalRoute) -> str:
    """A delete that names the device (and, for IPv4, the source) of exactly this route."""
    parts = [f"route del local {route.dst} dev {route.dev} table local"]
    if route.protocol:
        parts.append(f"proto {route.protocol}")
    if route.family == 4 and route.prefsrc:
        parts.append(f"src {route.prefsrc}")
    parts.append(f"metric {route.metric}")
    return " ".join(parts)


def check_route(vip: str, interface: str, node_ip: str | None, routes: list[LocalRoute]) -> RouteCheck:
    """`routes`: the `local` routes of table local for `vip`, of any device (only `interface`'s count)."""
    family = known_family(vip)
    if node_ip is None:
        return RouteCheck(vip, family, None)
    if vip == node_ip:  # the node's own address: the source is the node IP whatever the route says
        return RouteCheck(vip, family, node_ip)
    mine = [r for r in routes if r.dev == interface]
    good = [r for r in mine if r.prefsrc == node_ip]
    wrong = [r for r in mine if r.prefsrc != node_ip]
    if not good:
        # The add goes first; the wrong routes go on a later run of this check, once it is read back.
        return RouteCheck(vip, family, node_ip, add=(add_line(vip, interface, node_ip),))
    # An IPv4 route without src cannot be deleted precisely (the delete could hit ours): leave it.
    removable = [r for r in wrong if family == 6 or r.prefsrc]
    return RouteCheck(vip, family, node_ip, remove=tuple(delete_line(r) for r in removable),
                      stuck=len(removable) < len(wrong))


def local_routes_by_dst(facts: NetFacts) -> dict[str, list[LocalRoute]]:
    by_dst: dict[str, list[LocalRoute]] = {}
    for route in facts.local_routes:
        if route.type == "local":
            by_dst.setdefault(route.dst, []).append(route)
    return by_dst


def check_routes(vips: list[str], interface: str, node_ips: dict[int, str], facts: NetFacts) -> list[RouteCheck]:
    by_dst = local_routes_by_dst(facts)
    return [check_route(vip, interface, node_ips.get(known_family(vip)), by_dst.get(vip, [])) for vip in vips]


def orphan_routes(facts: NetFacts, interface: str) -> list[LocalRoute]:
    """Repaired routes (src set, not the destination itself) left on `interface` for an address it no longer
    holds: the node would go on answering on a withdrawn service address."""
    held = {a.ip for a in facts.addresses_on(interface)}
    # Host routes only: a `local 10.96.0.0/12` (AnyIP) route is someone's design, not a leftover.
    return [r for r in facts.local_routes if r.type == "local" and r.dev == interface and "/" not in r.dst
            and r.dst not in held and r.prefsrc and r.prefsrc != r.dst]


def other_devices(facts: NetFacts, vip: str, interface: str) -> list[str]:
    """Devices besides `interface` with a local route for `vip` (e.g. lo): those are never touched."""
    return sorted({r.dev for r in local_routes_by_dst(facts).get(vip, []) if r.dev and r.dev != interface})


def service_addresses_on(facts: NetFacts, interface: str) -> list[str]:
    """The VIPs held by the dummy interface (its IPv6 link-local address is not one)."""
    return [a.ip for a in facts.addresses_on(interface) if not a.is_link_local]


def _ipv6_node_ip(addresses: list[InterfaceAddress]) -> str | None:
    """The lowest permanent global address; a SLAAC/DHCP (`dynamic`) one only when there is none.
    Stable: adding a temporary or newer address does not change it (the kernel lists newest first)."""
    usable = [a for a in addresses if not a.flags & UNSTABLE_IPV6]
    if not usable:
        return None
    return min(usable, key=lambda a: ("dynamic" in a.flags, ipaddress.ip_address(a.ip))).ip


def default_route_node_ips(facts: NetFacts) -> dict[int, str]:
    """Per family, the node IP on the interface holding the default route (the first next hop's
    interface that has one, for an ECMP route): IPv4, its primary address; IPv6, see _ipv6_node_ip."""
    found: dict[int, str] = {}
    for route in facts.default_routes:
        if route.family in found or not route.dev:
            continue
        candidates = [a for a in facts.addresses_on(route.dev) if a.family == route.family and a.scope == "global"]
        if route.family == 4:
            ip = next((a.ip for a in candidates if not a.secondary), None)
        else:
            ip = _ipv6_node_ip(candidates)
        if ip:
            found[route.family] = ip
    return found


def unusable_node_ip(ip: str, facts: NetFacts, interface: str | None) -> str | None:
    """Why `ip` cannot be the source of the repaired routes, or None."""
    why = special_reason(ip)
    if why:
        return why
    held_by = {a.interface for a in facts.addresses if a.ip == ip}
    if interface and held_by == {interface}:  # on eth0 too, it is still the node's own address
        return f"a service address on {interface} (the broken source itself)"
    if not facts.has_address(ip):
        return ("not configured on this host: the kernel would refuse it as a route source "
                "(Invalid prefsrc address); pass --node-ip with a local address")
    return None


def resolve_node_ips(explicit: list[str], facts: NetFacts, fallback: dict[int, str] | None = None,
                     interface: str | None = None) -> dict[int, str]:
    """--node-ip (one per family) wins; then `fallback` (e.g. the Node object); then the default route.

    Every chosen address must be a real address of this host, outside `interface`."""
    chosen: dict[int, str] = {}
    for text in explicit:
        ip = canonical_ip(text)  # fd00:123:0::249 is fd00:123::249, as ip prints it
        if ip is None:
            raise ConfigError(f"--node-ip {text!r} is not an IP address")
        family = family_of(ip)
        if family in chosen and chosen[family] != ip:
            raise ConfigError(f"--node-ip given twice for IPv{family} ({chosen[family]}, {ip}): one per family")
        chosen[family] = ip
    for family, ip in {**default_route_node_ips(facts), **(fallback or {})}.items():
        chosen.setdefault(family, ip)
    for family, ip in chosen.items():
        why = unusable_node_ip(ip, facts, interface)
        if why:
            raise ConfigError(f"node IP {ip} is {why}")
    return chosen


@dataclass
class RepairPlan:
    """What `fix-routes` would do now: per VIP checks, VIPs it cannot repair, stale routes to remove."""

    checks: list[RouteCheck] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    orphans: list[LocalRoute] = field(default_factory=list)

    @property
    def add_lines(self) -> tuple[str, ...]:
        return tuple(line for c in self.checks for line in c.add)

    @property
    def remove_lines(self) -> tuple[str, ...]:
        return tuple(line for c in self.checks for line in c.remove) + tuple(delete_line(r) for r in self.orphans)


def plan_repair(facts: NetFacts, interface: str, node_ips: dict[int, str]) -> RepairPlan:
    """The kernel refuses an IPv6 route through a down device ("Nexthop device is not up"; kube-proxy
    leaves kube-ipvs0 down): IPv6 VIPs there are skipped, never half-repaired."""
    vips = service_addresses_on(facts, interface)
    down = interface not in facts.up_interfaces
    plan = RepairPlan(orphans=orphan_routes(facts, interface))
    for check in check_routes(vips, interface, node_ips, facts):
        if down and check.family == 6 and check.lines:
            plan.skipped.append(check.vip)
        else:
            plan.checks.append(check)
    return plan


def assume_added(facts: NetFacts, plan: RepairPlan, interface: str) -> NetFacts:
    """The kernel as it will be once `plan`'s add lines are in: what a dry run plans its removals from."""
    added = [LocalRoute("local", c.vip, interface, c.node_ip, "kernel", "host", 0 if c.family == 4 else IPV6_METRIC)
             for c in plan.checks if c.add]
    replaced = {r.dst for r in added if r.metric == IPV6_METRIC}
    kept = [r for r in facts.local_routes
            if not (r.dst in replaced and r.dev == interface and r.metric == IPV6_METRIC)]
    return replace(facts, local_routes=tuple(kept + added))
