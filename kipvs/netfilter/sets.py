"""kipvs's ipsets: what each holds, its name per family, and its members rendered from typed values in
the exact form `ipset save` prints them back (so a converged node compares equal and writes nothing).

The per-Service data of the netfilter rules lives here, not in rule lists: a packet meets a handful
of rules whose set lookups are hashes, whatever the number of Services (kube-proxy IPVS mode's
KUBE-CLUSTER-IP / KUBE-LOOP-BACK / KUBE-LOAD-BALANCER-SOURCE-CIDR, kube-router's kube-router-svip-prt).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from kipvs.addresses import address_token, network_token

PREFIX = "KIPVS-"  # chains and sets of this name are kipvs's

# Short names: ipset's limit is 31 characters; the IPv6 twin ends in "6".
SERVICE_IPS = "SERVICE-IPS"          # hash:ip: every service address (the filter jump's gate)
SERVICE_PORTS = "SERVICE-PORTS"      # hash:ip,port: address,proto:port the firewall lets through
RANGED_PORTS = "RANGED-PORTS"        # hash:ip,port: LB address,proto:port with loadBalancerSourceRanges
RANGED_SOURCES = "RANGED-SOURCES"    # hash:ip,port,net: LB address,proto:port,allowed source range
CLUSTER_IPS = "CLUSTER-IPS"          # hash:ip,port: ClusterIP virtual servers (SNAT unless local traffic)
EXTERNAL = "EXTERNAL"                # hash:ip,port: NodePort/external/LB virtual servers, Cluster policy
HAIRPIN = "HAIRPIN"                  # hash:ip,port,ip: local endpoint,proto:port,itself

KINDS = {SERVICE_IPS: "hash:ip", SERVICE_PORTS: "hash:ip,port", RANGED_PORTS: "hash:ip,port",
         RANGED_SOURCES: "hash:ip,port,net", CLUSTER_IPS: "hash:ip,port", EXTERNAL: "hash:ip,port",
         HAIRPIN: "hash:ip,port,ip"}
FAMILY = {4: "inet", 6: "inet6"}
# 65536 (ipset's default) is too few for 10,000 Services of several ports on several addresses.
MAXELEM = 1048576

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def set_name(base: str, family: int) -> str:
    return f"{PREFIX}{base}{'6' if family == 6 else ''}"


def create_line(base: str, family: int) -> str:
    return f"create {set_name(base, family)} {KINDS[base]} family {FAMILY[family]} maxelem {MAXELEM}"


def address(ip: Address) -> str:
    return address_token(ip.compressed)  # inet_ntop's form, as ipset prints it; no scope id survives


def port(protocol: str, number: int) -> str:
    if protocol not in ("tcp", "udp", "sctp") or not 0 <= number <= 65535:
        raise ValueError(f"no ipset port for {protocol} {number}")
    return f"{protocol}:{int(number)}"


def network(net: Network) -> list[str]:
    """A source range as hash:net members: a host is printed bare; /0 is not a valid hash:net prefix,
    so the whole space is its two halves (as kube-proxy does)."""
    if net.prefixlen == 0:
        return [m for half in net.subnets(prefixlen_diff=1) for m in network(half)]
    if net.prefixlen == net.max_prefixlen:
        return [address_token(net.network_address.compressed)]
    return [network_token(net)]


def ip_port(ip: Address, protocol: str, number: int) -> str:
    return f"{address(ip)},{port(protocol, number)}"


@dataclass(frozen=True)
class SetContents:
    """One family's sets: base name -> members, for the sets the rules of that family reference."""

    family: int
    members: dict[str, frozenset[str]]

    def names(self) -> dict[str, str]:
        return {set_name(base, self.family): base for base in self.members}
