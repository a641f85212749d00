"""Plain, frozen data shared by desired state, kernel facts and plans."""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from functools import cached_property


def canonical_ip(value) -> str | None:
    """The address in the form the kernel tools print (fd00::1, not FD00:0::1); None if not an address.

    inet_pton is strict (no leading zeros, no short IPv4 forms) and, unlike the ipaddress
    module, cheap enough for every endpoint of a large cluster."""
    if not isinstance(value, str):
        return None
    family = socket.AF_INET6 if ":" in value else socket.AF_INET
    try:
        canonical = socket.inet_ntop(family, socket.inet_pton(family, value))
    except (OSError, ValueError):
        return None
    return value if canonical == value else canonical  # the same string: 500,000 endpoints, no copies


def family_of(ip: str) -> int:
    """4 or 6 for an address string (raises ValueError for anything else)."""
    if canonical_ip(ip) is None:
        raise ValueError(f"{ip!r} is not an IP address")
    return 6 if ":" in ip else 4


def known_family(ip: str) -> int:
    """4 or 6 for an address already checked (the desired state's, the kernel's as parsed): family_of
    checks it again, which cost ~0.2 s of planning 50,000 addresses."""
    return 6 if ":" in ip else 4


@dataclass(frozen=True)
class InterfaceAddress:
    interface: str
    ip: str
    prefixlen: int
    family: int
    scope: str = "global"
    secondary: bool = False
    flags: frozenset[str] = frozenset()  # of temporary, deprecated, tentative, dadfailed, dynamic (IPv6)

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


@dataclass(frozen=True, order=True, slots=True)  # slots: a large cluster has hundreds of thousands
class RealServer:
    ip: str
    port: int
    weight: int = 1
    forward: str = "masq"
    # What else `ipvsadm -R` can set on a real server. `ipvsadm -S` prints the tunnel fields but
    # not the connection thresholds (`-L --thresholds` shows those), so a save reads them as 0.
    u_threshold: int = 0
    l_threshold: int = 0
    tun_type: str | None = None   # ipip, gue, gre (tunnel forwarding only)
    tun_port: int | None = None   # gue only
    tun_csum: str | None = None   # --tun-nocsum, --tun-csum or --tun-remcsum (gue, gre)

    @property
    def key(self) -> tuple[str, int]:
        return (self.ip, self.port)

    def options_args(self) -> str:
        """`-m -w 1 …`: everything of an `-a`/`-e` line after `-r ADDRESS`."""
        if not (self.u_threshold or self.l_threshold or self.tun_type or self.tun_port is not None or self.tun_csum):
            return f"{FORWARD_FLAG[self.forward]} -w {self.weight}"  # the common case, once per real server
        parts = [FORWARD_FLAG[self.forward], f"-w {self.weight}"]
        if self.u_threshold:
            parts.append(f"-x {self.u_threshold}")
        if self.l_threshold:
            parts.append(f"-y {self.l_threshold}")
        if self.tun_type:
            parts.append(f"--tun-type {self.tun_type}")
        if self.tun_port is not None:
            parts.append(f"--tun-port {self.tun_port}")
        if self.tun_csum:
            parts.append(self.tun_csum)
        return " ".join(parts)

    def same_options(self, other: "RealServer") -> bool:
        return self.options_args() == other.options_args()


class _RealServerDraft:
    """RealServer's slots, writable, for `plain_real_server`: the same layout, so a filled draft can
    become a RealServer (its __class__ changed), frozen from then on like any other."""

    __slots__ = RealServer.__slots__


def plain_real_server(ip: str, port: int) -> RealServer:
    """RealServer(ip, port), every other field its default: built in a quarter of the time the frozen
    dataclass's __init__ takes (nine object.__setattr__ calls), which was ~0.5 s of 500,000 endpoints."""
    draft = _RealServerDraft()
    draft.ip, draft.port, draft.weight, draft.forward = ip, port, 1, "masq"
    draft.u_threshold = draft.l_threshold = 0
    draft.tun_type = draft.tun_port = draft.tun_csum = None
    draft.__class__ = RealServer
    return draft  # type: ignore[return-value]


# The persistence netmask that groups nothing: the kernel's default, which `ipvsadm -S` does not print.
HOST_NETMASK = {4: "255.255.255.255", 6: "128"}


@dataclass(frozen=True)
class VirtualServer:
    """One IPVS virtual service. `protocol` is tcp/udp/sctp, or "fwmark" with `port` the mark (and `ip`
    "" for an IPv4 firewall-mark service, "::" for an IPv6 one: `-f 42 -6`)."""

    protocol: str
    ip: str
    port: int
    scheduler: str = "rr"
    flags: tuple[str, ...] = ()
    persistent: int | None = None
    real_servers: tuple[RealServer, ...] = ()
    # Persistence granularity (`-M`): None is the host mask. kube-router 2.x leaves `-M 32.0.0.0`
    # (its library sends 32 in host byte order), which puts every client in one persistence template.
    netmask: str | None = None
    pe: str | None = None      # persistence engine (`--pe sip`)
    one_packet: bool = False   # `-o`: one-packet scheduling (UDP)

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.protocol, self.ip, self.port)

    @property
    def family(self) -> int:
        return family_of(self.ip) if self.ip else 4

    def service_args(self) -> str:
        """The `-t IP:PORT` part of an ipvsadm line."""
        return self._service_args

    @cached_property  # every real server's line repeats it
    def _service_args(self) -> str:
        if self.protocol == "fwmark":
            return f"-f {self.port}" + (" -6" if self.ip == "::" else "")
        return f"{PROTOCOL_FLAG[self.protocol]} {host_port(self.ip, self.port)}"

    def options_args(self) -> str:
        """Every service option, also the default ones, so that `-E` with it sets the service exactly."""
        parts = [f"-s {self.scheduler}"]
        if self.flags:
            parts.append(f"-b {','.join(self.flags)}")
        if self.persistent is not None:
            parts.append(f"-p {self.persistent}")
            if self.netmask is not None:
                parts.append(f"-M {self.netmask}")
        if self.pe:
            parts.append(f"--pe {self.pe}")
        if self.one_packet:
            parts.append("-o")
        return " ".join(parts)

    def _options(self) -> tuple:
        netmask = self.netmask if self.persistent is not None else None
        return (self.scheduler, tuple(sorted(self.flags)), self.persistent, netmask, self.pe or None,
                self.one_packet)

    def same_options(self, other: "VirtualServer") -> bool:
        return self._options() == other._options()

    def label(self) -> str:
        if self.protocol == "fwmark":
            return f"FWM {self.port}" + (" IPv6" if self.ip == "::" else "")
        return f"{self.protocol.upper()} {host_port(self.ip, self.port)}"
