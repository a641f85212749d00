"""Facts from ipvsadm: the rule set (`ipvsadm -S -n`) and counters (`-L -n`, `--rate`)."""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

from kipvs.errors import CommandFailed
from kipvs.gc_pause import gc_paused
from kipvs.model import FORWARD_FLAG, HOST_NETMASK, PROTOCOL_FLAG, RealServer, VirtualServer
from kipvs.runner import Runner

READ_RULES = ["ipvsadm", "-S", "-n"]
READ_CONNECTIONS = ["ipvsadm", "-L", "-n", "--exact"]
READ_RATES = ["ipvsadm", "-L", "-n", "--rate", "--exact"]

_PROTOCOL_OF_FLAG = {flag: proto for proto, flag in PROTOCOL_FLAG.items()}
_PROTOCOL_OF_FLAG.update({"--tcp-service": "tcp", "--udp-service": "udp", "-f": "fwmark", "--fwmark-service": "fwmark"})
_FORWARD_OF_FLAG = {flag: name for name, flag in FORWARD_FLAG.items()}
_LIST_PROTOCOL = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp", "FWM": "fwmark"}


def split_host_port(text: str) -> tuple[str, int]:
    """`10.0.0.1:80` or `[fd00::1]:80`."""
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
    else:
        host, _, port = text.rpartition(":")
    return host, int(port)


# Every option an `ipvsadm -S` (or `-R` input) line can carry, long and short, by what it sets.
# Source: ipvsadm 1.31 print_service_entry/print_tunnel_rule and its man page.
_ALIASES = {"--scheduler": "-s", "--sched-flags": "-b", "--persistent": "-p", "--netmask": "-M",
            "--real-server": "-r", "--weight": "-w", "--u-threshold": "-x", "--l-threshold": "-y",
            "--ops": "-o", "--ipv6": "-6", "--masquerading": "-m", "--gatewaying": "-g", "--ipip": "-i"}
_VALUED = {"-s", "-b", "-p", "-M", "-r", "-w", "-x", "-y", "--pe", "--tun-type", "--tun-port"}
_OPTIONAL_VALUE = {"-p"}  # `-p` alone means the default timeout
_TUN_CSUM = ("--tun-nocsum", "--tun-csum", "--tun-remcsum")
DEFAULT_PERSISTENCE = 300  # ipvsadm's default for a bare -p


def _fields(tokens: list[str]) -> dict[str, str]:
    """Options of one line in a single pass: {"-s": "rr", "-m": ""}; the service is under "service"."""
    fields: dict[str, str] = {}
    i, n = 1, len(tokens)
    while i < n:
        token = _ALIASES.get(tokens[i], tokens[i])
        if token in _PROTOCOL_OF_FLAG:
            fields["proto"], fields["service"] = token, tokens[i + 1]
            i += 2
        elif token in _OPTIONAL_VALUE and (i + 1 >= n or tokens[i + 1].startswith("-")):
            fields[token] = ""
            i += 1
        elif token in _VALUED:
            fields[token] = tokens[i + 1] if i + 1 < n else ""
            i += 2
        else:
            fields[token] = ""
            i += 1
    return fields


def parse_line(tokens: list[str]) -> tuple[tuple[str, str, int], dict[str, str]]:
    """The service key and the options of one ipvsadm line (its first token, the operation, aside)."""
    fields = _fields(tokens)
    proto = _PROTOCOL_OF_FLAG[fields["proto"]]
    if proto == "fwmark":
        return ("fwmark", "::" if "-6" in fields else "", int(fields["service"])), fields
    return (proto, *split_host_port(fields["service"])), fields


def _netmask(value: str | None, family: int) -> str | None:
    """None for the host mask (the default ipvsadm leaves out)."""
    if not value or value == HOST_NETMASK[family]:
        return None
    return value


def service_of(key: tuple[str, str, int], fields: dict[str, str]) -> VirtualServer:
    flags = fields.get("-b")
    persistent = fields.get("-p")
    vs = VirtualServer(key[0], key[1], key[2])
    return replace(vs, scheduler=fields.get("-s") or "wlc", flags=tuple(flags.split(",")) if flags else (),
                   persistent=(int(persistent) if persistent else DEFAULT_PERSISTENCE) if "-p" in fields else None,
                   netmask=_netmask(fields.get("-M"), vs.family) if "-p" in fields else None,
                   pe=fields.get("--pe") or None, one_packet="-o" in fields)


def real_server_of(fields: dict[str, str]) -> RealServer:
    ip, port = split_host_port(fields["-r"])
    forward = next((_FORWARD_OF_FLAG[f] for f in fields if f in _FORWARD_OF_FLAG), "route")
    tunnel = forward == "tunnel"
    return RealServer(ip, port, int(fields.get("-w") or 1), forward,
                      u_threshold=int(fields.get("-x") or 0), l_threshold=int(fields.get("-y") or 0),
                      tun_type=(fields.get("--tun-type") or "ipip") if tunnel else None,  # ipip: the default
                      tun_port=int(fields["--tun-port"]) if tunnel and fields.get("--tun-port") else None,
                      tun_csum=next((f for f in _TUN_CSUM if f in fields), None) if tunnel else None)


def parse_rules(text: str) -> list[VirtualServer]:
    """`ipvsadm -S -n` output (the same lines `ipvsadm -R` takes) into virtual servers, in kernel order."""
    with gc_paused():  # hundreds of thousands of real servers at once (kipvs.gc_pause)
        return _parse_rules(text)


