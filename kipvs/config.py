"""Options that shape the desired state, shared by sync, show, cleanup and watch."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from kipvs.errors import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Every scheduler the kernel's IPVS and ipvsadm know.
KNOWN_SCHEDULERS = frozenset({"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf",
                              "mh", "twos"})


@dataclass(frozen=True)
class ProxyOptions:
    interface: str = "kube-dummy-if"
    scheduler: str = "rr"
    node_port_range: tuple[int, int] = (30000, 32767)
    nodeport_bindon_all_ip: bool = False
    external_ip_ranges: tuple[Network, ...] = ()
    loadbalancer_ip_ranges: tuple[Network, ...] = ()
    strict_external_ip_validation: bool = True
    excluded_cidrs: tuple[Network, ...] = ()
    proxy_names: frozenset[str] = frozenset({"kipvs", "kube-router"})

    def excluded(self, ip: str) -> bool:
        if not self.excluded_cidrs:
            return False
        address = ipaddress.ip_address(ip)
        return any(address in net for net in self.excluded_cidrs)


def parse_cidrs(values: list[str], option: str) -> tuple[Network, ...]:
    networks = []
    for value in values:
        for part in filter(None, (p.strip() for p in value.split(","))):
            try:
                networks.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ConfigError(f"{option} {part!r} is not a CIDR") from None
    return tuple(networks)


def parse_port_range(value: str) -> tuple[int, int]:
    low, sep, high = value.replace("+", "-").partition("-")
    try:
        first, last = int(low), int(high if sep else low)
    except ValueError:
        raise ConfigError(f"--service-node-port-range {value!r}: expected FIRST-LAST, e.g. 30000-32767") from None
    if not 0 < first <= last <= 65535:
        raise ConfigError(f"--service-node-port-range {value!r}: ports must be 1-65535, first <= last")
    return first, last


def parse_scheduler(value: str) -> str:
    if value not in KNOWN_SCHEDULERS:
        raise ConfigError(f"--scheduler {value!r}: not an IPVS scheduler ({', '.join(sorted(KNOWN_SCHEDULERS))})")
    return value
