"""Plain, frozen data shared by desired state, kernel facts and plans."""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field


def canonical_ip(value) -> str | None:
    """The address in the form the kernel tools print (fd00::1, not FD00:0::1); None if not an address.

    inet_pton is strict (no leading zeros, no short IPv4 forms) and, unlike the ipaddress
    module, cheap enough for every endpoint of a large cluster."""
    if not isinstance(value, str):
        return None
    family = socket.AF_INET6 if ":" in value else socket.AF_INET
    try:
        return socket.inet_ntop(family, socket.inet_pton(family, value))
    except (OSError, ValueError):
        return None


def family_of(ip: str) -> int:
    """4 or 6 for an address string (raises ValueError for anything else)."""
    if canonical_ip(ip) is None:
        raise ValueError(f"{ip!r} is not an IP address")
    return 6 if ":" in ip else 4


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
        return ":" in self.ip and ipaddress.ip_address(self.ip).is_link_local


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
    up_interfaces: frozenset[str] = field(default_factory=frozenset)
    local_routes: tuple[LocalRoute, ...] = ()
    default_routes: tuple[DefaultRoute, ...] = ()
    kinds: dict[str, str] = field(default_factory=dict)  # interface -> link kind ("dummy", "" for a NIC)

    def addresses_on(self, interface: str) -> list[InterfaceAddress]:
        return [a for a in self.addresses if a.interface == interface]

    def has_address(self, ip: str) -> bool:
        return any(a.ip == ip for a in self.addresses)


# --- IPVS --------------------------------------------------------------------

PROTOCOL_FLAG = {"tcp": "-t", "udp": "-u", "sctp": "--sctp-service"}
FORWARD_FLAG = {"masq": "-m", "route": "-g", "tunnel": "-i"}


def host_port(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


@dataclass(frozen=True, order=True)
class RealServer:
    ip: str
    port: int
    weight: int = 1
    forward: str = "masq"

    @property
    def key(self) -> tuple[str, int]:
        return (self.ip, self.port)


@dataclass(frozen=True)
class VirtualServer:
    """One IPVS virtual service. `protocol` is tcp/udp/sctp, or "fwmark" with `port` the mark."""

    protocol: str
    ip: str
    port: int
    scheduler: str = "rr"
    flags: tuple[str, ...] = ()
    persistent: int | None = None
    real_servers: tuple[RealServer, ...] = ()

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.protocol, self.ip, self.port)

    @property
    def family(self) -> int:
        return family_of(self.ip) if self.ip else 4

    def service_args(self) -> str:
        """The `-t IP:PORT` part of an ipvsadm line."""
        if self.protocol == "fwmark":
            return f"-f {self.port}"
        return f"{PROTOCOL_FLAG[self.protocol]} {host_port(self.ip, self.port)}"

    def options_args(self) -> str:
        parts = [f"-s {self.scheduler}"]
        if self.flags:
            parts.append(f"-b {','.join(self.flags)}")
        if self.persistent is not None:
            parts.append(f"-p {self.persistent}")
        return " ".join(parts)

    def same_options(self, other: "VirtualServer") -> bool:
        return (self.scheduler, tuple(sorted(self.flags)), self.persistent) == \
               (other.scheduler, tuple(sorted(other.flags)), other.persistent)

    def label(self) -> str:
        if self.protocol == "fwmark":
            return f"FWM {self.port}"
        return f"{self.protocol.upper()} {host_port(self.ip, self.port)}"
