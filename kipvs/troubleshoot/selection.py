"""`kipvs show --service/--namespace/--vip`: keep only what an operator asked about.

Filters narrow what is shown; `in_sync` (and `show --check`) still speak for the whole node."""
from __future__ import annotations

from dataclasses import dataclass

from kipvs.errors import ConfigError
from kipvs.model import canonical_ip


@dataclass(frozen=True)
class ShowFilter:
    service: tuple[str, str] | None = None  # (namespace, name)
    namespace: str | None = None
    address: str | None = None
    port: int | None = None

    @property
    def empty(self) -> bool:
        return self == ShowFilter()


def parse_address(text: str, flag: str) -> tuple[str, int | None]:
    """VIP, VIP:PORT, IPv6 VIP or [IPv6]:PORT, in any spelling of the address."""
    host, port = text, None
    if text.startswith("[") and "]" in text:
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ConfigError(f"{flag} {text!r}: expected [IPv6]:PORT")
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    ip = canonical_ip(host)
    if ip is None:
        raise ConfigError(f"{flag} {text!r}: {host!r} is not an IP address (expected VIP or VIP:PORT, "
                          "e.g. 10.254.0.20:80 or [fd00::20]:80)")
    if port is None:
        return ip, None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{flag} {text!r}: port {port!r} is not a number from 1 to 65535")
    return ip, int(port)


def parse_filter(service: str | None, namespace: str | None, vip: str | None) -> ShowFilter:
    ref = None
    if service is not None:
        ns, slash, name = service.partition("/")
        if not slash or not ns or not name or "/" in name:
            raise ConfigError(f"--service {service!r}: expected NAMESPACE/NAME, e.g. default/web")
        ref = (ns, name)
    address, port = parse_address(vip, "--vip") if vip is not None else (None, None)
    return ShowFilter(ref, namespace or None, address, port)


def _vs_wanted(vs: dict, selection: ShowFilter) -> bool:
    return (selection.address is None or vs["address"] == selection.address) and \
        (selection.port is None or vs["port"] == selection.port)


def filter_report(report: dict, selection: ShowFilter) -> dict:
    if selection.empty:
        return report
    services = []
    for svc in report["services"]:
        if selection.service and (svc["namespace"], svc["name"]) != selection.service:
            continue
        if selection.namespace and svc["namespace"] != selection.namespace:
            continue
        servers = [vs for vs in svc["virtual_servers"] if _vs_wanted(vs, selection)]
        if servers or selection.address is None:
            services.append({**svc, "virtual_servers": servers})
    by_service = selection.service is not None or selection.namespace is not None
    addresses = {vs["address"] for svc in services for vs in svc["virtual_servers"]}
    return {**report, "services": services,
            # Without the cluster nothing says which Service a virtual server is: a Service filter keeps none.
            "virtual_servers": [] if by_service else [vs for vs in report["virtual_servers"]
                                                       if _vs_wanted(vs, selection)],
            "routes": [r for r in report["routes"]
                       if (selection.address is None or r["address"] == selection.address)
                       and (not by_service or r["address"] in addresses)],
            "filter": {"service": "/".join(selection.service) if selection.service else None,
                       "namespace": selection.namespace, "address": selection.address, "port": selection.port}}
