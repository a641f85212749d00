"""Everything sync needs to know about the kernel, read once per sync."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

from kipvs.errors import KipvsError
from kipvs.facts.iproute import read_net_facts
from kipvs.facts.ipvs_timeouts import read_timeouts
from kipvs.facts.ipvsadm import TARGETED_READ_MAX, read_rules, read_services
from kipvs.model import NetFacts, VirtualServer
from kipvs.runner import Runner

log = logging.getLogger("kipvs.facts")

# IPVS settings kube-router sets on every sync (per network namespace).
IPVS_SYSCTLS = {"net.ipv4.vs.conntrack": "1", "net.ipv4.vs.expire_nodest_conn": "1",
                "net.ipv4.vs.expire_quiescent_template": "1"}
# Strict ARP: answer ARP only for addresses of the asking interface, announce with them only.
STRICT_ARP_SYSCTLS = {"net.ipv4.conf.all.arp_ignore": "1", "net.ipv4.conf.all.arp_announce": "2"}
CONN_REUSE_MODE = "net.ipv4.vs.conn_reuse_mode"
OSRELEASE = "kernel.osrelease"  # read only: the kernel version decides conn_reuse_mode
READ_SYSCTLS = (*IPVS_SYSCTLS, *STRICT_ARP_SYSCTLS, CONN_REUSE_MODE, OSRELEASE)


@dataclass(frozen=True)
class KernelFacts:
    net: NetFacts = field(default_factory=NetFacts)
    rules: tuple[VirtualServer, ...] = ()
    sysctls: dict[str, str] = field(default_factory=dict)
    readable: bool = True  # False: the kernel could not be read (dry run on a machine without IPVS or root)
    timeouts: tuple[int, int, int] | None = None  # `ipvsadm -L --timeout`, read only when kipvs sets them


def sysctl_path(name: str) -> str:
    return "/proc/sys/" + name.replace(".", "/")


def read_sysctls(runner: Runner) -> dict[str, str]:
    """Read straight from /proc (this network namespace's values); an absent one reads as unset."""
    values = {}
    for name in READ_SYSCTLS:
        text = runner.read_file(sysctl_path(name))
        if text is not None:
            values[name] = text.strip()
    return values


def reread(runner: Runner, before: KernelFacts, tools: set[str],
           touched: set[tuple] | None = None) -> KernelFacts:
    """Read again only what the tools in `tools` (ip, ipvsadm, sysctl) may have changed; with
    `touched` (the services the ipvsadm lines named), only those services."""
    if "ipvsadm" in tools and touched is not None and len(touched) <= TARGETED_READ_MAX:
        now = read_services(runner, touched)
        rules = [now.pop(vs.key) if vs.key in now else vs for vs in before.rules]
        rules = tuple(vs for vs in rules + list(now.values()) if vs is not None)
    else:
        rules = tuple(read_rules(runner)) if "ipvsadm" in tools else before.rules
    timeouts = read_timeouts(runner) if "ipvsadm" in tools and before.timeouts is not None else before.timeouts
    return replace(before, rules=rules, timeouts=timeouts,
                   net=read_net_facts(runner) if "ip" in tools else before.net,
                   sysctls=read_sysctls(runner) if "sysctl" in tools else before.sysctls)


def read_kernel(runner: Runner) -> KernelFacts:
    # ipvsadm first: it loads ip_vs, which creates the net.ipv4.vs sysctls.
    rules = tuple(read_rules(runner))
    return KernelFacts(net=read_net_facts(runner), rules=rules, sysctls=read_sysctls(runner))


def read_kernel_or_empty(runner: Runner) -> KernelFacts:
    """For --dry-run only: where the kernel cannot be read, plan against an empty node and say so."""
    try:
        return read_kernel(runner)
    except KipvsError as exc:
        if not runner.dry_run:
            raise
        log.warning("cannot read the kernel (%s): planning for an empty node", exc)
        return KernelFacts(readable=False)
