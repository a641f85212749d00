"""Facts from iproute2: `ip -j addr`, `ip -j route show table local`, default routes."""
from __future__ import annotations

import json

from kipvs.errors import CommandFailed
from kipvs.model import DefaultRoute, InterfaceAddress, LocalRoute, NetFacts
from kipvs.runner import Runner

FAMILY = {"inet": 4, "inet6": 6}

READ_ADDRESSES = ["ip", "-j", "addr", "show"]
READ_LOCAL_ROUTES = {4: ["ip", "-j", "-4", "route", "show", "table", "local"],
                     6: ["ip", "-j", "-6", "route", "show", "table", "local"]}
READ_DEFAULT_ROUTES = {4: ["ip", "-j", "-4", "route", "show", "default"],
                       6: ["ip", "-j", "-6", "route", "show", "default"]}


def _load(text: str) -> list[dict]:
    text = text.strip()
    return json.loads(text) if text else []


def parse_addresses(text: str) -> tuple[list[InterfaceAddress], set[str], set[str]]:
    """Addresses, interface names and the names of interfaces that are up, from `ip -j addr show`."""
    addresses, interfaces, up = [], set(), set()
    for link in _load(text):
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
                scope=info.get("scope", "global"), secondary=bool(info.get("secondary", False))))
    return addresses, interfaces, up


def parse_local_routes(text: str) -> list[LocalRoute]:
    return [LocalRoute(type=r.get("type", "unicast"), dst=r["dst"], dev=r.get("dev"), prefsrc=r.get("prefsrc"),
                       protocol=r.get("protocol"), scope=r.get("scope"), metric=int(r.get("metric", 0)))
            for r in _load(text) if "dst" in r]


def parse_default_routes(text: str, family: int) -> list[DefaultRoute]:
    routes = [DefaultRoute(family=family, dev=r.get("dev"), gateway=r.get("gateway"), metric=int(r.get("metric", 0)))
              for r in _load(text) if r.get("dst") == "default"]
    return sorted(routes, key=lambda r: r.metric)


def _read_optional_family(runner: Runner, argv: list[str]) -> str:
    """IPv6 may be disabled on a node: no IPv6 routes is then the truth, not an error."""
    try:
        return runner.run(argv)
    except CommandFailed as exc:
        if "not supported" in exc.stderr.lower():
            return ""
        raise


def read_net_facts(runner: Runner, with_defaults: bool = True) -> NetFacts:
    addresses, interfaces, up = parse_addresses(runner.run(READ_ADDRESSES))
    local_routes = parse_local_routes(runner.run(READ_LOCAL_ROUTES[4]))
    local_routes += parse_local_routes(_read_optional_family(runner, READ_LOCAL_ROUTES[6]))
    defaults: list[DefaultRoute] = []
    if with_defaults:
        defaults += parse_default_routes(runner.run(READ_DEFAULT_ROUTES[4]), 4)
        defaults += parse_default_routes(_read_optional_family(runner, READ_DEFAULT_ROUTES[6]), 6)
    return NetFacts(addresses=tuple(addresses), interfaces=frozenset(interfaces), up_interfaces=frozenset(up),
                    local_routes=tuple(local_routes), default_routes=tuple(defaults))
