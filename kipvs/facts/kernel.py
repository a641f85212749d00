"""Everything sync needs to know about the kernel, read once per sync."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from kipvs.errors import KipvsError
from kipvs.facts.iproute import read_net_facts
from kipvs.facts.ipvsadm import read_rules
from kipvs.model import NetFacts, VirtualServer
from kipvs.runner import Runner

log = logging.getLogger("kipvs.facts")

# IPVS settings kube-router sets on every sync (per network namespace).
IPVS_SYSCTLS = {"net.ipv4.vs.conntrack": "1", "net.ipv4.vs.expire_nodest_conn": "1",
                "net.ipv4.vs.expire_quiescent_template": "1"}


@dataclass(frozen=True)
class KernelFacts:
    net: NetFacts = field(default_factory=NetFacts)
    rules: tuple[VirtualServer, ...] = ()
    sysctls: dict[str, str] = field(default_factory=dict)
    readable: bool = True  # False: the kernel could not be read (dry run on a machine without IPVS or root)


def parse_sysctls(text: str, names: list[str]) -> dict[str, str]:
    return dict(zip(names, (line.strip() for line in text.splitlines())))


def read_kernel(runner: Runner, with_defaults: bool = True) -> KernelFacts:
    # ipvsadm first: it loads ip_vs, which creates the net.ipv4.vs sysctls.
    rules = tuple(read_rules(runner))
    net = read_net_facts(runner, with_defaults=with_defaults)
    names = list(IPVS_SYSCTLS)
    sysctls = parse_sysctls(runner.run(["sysctl", "-n", *names]), names)
    return KernelFacts(net=net, rules=rules, sysctls=sysctls)


def read_kernel_or_empty(runner: Runner) -> KernelFacts:
    """For --dry-run only: where the kernel cannot be read, plan against an empty node and say so."""
    try:
        return read_kernel(runner)
    except KipvsError as exc:
        if not runner.dry_run:
            raise
        log.warning("cannot read the kernel (%s): planning for an empty node", exc)
        return KernelFacts(readable=False)