def _parse_rules(text: str) -> list[VirtualServer]:
    services: dict[tuple[str, str, int], VirtualServer] = {}
    real: dict[tuple[str, str, int], list[RealServer]] = {}
    for line in text.splitlines():
        tokens = line.split()  # ipvsadm never quotes: split() is exact and much faster than shlex
        if not tokens:
            continue
        key, fields = parse_line(tokens)
        if tokens[0] in ("-A", "--add-service"):
            services[key] = service_of(key, fields)
            real.setdefault(key, [])
        elif tokens[0] in ("-a", "--add-server"):
            real.setdefault(key, []).append(real_server_of(fields))
    return [replace(vs, real_servers=tuple(real.get(key, ()))) for key, vs in services.items()]


@dataclass(frozen=True)
class Counters:
    """Per virtual or real server, from `ipvsadm -L -n` and `--rate`."""

    active: int = 0
    inactive: int = 0
    cps: int = 0
    in_bps: int = 0
    out_bps: int = 0


_SERVICE_LINE = re.compile(r"^(TCP|UDP|SCTP|FWM)\s+(\S+)\s*(.*)$")
_REAL_LINE = re.compile(r"^\s+->\s+(\S+)\s+(.*)$")


def _walk_list(text: str):
    """Yield (service key, real server key or None, remaining columns) from `ipvsadm -L -n` style output."""
    service = None
    for line in text.splitlines():
        if m := _SERVICE_LINE.match(line):
            proto, columns = _LIST_PROTOCOL[m.group(1)], m.group(3).split()
            if proto == "fwmark":
                ipv6 = columns[:1] == ["IPv6"]  # `FWM  42 IPv6 rr`
                service, columns = ("fwmark", "::" if ipv6 else "", int(m.group(2))), columns[ipv6:]
            else:
                service = (proto, *split_host_port(m.group(2)))
            yield service, None, columns
        elif service and (m := _REAL_LINE.match(line)) and m.group(1) != "RemoteAddress:Port":
            yield service, split_host_port(m.group(1)), m.group(2).split()


def parse_connections(text: str) -> dict[tuple, Counters]:
    """ActiveConn / InActConn per real server from `ipvsadm -L -n`, keyed (service key, real key)."""
    counters = {}
    for service, real, columns in _walk_list(text):
        if real is not None and len(columns) >= 4:
            counters[(service, real)] = Counters(active=int(columns[2]), inactive=int(columns[3]))
    return counters


def parse_rates(text: str) -> dict[tuple, Counters]:
    """CPS / InBPS / OutBPS per service (real None) and real server from `ipvsadm -L -n --rate`."""
    rates = {}
    for service, real, columns in _walk_list(text):
        if len(columns) >= 5:
            rates[(service, real)] = Counters(cps=int(columns[0]), in_bps=int(columns[3]), out_bps=int(columns[4]))
    return rates


def read_rules(runner: Runner) -> list[VirtualServer]:
    return parse_rules(runner.run(READ_RULES))


_FORWARD_OF_LISTING = {"Masq": "masq", "Route": "route", "Local": "route", "Tunnel": "tunnel"}


def _listed_service(key: tuple[str, str, int], columns: list[str]) -> VirtualServer:
    """`rr (flag-1) persistent 3600 mask 32.0.0.0 pe sip ops`: the listing's words for -s -b -p -M --pe -o."""
    def after(word: str) -> str | None:
        return columns[columns.index(word) + 1] if word in columns[:-1] else None

    vs = VirtualServer(*key, scheduler=columns[0] if columns else "wlc")
    flags = next((c.strip("()").split(",") for c in columns[1:] if c.startswith("(")), [])
    persistent = after("persistent")
    return replace(vs, flags=tuple(flags), persistent=int(persistent) if persistent else None,
                   netmask=_netmask(after("mask"), vs.family) if persistent else None,
                   pe=after("pe"), one_packet="ops" in columns[1:])


def parse_listing(text: str) -> list[VirtualServer]:
    """`ipvsadm -L -n --exact [-t SERVICE]` into virtual servers (used to verify a few services cheaply)."""
    services: dict[tuple, VirtualServer] = {}
    real: dict[tuple, list[RealServer]] = {}
    for key, real_key, columns in _walk_list(text):
        if real_key is None:
            services[key] = _listed_service(key, columns)
            real[key] = []
        elif len(columns) >= 2:
            forward = _FORWARD_OF_LISTING.get(columns[0], "route")
            # Without --tun-info the listing does not name the tunnel type: the default one is assumed.
            real[key].append(RealServer(real_key[0], real_key[1], int(columns[1]), forward,
                                        tun_type="ipip" if forward == "tunnel" else None))
    return [replace(vs, real_servers=tuple(real[key])) for key, vs in services.items()]


def service_key_of_line(line: str) -> tuple[str, str, int]:
    """The service an `ipvsadm -R` line acts on."""
    return parse_line(line.split())[0]


# Up to this many services are read one by one (`ipvsadm -L -t VIP:PORT`) instead of listing the whole
# table: a change among thousands of services then costs a few small processes.
TARGETED_READ_MAX = 8


def list_service(runner: Runner, key: tuple[str, str, int]) -> str | None:
    """`ipvsadm -L -n --exact` of one service (None: the kernel has no such service)."""
    try:
        return runner.run(READ_CONNECTIONS + VirtualServer(*key).service_args().split())
    except CommandFailed as exc:
        if "no such service" not in exc.stderr.lower():
            raise
        return None


def read_services(runner: Runner, keys: set[tuple[str, str, int]]) -> dict[tuple, VirtualServer | None]:
    """Each service as the kernel has it now (None: absent), one `ipvsadm -L` each."""
    found: dict[tuple, VirtualServer | None] = {}
    for key in keys:
        text = list_service(runner, key)
        listed = parse_listing(text) if text is not None else []
        found[key] = listed[0] if listed else None
    return found
