"""The route repair (kube-router #376, #1698), as a pure function of kernel facts.

A service address bound to the dummy interface gets a kernel route in table
`local` whose preferred source is the address itself. The host then talks to
the service with the VIP as source, and a backend on another node, which holds
the same VIP, drops the packets as martians. The fix is a local route whose
`src` is the node IP. For IPv6 `replace` adds a second route (metric 1024)
beside the kernel's (metric 0, no src), which still wins, so that one goes.
"""
from __future__ import annotations

from dataclasses import dataclass

from kipvs.errors import ConfigError
from kipvs.model import LocalRoute, NetFacts, family_of

# The metric a `route replace local` lands on: IPv4 replaces the kernel's route
# in place (metric 0); IPv6 writes its default user metric.
REPLACED_METRIC = {4: 0, 6: 1024}


@dataclass(frozen=True)
class RouteCheck:
    vip: str
    family: int
    node_ip: str | None
    lines: tuple[str, ...]  # `ip -batch` lines that repair it; empty when correct

    @property
    def correct(self) -> bool:
        return self.node_ip is not None and not self.lines


def replace_line(vip: str, interface: str, node_ip: str) -> str:
    return f"route replace local {vip} dev {interface} proto kernel scope host src {node_ip} table local"


def delete_line(route: LocalRoute) -> str:
    parts = [f"route del local {route.dst} dev {route.dev} table local"]
    if route.protocol:
        parts.append(f"proto {route.protocol}")
    parts.append(f"metric {route.metric}")
    return " ".join(parts)


def check_route(vip: str, interface: str, node_ip: str | None, same_dst: list[LocalRoute]) -> RouteCheck:
    """`same_dst`: the `local` routes of table local whose destination is `vip`."""
    family = family_of(vip)
    if node_ip is None:
        return RouteCheck(vip, family, None, ())
    good = any(r.dev == interface and r.prefsrc == node_ip for r in same_dst)
    extra = [r for r in same_dst if r.prefsrc != node_ip and r.metric != REPLACED_METRIC[family]]
    lines: list[str] = []
    if not good or any(r.prefsrc != node_ip for r in same_dst):
        lines.append(replace_line(vip, interface, node_ip))
        lines += [delete_line(r) for r in extra]
    return RouteCheck(vip, family, node_ip, tuple(lines))


# While an IPv4 route was wrong, ARP requests went out with the VIP as their sender (arp_announce 0
# takes the packet's source), and the backend's node, which holds the same VIP, never answers those.
# A neighbour entry still INCOMPLETE from them queues the first packets sent after the repair behind
# probes that cannot be answered, and drops them when it fails: the first connection after the repair
# failed every time it came in that window (lab: 3 of 3, "curl: (7)"). Flushing the unresolved entries
# makes the next packet resolve afresh, with the node IP as sender; resolved entries stay. IPv6 is not
# affected: neighbour solicitations take a source only from the outgoing interface, never the dummy's.
FLUSH_UNRESOLVED_NEIGHBOURS = "neigh flush nud incomplete"


def repair_lines(checks: list[RouteCheck]) -> tuple[str, ...]:
    """The `ip -batch` lines that repair `checks`, then clear what the wrong IPv4 routes left behind."""
    lines = tuple(line for c in checks for line in c.lines)
    if any(c.lines and c.family == 4 for c in checks):
        lines += (FLUSH_UNRESOLVED_NEIGHBOURS,)
    return lines


def check_routes(vips: list[str], interface: str, node_ips: dict[int, str], facts: NetFacts) -> list[RouteCheck]:
    by_dst: dict[str, list[LocalRoute]] = {}
    for route in facts.local_routes:
        if route.type == "local":
            by_dst.setdefault(route.dst, []).append(route)
    return [check_route(vip, interface, node_ips.get(family_of(vip)), by_dst.get(vip, [])) for vip in vips]


def service_addresses_on(facts: NetFacts, interface: str) -> list[str]:
    """The VIPs held by the dummy interface (its IPv6 link-local address is not one)."""
    return [a.ip for a in facts.addresses_on(interface) if not a.is_link_local]


def default_route_node_ips(facts: NetFacts) -> dict[int, str]:
    """Per family, the primary global address of the interface holding the default route."""
    found: dict[int, str] = {}
    for route in facts.default_routes:
        if route.family in found or not route.dev:
            continue
        for address in facts.addresses_on(route.dev):
            if address.family == route.family and address.scope == "global" and not address.secondary:
                found[route.family] = address.ip
                break
    return found


def resolve_node_ips(explicit: list[str], facts: NetFacts, fallback: dict[int, str] | None = None) -> dict[int, str]:
    """--node-ip (one per family) wins; then `fallback` (e.g. the Node object); then the default route.

    Every chosen address must be configured on this host: the kernel refuses any
    other as a route source ("Invalid prefsrc address")."""
    chosen: dict[int, str] = {}
    for ip in explicit:
        try:
            family = family_of(ip)
        except ValueError:
            raise ConfigError(f"--node-ip {ip!r} is not an IP address") from None
        if family in chosen:
            raise ConfigError(f"--node-ip given twice for IPv{family} ({chosen[family]}, {ip}): one per family")
        chosen[family] = ip
    for family, ip in {**default_route_node_ips(facts), **(fallback or {})}.items():
        chosen.setdefault(family, ip)
    for family, ip in chosen.items():
        if not facts.has_address(ip):
            raise ConfigError(f"node IP {ip} is not configured on this host: the kernel would refuse it as "
                              "a route source (Invalid prefsrc address); pass --node-ip with a local address")
    return chosen
