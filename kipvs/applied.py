"""The kernel once a batch its tool reported applied whole has run: what verification knows without
reading it again (kipvs.reconcile.settle). Each tool says what it refused: `ipvsadm -R` prints every
refused line (and exits 0), `ip -force -batch` prints them and exits 1. Only outcomes that are certain
are modelled; anything else returns None and is read back.
"""
from __future__ import annotations

from dataclasses import replace

from kipvs.desired import Desired
from kipvs.facts.kernel import KernelFacts
from kipvs.model import InterfaceAddress, LocalRoute, NetFacts, VirtualServer, known_family


def rules_after(removed: frozenset, desired: Desired, kernel: KernelFacts) -> tuple[VirtualServer, ...]:
    """The IPVS table once every line of a plan's ipvsadm batch has been applied: each wanted virtual
    server exactly as desired, the `removed` ones gone, every other one (foreign, held) as it was."""
    wanted = {vs.key for vs in desired.virtual_servers}
    kept = tuple(vs for vs in kernel.rules if vs.key not in wanted and vs.key not in removed)
    return kept + tuple(desired.virtual_servers)


def net_after(net: NetFacts, lines: tuple[str, ...], interface: str) -> NetFacts | None:
    """The addresses and local routes once an `ip -batch` of these lines was applied whole, for IPv4
    service addresses (IPv6 inserts a new address's route later, from a work queue: read back). The
    lines are kipvs's own, rendered from typed values, so their words are where kipvs put them."""
    addresses, routes = list(net.addresses), list(net.local_routes)
    for line in lines:
        words = line.split()
        ip = words[3] if words[:2] == ["route", "replace"] or words[:2] == ["route", "del"] else \
            words[2].split("/")[0] if words[:2] in (["addr", "add"], ["addr", "del"]) else None
        if ip is None or known_family(ip) != 4 or interface not in words:
            return None  # a link change, an append, IPv6: not modelled
        if words[:2] == ["addr", "add"]:
            if any(r.dst == ip for r in routes):
                return None  # the kernel's new route would not be the only one
            addresses.append(InterfaceAddress(interface, ip, int(words[2].split("/")[1]), 4))
            routes.append(LocalRoute("local", ip, interface, ip, "kernel", "host", 0))  # the kernel's own
        elif words[:2] == ["route", "replace"]:  # takes over the first route of that destination
            first = next((i for i, r in enumerate(routes) if r.dst == ip), None)
            if first is None or routes[first].dev != interface:
                return None
            routes[first] = LocalRoute("local", ip, interface, words[words.index("src") + 1], "kernel", "host", 0)
        elif words[:2] == ["route", "del"]:
            src = words[words.index("src") + 1] if "src" in words else None
            metric = int(words[words.index("metric") + 1])
            match = [r for r in routes if r.dst == ip and r.dev == interface and r.metric == metric and
                     (src is None or r.prefsrc == src)]
            if len(match) != 1:
                return None
            routes.remove(match[0])
        else:  # addr del: the kernel removes the route it made for the address (source = the address)
            addresses = [a for a in addresses if not (a.interface == interface and a.ip == ip)]
            routes = [r for r in routes if not (r.dst == ip and r.dev == interface and r.prefsrc == ip)]
    return replace(net, addresses=tuple(addresses), local_routes=tuple(routes))
