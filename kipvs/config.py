"""Options that shape the desired state, shared by sync, show, cleanup and watch."""
from __future__ import annotations

import ipaddress
import math
import os
import re
from dataclasses import dataclass

from kipvs.config_file import RUNTIME_DIR
from kipvs.addresses import parse_network, refusal, special_reason
from kipvs.errors import ConfigError
from kipvs.lock import DEFAULT_LOCK_FILE
from kipvs.model import canonical_ip

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Every scheduler the kernel's IPVS and ipvsadm know.
KNOWN_SCHEDULERS = frozenset({"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf",
                              "mh", "twos"})


IPTABLES_MODES = ("auto", "legacy", "nft")


@dataclass(frozen=True)
class NetfilterOptions:
    """What kipvs writes into netfilter next to IPVS (see kipvs/netfilter)."""

    mode: str = "auto"                      # iptables backend: auto, legacy or nft
    masquerade_all: bool = False            # kube-router's --masquerade-all: SNAT all IPVS-NAT traffic
    cluster_cidrs: tuple[Network, ...] = ()  # kube-proxy's --cluster-cidr: traffic from these is not SNATed
    firewall: bool = True                   # reject what is not a Service port on service addresses


def parse_iptables_mode(value: str) -> str:
    if value not in IPTABLES_MODES:
        raise ConfigError(f"--iptables-mode {value!r}: expected one of {', '.join(IPTABLES_MODES)}")
    return value


@dataclass(frozen=True)
class ProxyOptions:
    interface: str = "kube-dummy-if"
    scheduler: str = "rr"
    node_port_range: tuple[int, int] = (30000, 32767)
    nodeport_bindon_all_ip: bool = False
    nodeport_addresses: tuple[Network, ...] = ()  # kube-proxy's --nodeport-addresses: local addresses inside
    external_ip_ranges: tuple[Network, ...] = ()
    loadbalancer_ip_ranges: tuple[Network, ...] = ()
    strict_external_ip_validation: bool = True
    excluded_cidrs: tuple[Network, ...] = ()
    cluster_ip_ranges: tuple[Network, ...] = ()
    proxy_names: frozenset[str] = frozenset({"kipvs", "kube-router"})
    # None: IPVS only (the library's default); the CLI always builds one (netfilter on by default).
    netfilter: NetfilterOptions | None = None
    # Connection lifecycle (kipvs.draining): a removed TCP/SCTP real server drains at weight 0 while the
    # kernel counts connections to it, for at most graceful_period once its endpoint left the slice.
    graceful_termination: bool = True
    graceful_period: float = 30.0
    drain_record: str | None = None  # where drain start times are kept (None: not kept; unit tests)
    # `ipvsadm --set TCP TCPFIN UDP` in seconds; 0 keeps the kernel's value.
    tcp_timeout: int = 0
    tcpfin_timeout: int = 0
    udp_timeout: int = 0
    strict_arp: bool = True  # arp_ignore=1, arp_announce=2 (kube-router always sets them)

    @property
    def timeouts(self) -> tuple[int, int, int]:
        return (self.tcp_timeout, self.tcpfin_timeout, self.udp_timeout)

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
                networks.append(parse_network(part))
            except ValueError as exc:
                raise ConfigError(f"{option} {part!r} is not a CIDR{refusal(exc)}") from None
    return tuple(networks)


# Names and enumerations are matched whole: `$` would also match before a final newline.
INTERFACE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")
# A Kubernetes object name (RFC 1123 subdomain), as a Node's name must be.
NODE_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


def parse_interface(value: str) -> str:
    """A Linux interface name kipvs may create: 1-15 bytes of [A-Za-z0-9_.-] (it goes into `ip -batch`)."""
    if not INTERFACE_NAME.fullmatch(value) or value in (".", ".."):
        raise ConfigError(f"--interface {value!r}: expected 1-15 characters of A-Z a-z 0-9 _ . -")
    return value


def parse_node_name(value: str) -> str:
    """--node-name / NODE_NAME: a Node's name (lower-case letters, digits, '-' and '.'; at most 253)."""
    if not NODE_NAME.fullmatch(value):
        raise ConfigError(f"--node-name {value!r}: not a Kubernetes node name (lower-case a-z 0-9 - ., "
                          "at most 253 characters)")
    return value


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


def parse_seconds(value: float, option: str, allow_zero: bool = False) -> float:
    """A positive, finite number of seconds (typer lets `nan`, `inf` and negatives through)."""
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{option} {value!r}: expected a positive number of seconds")
    return value


def parse_bool(value: str, option: str) -> bool:
    """kube-router's and kube-proxy's flag style: `--ipvs-strict-arp=false`."""
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on", "t"):
        return True
    if text in ("false", "0", "no", "off", "f"):
        return False
    raise ConfigError(f"{option} {value!r}: expected true or false")


def parse_nodeport_addresses(values: list[str]) -> tuple[Network, ...]:
    """kube-proxy's --nodeport-addresses: CIDRs, or `primary` (the node IPs, which is kipvs's default: ())."""
    parts = [p.strip() for value in values for p in value.split(",") if p.strip()]
    if parts == ["primary"]:
        return ()
    if "primary" in parts:
        raise ConfigError("--nodeport-addresses 'primary' cannot be combined with CIDRs")
    return parse_cidrs(parts, "--nodeport-addresses")


def parse_master(value: str | None) -> str | None:
    """--master: an http(s) URL of the API server."""
    if value is None or value == "":
        return None
    from urllib.parse import urlsplit

    url = urlsplit(value)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ConfigError(f"--master {value!r}: expected the API server's URL, e.g. https://10.0.0.1:6443")
    return value


