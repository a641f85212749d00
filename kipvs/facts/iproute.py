"""Facts from iproute2: `ip -j addr`, `ip -j route show table local`, default routes."""
from __future__ import annotations

import json

from kipvs.errors import CommandFailed
from kipvs.model import DefaultRoute, InterfaceAddress, LocalRoute, NetFacts
from kipvs.runner import Runner

FAMILY = {"inet": 4, "inet6": 6}
# `ip -j addr` marks these with `"flag": true`; they decide whether an IPv6 address can be the node IP.
ADDRESS_FLAGS = ("temporary", "deprecated", "tentative", "dadfailed", "dynamic")

# Two `ip -batch` processes read everything: process start-up, not the kernel, is what costs.
# (A batch line takes no options, and an unspecified family means IPv4 for routes, hence two.)
# -d adds each link's kind (linkinfo.info_kind: dummy, veth, …; absent for physical NICs).
READ_ALL = (["ip", "-j", "-d", "-batch", "-"], "addr show\nroute show table local\nroute show default\n")
READ_IPV6 = (["ip", "-j", "-6", "-batch", "-"], "route show table local\nroute show default\n")


def split_json_documents(text: str) -> list[list]:
    """`ip -j -batch` prints one JSON array per command, back to back."""
    decoder, documents, index = json.JSONDecoder(), [], 0
    while True:
        while index < len(text) and text[index].isspace():
            index += 1
        if index >= len(text):
            return documents
        document, index = decoder.raw_decode(text, index)
        documents.append(document)


def parse_links(links: list[dict]) -> tuple[list[InterfaceAddress], set[str], set[str]]:
    """Addresses, interface names and the names of interfaces that are up, from `ip -j addr show`."""
    addresses, interfaces, up = [], set(), set()
    for link in links:
        name = link.get("ifname")
        if not name:
            continue
        interfaces.add(name)
        if "UP" in (link.get("flags") or []):
            up.add(name)
        for info in link.get("addr_info") or []:
            family = FAMILY.get(info.get("family", ""))
            if family is None or "local" not in info:
                continue
            addresses.append(InterfaceAddress(
                interface=name, ip=info["local"], prefixlen=int(info.get("prefixlen", 0)), family=family,
                scope=info.get("scope", "global"), secondary=bool(info.get("secondary", False)),
                flags=frozenset(flag for flag in ADDRESS_FLAGS if info.get(flag))))
    return addresses, interfaces, up


def parse_link_kinds(links: list[dict]) -> dict[str, str]:
    """Interface name -> link kind from `ip -d -j addr show` ("" for a physical NIC)."""
    return {link["ifname"]: str((link.get("linkinfo") or {}).get("info_kind") or "")
            for link in links if link.get("ifname")}


def parse_route_list(routes: list[dict]) -> list[LocalRoute]:
    return [LocalRoute(type=r.get("type", "unicast"), dst=r["dst"], dev=r.get("dev"), prefsrc=r.get("prefsrc"),
                       protocol=r.get("protocol"), scope=r.get("scope"), metric=int(r.get("metric", 0)))
            for r in routes if "dst" in r]


def default_route_list(routes: list[dict], family: int) -> list[DefaultRoute]:
    """One entry per way out: an ECMP default route (`nexthops`) gives one per next hop, in its order."""
    found = []
    for r in routes:
        if r.get("dst") != "default":
            continue
        for hop in r.get("nexthops") or [r]:
            found.append(DefaultRoute(family=family, dev=hop.get("dev"), gateway=hop.get("gateway"),
                                      metric=int(r.get("metric", 0))))
    return sorted(found, key=lambda r: r.metric)


def _read_ipv6(runner: Runner) -> list[list]:
    """IPv6 may be disabled on a node: no IPv6 routes is then the truth, not an error."""
    try:
        return split_json_documents(runner.run(READ_IPV6[0], stdin=READ_IPV6[1]))
    except CommandFailed as exc:
        if "not supported" in exc.stderr.lower():
            return [[], []]
        raise


def read_net_facts(runner: Runner) -> NetFacts:
    addrs, local4, default4 = split_json_documents(runner.run(READ_ALL[0], stdin=READ_ALL[1]))
    local6, default6 = _read_ipv6(runner)
    addresses, interfaces, up = parse_links(addrs)
    return NetFacts(addresses=tuple(addresses), interfaces=frozenset(interfaces), up_interfaces=frozenset(up),
                    kinds=parse_link_kinds(addrs),
                    local_routes=tuple(parse_route_list(local4) + parse_route_list(local6)),
                    default_routes=tuple(default_route_list(default4, 4) + default_route_list(default6, 6)))
