"""Addresses and networks as typed, scope-free values, and the address classes kipvs never programs.

Python's `ipaddress` accepts an IPv6 scope id (`fd00::%anything/64`) and prints it back verbatim:
text after `%` would reach a restore line. So networks from input are parsed here, refusing any
`%`, and every address or network that reaches a command line is rendered here from its packed
bytes, which carry no scope id by construction. Pure: no I/O.
"""
from __future__ import annotations

import ipaddress
import socket

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Cloud metadata services (AWS, GCP, Azure, OpenStack on IPv4; AWS's IPv6 one): reaching them from a
# service address or a real server hands out the node's credentials.
METADATA_ADDRESSES = frozenset({"169.254.169.254", "fd00:ec2::254"})
_BROADCAST = "255.255.255.255"


class RefusedNetwork(ValueError):
    """Text `ipaddress` would take as a network, refused here (its message says why)."""


def parse_network(text) -> Network:
    """A CIDR from input (host bits allowed, as kube-proxy does); ValueError otherwise (RefusedNetwork
    for what `ipaddress` alone would let through)."""
    if not isinstance(text, str):
        raise ValueError("not a string")
    text = text.strip()
    if "%" in text:
        raise RefusedNetwork("it has an IPv6 scope id (%...), which no network has")
    return ipaddress.ip_network(text, strict=False)


def refusal(exc: ValueError) -> str:
    """` (why)` for a RefusedNetwork, to add to a "... is not a CIDR" message; "" for the rest."""
    return f" ({exc})" if isinstance(exc, RefusedNetwork) else ""


def network_token(network: Network) -> str:
    """`fd00::/64`: a network as a command-line token, from its bytes (no scope id can survive)."""
    return f"{ipaddress.ip_address(network.network_address.packed)}/{network.prefixlen}"


def address_token(ip: str) -> str:
    """An address as a command-line token: exactly what inet_ntop prints for it; anything else raises
    ValueError (a scope id, a name, a second word: never written)."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    try:
        return socket.inet_ntop(family, socket.inet_pton(family, ip))
    except (OSError, TypeError) as exc:
        raise ValueError(f"{ip!r} is not an address: not rendered") from exc


def _forms(ip: str) -> list[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, str]]:
    """The address, and the IPv4 address inside an IPv4-mapped (::ffff:a.b.c.d) or IPv4-compatible
    (::a.b.c.d) one: the kernel and Go read those as the IPv4 address itself."""
    address = ipaddress.ip_address(ip)
    forms = [(address, "")]
    if address.version == 6:
        packed = address.packed
        if address.ipv4_mapped is not None:
            forms.append((address.ipv4_mapped, " (IPv4-mapped form)"))
        elif packed[:12] == bytes(12) and packed[12:] not in (bytes(4), b"\x00\x00\x00\x01"):  # not :: or ::1
            forms.append((ipaddress.IPv4Address(packed[12:]), " (IPv4-compatible form)"))
    return forms


# By an address's first byte, whether none of the special classes can hold it (the hot loop over every
# endpoint tests this on the bytes it already has); the few left go through the full checks.
PLAIN_FIRST_BYTE = {4: tuple(0 < b < 224 and b not in (127, 169) for b in range(256)),
                    6: tuple(b not in (0x00, 0xFE, 0xFF) for b in range(256))}
METADATA_V6_PACKED = socket.inet_pton(socket.AF_INET6, "fd00:ec2::254")


def is_plain(ip: str) -> bool:
    """A canonical address none of the special classes can hold, decided by its first byte."""
    family = 6 if ":" in ip else 4
    packed = socket.inet_pton(socket.AF_INET6 if family == 6 else socket.AF_INET, ip)
    return PLAIN_FIRST_BYTE[family][packed[0]] and packed != METADATA_V6_PACKED


def special_reason(ip: str) -> str | None:
    """Why a canonical address can never be a node IP or a service address (None when it can be):
    loopback, unspecified, multicast, link-local, broadcast, a cloud metadata address, or an
    IPv4-mapped/compatible form of one of those."""
    if is_plain(ip):
        return None
    for candidate, form in _forms(ip):
        text = str(candidate)
        if text in METADATA_ADDRESSES:
            return f"the cloud metadata address{form}"
        for test, what in (("is_loopback", "a loopback"), ("is_unspecified", "an unspecified"),
                           ("is_multicast", "a multicast"), ("is_link_local", "a link-local")):
            if getattr(candidate, test):
                return f"{what} address{form}"
        if text == _BROADCAST:
            return f"the broadcast address{form}"
    return None


def endpoint_reason(ip: str) -> str | None:
    """Why a canonical address cannot be a real server: the API server's rules for EndpointSlice addresses
    (k8s validation.ValidateEndpointIP: unspecified, loopback, link-local unicast and link-local multicast;
    Go reads ::ffff:a.b.c.d as IPv4, so the mapped forms too), and the cloud metadata addresses."""
    if is_plain(ip):
        return None
    for candidate, form in _forms(ip):
        if str(candidate) in METADATA_ADDRESSES:
            return f"the cloud metadata address{form}"
        if candidate.is_unspecified:
            return f"an unspecified address{form}"
        if candidate.is_loopback:
            return f"a loopback address{form}"
        if candidate.is_link_local:
            return f"a link-local address{form}"
        packed = candidate.packed
        if (candidate.version == 4 and packed[:3] == b"\xe0\x00\x00") or \
                (candidate.version == 6 and packed[0] == 0xFF and packed[1] & 0x0F == 0x02):
            return f"a link-local multicast address{form}"
    return None