def parse_node_ips(values: list[str]) -> tuple[str, ...]:
    """--node-ip / KIPVS_NODE_IP: addresses in canonical form, at most one per family."""
    seen: dict[int, str] = {}
    for value in values:
        for part in filter(None, (p.strip() for p in value.split(","))):
            ip = canonical_ip(part)
            if ip is None:
                raise ConfigError(f"--node-ip {part!r} is not an IP address")
            why = special_reason(ip)
            if why:
                raise ConfigError(f"--node-ip {part!r} is {why}: not a node IP")
            family = 6 if ":" in ip else 4
            if family in seen and seen[family] != ip:
                raise ConfigError(f"--node-ip given twice for IPv{family} ({seen[family]}, {ip}): one per family")
            seen[family] = ip
    return tuple(seen.values())


def parse_listen_address(value: str, option: str) -> tuple[str, int]:
    """HOST:PORT, [IPV6]:PORT or :PORT (every address) -> (host, port)."""
    host, sep, port_text = value.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if canonical_ip(host) is None or ":" not in host:
            raise ConfigError(f"{option} {value!r}: [{host}] is not an IPv6 address")
    elif host and canonical_ip(host) is None:
        raise ConfigError(f"{option} {value!r}: expected IP:PORT or [IPv6]:PORT, e.g. 0.0.0.0:9254")
    if not sep or not (port_text.isascii() and port_text.isdigit() and len(port_text) <= 5) or \
            not 0 < int(port_text) < 65536:
        raise ConfigError(f"{option} {value!r}: expected IP:PORT with a port 1-65535, e.g. 0.0.0.0:9254")
    return host or "0.0.0.0", int(port_text)


def metrics_address(addr: str | None, port: int | None) -> str | None:
    """--metrics-addr HOST:PORT, or kube-router's pair: --metrics-addr IP with --metrics-port PORT
    (the port alone: every address, as kube-router listens; port 0: no metrics)."""
    if port is None:
        return addr
    if not 0 <= port <= 65535:
        raise ConfigError(f"--metrics-port {port}: expected 0-65535")
    if port == 0:
        return None
    if not addr:
        return f":{port}"
    host = addr.strip()
    if canonical_ip(host.strip("[]")) is None:
        return addr  # already HOST:PORT: the address names its own port
    return f"[{host.strip('[]')}]:{port}" if ":" in host else f"{host}:{port}"


def check_lock_file(path: str) -> str:
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory) and directory != RUNTIME_DIR:  # kipvs's own directory is made when used
        raise ConfigError(f"--lock-file {path!r}: directory {directory} does not exist")
    return path


@dataclass(frozen=True)
class SourceOptions:
    """Where the cluster comes from and who this node is (sync, show; watch uses the API part)."""

    cluster_file: str | None = None
    kubeconfig: str | None = None
    master: str | None = None  # the API server's URL, overriding the kubeconfig's (--master)
    node_name: str = ""
    node_ips: tuple[str, ...] = ()
    allow_partial: bool = False
    api_timeout: float = 10.0


@dataclass(frozen=True)
class RunOptions:
    """How a changing command runs."""

    dry_run: bool = False
    json: bool = False
    command_timeout: float = 60.0
    lock_file: str = DEFAULT_LOCK_FILE
    lock_timeout: float = 30.0


def parse_duration(value: str, option: str) -> float:
    """Seconds from `300`, `300s`, `5m`, `1h` or `250ms` (kube-router writes durations like 5m0s too)."""
    text, total = value.strip(), 0.0
    units = {"ms": 0.001, "h": 3600, "m": 60, "s": 1}
    if len(text) > 64:  # no duration is longer; the loop below is quadratic in the length
        raise ConfigError(f"{option} {value[:40]!r}...: expected a duration like 300s, 5m or 1h")
    try:
        if text.replace(".", "", 1).isdigit():
            total = float(text)
            text = ""
        while text:
            number = ""
            while text and (text[0].isdigit() or text[0] == "."):
                number, text = number + text[0], text[1:]
            unit = next(u for u in units if text.startswith(u))
            total, text = total + float(number) * units[unit], text[len(unit):]
    except (StopIteration, ValueError):
        raise ConfigError(f"{option} {value!r}: expected a duration like 300s, 5m or 1h") from None
    if not math.isfinite(total):  # 400 digits make a float of inf: a drain that never ends
        raise ConfigError(f"{option} {value[:40]!r}: expected a duration like 300s, 5m or 1h")
    return total


def parse_timeout(value: str, option: str) -> int:
    """An IPVS timeout in whole seconds (`15m`, `900`, `0s`); 0 keeps the kernel's value."""
    seconds = parse_duration(value, option)
    if not math.isfinite(seconds) or seconds < 0 or seconds != int(seconds) or seconds > 2**31 - 1:
        raise ConfigError(f"{option} {value!r}: expected whole seconds, e.g. 900s or 15m (0 keeps the kernel's value)")
    return int(seconds)


@dataclass(frozen=True)
class WatchRequest:
    """The watch-only options, as given on the command line."""

    min_sync_period: str = "200ms"
    sync_period: str = "5m"
    metrics_addr: str | None = None
    health_max_age: str = "15m"
    cleanup_on_exit: bool = False
    healthz_bind_address: str = "0.0.0.0:10256"
    metrics_port: int | None = None  # kube-router's --metrics-port, for an address given without one
    effective_config: str = ""  # where the settings watch runs with are written ('' : nowhere)
