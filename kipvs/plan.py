"""Desired state vs kernel facts -> the minimal ordered batches of commands. Ownership lives here.

kipvs owns a virtual server when its address is on kipvs's dummy interface (or
is a service address kipvs is adding there), or when it is a NodePort-style
service: a port inside --service-node-port-range on one of this host's own
addresses. Firewall-mark services, --excluded-cidrs and everything else in the
kernel are never touched. A converged node gives an empty plan.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

from kipvs.config import ProxyOptions
from kipvs.desired import Desired
from kipvs.facts.kernel import CONN_REUSE_MODE, IPVS_SYSCTLS, OSRELEASE, STRICT_ARP_SYSCTLS, KernelFacts
from kipvs.gc_pause import gc_paused
from kipvs.model import LocalRoute, NetFacts, RealServer, VirtualServer, host_port, known_family
from kipvs.routes import check_routes, delete_line, fresh_route_line
from kipvs.runner import Batch


@dataclass
class Plan:
    batches: list[Batch] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    held: int = 0  # stale virtual servers and addresses not removed: a Service's addresses could not be read
    removed: frozenset = frozenset()  # keys of the virtual servers the ipvsadm batch deletes

    @property
    def empty(self) -> bool:
        return not any(b.lines for b in self.batches)

    def command_lines(self) -> list[str]:
        return [line for b in self.batches for line in b.command_lines()]

    @property
    def command_count(self) -> int:
        """len(command_lines()), without building them."""
        return sum(len(b.lines) for b in self.batches)

    def summary(self) -> str:
        if self.empty:
            return "nothing to change"
        return ", ".join(f"{n} {what}" for what, n in sorted(self.counts.items()) if n)


def owned_addresses(net: NetFacts, desired: Desired, interface: str) -> set[str]:
    return {a.ip for a in net.addresses_on(interface) if not a.is_link_local} | set(desired.addresses)


def is_owned(vs: VirtualServer, dummy_ips: set[str], node_addresses: set[str], options: ProxyOptions) -> bool:
    if vs.protocol == "fwmark" or options.excluded(vs.ip):
        return False
    if vs.ip in dummy_ips:
        return True
    low, high = options.node_port_range
    return vs.ip in node_addresses and low <= vs.port <= high


def _real_server_line(op: str, vs: VirtualServer, rs: RealServer) -> str:
    if op == "-d":
        return f"-d {vs.service_args()} -r {host_port(rs.ip, rs.port)}"
    return f"{op} {vs.service_args()} -r {host_port(rs.ip, rs.port)} {rs.options_args()}"


class Unwanted(NamedTuple):
    stale: list[VirtualServer]    # kipvs's own: sync removes them
    foreign: list[VirtualServer]  # not kipvs's: nobody touches them
    held: list[VirtualServer]     # kipvs's own, kept while a Service cannot be read (Desired.holding)


def unwanted(desired: Desired, kernel: KernelFacts, options: ProxyOptions) -> Unwanted:
    """Kernel virtual servers the cluster does not want. Those of a broken Service's addresses (or
    the ones it had when it could last be read) are none of these: they are simply kept."""
    dummy_ips = owned_addresses(kernel.net, desired, options.interface)
    node_addresses = {a.ip for a in kernel.net.addresses if a.interface != options.interface} | \
        set(desired.node_ips.values())
    wanted = {vs.key for vs in desired.virtual_servers}
    stale, foreign, held = [], [], []
    for vs in kernel.rules:
        if vs.key in wanted:
            continue
        if not is_owned(vs, dummy_ips, node_addresses, options):
            foreign.append(vs)
        elif vs.ip not in desired.protected_addresses and vs.key not in desired.protected_keys:
            (held if desired.holding else stale).append(vs)
    return Unwanted(stale, foreign, held)


def plan_ipvs(desired: Desired, kernel: KernelFacts, options: ProxyOptions, plan: Plan) -> list[str]:
    stale, _, held = unwanted(desired, kernel, options)
    lines = [f"-D {vs.service_args()}" for vs in stale]
    plan.counts["virtual servers removed"] += len(lines)
    plan.held += len(held)
    plan.removed = plan.removed | {vs.key for vs in stale}
    current = {vs.key: vs for vs in kernel.rules}
    for vs in desired.virtual_servers:
        have = current.get(vs.key)
        if have is None:
            lines.append(f"-A {vs.service_args()} {vs.options_args()}")
            head = f"-a {vs.service_args()} -r "  # _real_server_line, inlined: a full sync's 500,000 lines
            lines += [f"{head}{host_port(rs.ip, rs.port)} {rs.options_args()}" for rs in vs.real_servers]
            plan.counts["virtual servers added"] += 1
            plan.counts["real servers added"] += len(vs.real_servers)
            continue
        if not vs.same_options(have):
            # -E keeps the service and its connections; delete+add would drop them.
            lines.append(f"-E {vs.service_args()} {vs.options_args()}")
            plan.counts["virtual servers edited"] += 1
        theirs = {rs.key: rs for rs in have.real_servers}
        ours = {rs.key: rs for rs in vs.real_servers}
        for key, rs in theirs.items():
            if key not in ours:
                lines.append(_real_server_line("-d", vs, rs))
                plan.counts["real servers removed"] += 1
        for key, rs in ours.items():
            if key not in theirs:
                lines.append(_real_server_line("-a", vs, rs))
                plan.counts["real servers added"] += 1
            elif not theirs[key].same_options(rs):
                lines.append(_real_server_line("-e", vs, rs))
                plan.counts["real servers edited"] += 1
    return lines


def _prefix(ip: str) -> int:
    return 32 if known_family(ip) == 4 else 128


def plan_addresses(desired: Desired, net: NetFacts, options: ProxyOptions, plan: Plan,
                   remove_link: bool = False) -> list[str]:
    interface = options.interface
    lines: list[str] = []
    present = {a.ip: a for a in net.addresses_on(interface) if not a.is_link_local}
    if desired.addresses and interface not in net.interfaces:
        lines += [f"link add {interface} type dummy", f"link set {interface} up"]
        plan.counts["interfaces created"] += 1
    elif desired.addresses and interface not in net.up_interfaces:
        lines.append(f"link set {interface} up")
    added = [ip for ip in desired.addresses if ip not in present]
    for ip in added:
        lines.append(f"addr add {ip}/{_prefix(ip)} dev {interface}" + (" nodad" if known_family(ip) == 6 else ""))
    plan.counts["addresses added"] += len(added)
    # A new IPv4 address gets its local route (source = the VIP) at once: repair it in the same batch,
    # by replacing it when it is the only route the address will have (see fresh_route_line).
    # IPv6 inserts its route later, from a work queue; sync_once waits for it and repairs it then.
    routed = {r.dst for r in net.local_routes}
    fresh = {ip for ip in added if known_family(ip) == 4 and ip not in routed}
    routes = list(net.local_routes) + [LocalRoute("local", ip, interface, ip, "kernel", "host", 0)
                                       for ip in added if known_family(ip) == 4]
    checks = check_routes(list(desired.addresses), interface, desired.node_ips,
                          NetFacts(net.addresses, net.interfaces, net.up_interfaces, tuple(routes)))
    for check in checks:
        if check.vip in fresh and check.add:
            lines.append(fresh_route_line(check.vip, interface, check.node_ip))
        else:
            lines += check.lines
    plan.counts["routes fixed"] += sum(1 for c in checks if c.lines)
    wanted = set(desired.addresses)
    stale = [a for ip, a in present.items()
             if ip not in wanted and ip not in desired.protected_addresses and not options.excluded(ip)]
    if desired.holding:
        plan.held += len(stale)
        stale = []
    for address in stale:
        # The kernel removes only the local route it made; the one with the node IP as source would stay
        # behind. It goes first: after the address, the kernel may already have taken it (IPv6), and the
        # delete would fail on a run that in fact succeeded.
        lines += [delete_line(r) for r in net.local_routes
                  if r.type == "local" and r.dst == address.ip and r.dev == interface and r.prefsrc != address.ip]
        lines.append(f"addr del {address.ip}/{address.prefixlen} dev {interface}")
    plan.counts["addresses removed"] += len(stale)
    if remove_link and interface in net.interfaces and len(stale) == len(present) and \
            net.kinds.get(interface, "dummy") == "dummy":
        lines.append(f"link del {interface}")
        plan.counts["interfaces removed"] += 1
    return lines


def kernel_version(release: str | None) -> tuple[int, int] | None:
    """(6, 1) from `6.1.0-18-amd64`; None when unknown."""
    parts = (release or "").strip().split(".")
    try:
        return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or "x")
    except (IndexError, ValueError):
        return None


def conn_reuse_mode(release: str | None) -> str | None:
    """kube-proxy's rule: 0 on kernels 4.1 to 5.8 (a reused source port would otherwise be sent to a
    removed real server, or stall 1 s on kernels before 5.9); 5.9 and later fixed that: left alone."""
    version = kernel_version(release)
    if version is None or version < (4, 1) or version >= (5, 9):
        return None
    return "0"


def wanted_sysctls(kernel: KernelFacts, options: ProxyOptions) -> dict[str, str]:
    wanted = dict(IPVS_SYSCTLS)
    if options.strict_arp:
        wanted.update(STRICT_ARP_SYSCTLS)
    reuse = conn_reuse_mode(kernel.sysctls.get(OSRELEASE))
    if reuse is not None:
        wanted[CONN_REUSE_MODE] = reuse
    return wanted


def plan_sysctls(kernel: KernelFacts, plan: Plan, options: ProxyOptions) -> list[str]:
    lines = [f"{name}={value}" for name, value in wanted_sysctls(kernel, options).items()
             if kernel.sysctls.get(name) != value]
    plan.counts["sysctls set"] += len(lines)
    return lines


def plan_timeouts(kernel: KernelFacts, options: ProxyOptions, plan: Plan) -> list[str]:
    """`--set TCP TCPFIN UDP` when a configured timeout differs from the kernel's (0 leaves one as it is,
    for kipvs and for ipvsadm alike)."""
    if kernel.timeouts is None or not any(options.timeouts):
        return []
    if all(want in (0, have) for want, have in zip(options.timeouts, kernel.timeouts)):
        return []
    plan.counts["ipvs timeouts set"] += 1
    return ["--set " + " ".join(str(t) for t in options.timeouts)]


def plan_sync(desired: Desired, kernel: KernelFacts, options: ProxyOptions) -> Plan:
    with gc_paused():
        return _plan_sync(desired, kernel, options)


def _plan_sync(desired: Desired, kernel: KernelFacts, options: ProxyOptions) -> Plan:
    plan = Plan()
    ip_lines = plan_addresses(desired, kernel.net, options, plan)
    ipvs_lines = plan_ipvs(desired, kernel, options, plan) + plan_timeouts(kernel, options, plan)
    plan.batches = [Batch("ip", tuple(ip_lines)), Batch("ipvsadm", tuple(ipvs_lines)),
                    Batch("sysctl", tuple(plan_sysctls(kernel, plan, options)))]
    return plan


def plan_cleanup(kernel: KernelFacts, options: ProxyOptions) -> Plan:
    """Remove what kipvs owns: its virtual servers first, then its addresses and the empty dummy interface."""
    plan = Plan()
    nothing = Desired()
    ipvs_lines = plan_ipvs(nothing, kernel, options, plan)
    ip_lines = plan_addresses(nothing, kernel.net, options, plan, remove_link=True)
    plan.batches = [Batch("ipvsadm", tuple(ipvs_lines)), Batch("ip", tuple(ip_lines))]
    return plan
