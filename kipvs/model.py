"""Plain, frozen data shared by desired state, kernel facts and plans."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field


def family_of(ip: str) -> int:
    """4 or 6 for an address string (raises ValueError for anything else)."""
    return ipaddress.ip_address(ip).version


@dataclass(frozen=True)
class InterfaceAddress:
    interface: str
    ip: str
    prefixlen: int
    family: int
    scope: str = "global"
    secondary: bool = False

    @property
    def is_link_local(self) -> bool:
        return ipaddress.ip_address(self.ip).is_link_local


@dataclass(frozen=True)
class LocalRoute:
    """One route of table `local` as `ip -j route show table local` reports it."""

    type: str
    dst: str
    dev: str | None
    prefsrc: str | None = None
    protocol: str | None = None
    scope: str | None = None
    metric: int = 0

    @property
    def family(self) -> int:
        return family_of(self.dst.split("/")[0])


@dataclass(frozen=True)
class DefaultRoute:
    family: int
    dev: str | None
    gateway: str | None = None
    metric: int = 0


@dataclass(frozen=True)
class NetFacts:
    """What the kernel's routing side looks like, read in one go."""

    addresses: tuple[InterfaceAddress, ...] = ()
    interfaces: frozenset[str] = field(default_factory=frozenset)
    local_routes: tuple[LocalRoute, ...] = ()
    default_routes: tuple[DefaultRoute, ...] = ()

    def addresses_on(self, interface: str) -> list[InterfaceAddress]:
        return [a for a in self.addresses if a.interface == interface]

    def has_address(self, ip: str) -> bool:
        return any(a.ip == ip for a in self.addresses)
