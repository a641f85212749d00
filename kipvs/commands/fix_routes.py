"""`kipvs fix-routes`: one-shot repair of the local routes of the dummy interface's addresses.

Safe on any IPVS node (kube-router's kube-dummy-if, kube-proxy's kube-ipvs0): it runs in
phases and reads the kernel between them, so a route is deleted only when its replacement
is read back (a failed add leaves the VIP as it was), and a repaired route whose address
was withdrawn meanwhile is removed before it can keep answering on that address.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

from kipvs.config import RunOptions
from kipvs.environment import Environment
from kipvs.errors import ConfigError, ExitStatus
from kipvs.facts.iproute import read_net_facts
from kipvs.lock import writer_lock
from kipvs.model import NetFacts, family_of
from kipvs.output import emit_json, summary
from kipvs.routes import FLUSH_UNRESOLVED_NEIGHBOURS, RepairPlan, assume_added, delete_line, other_devices, \
    plan_repair, resolve_node_ips, service_addresses_on
from kipvs.runner import Batch, Runner

log = logging.getLogger("kipvs.fix_routes")


@dataclass
class FixRoutesReport:
    interface: str
    node_ips: dict[int, str]
    dry_run: bool
    checked: int = 0
    already_correct: int = 0
    fixed: int = 0
    stale_removed: int = 0
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    changes: list[dict] = field(default_factory=list)  # per address: what changes (or would, in a dry run)

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        head = f"fix-routes: {self.interface}: {self.checked} service address(es) checked"
        if self.dry_run:
            text = f"{head}, {len(self.commands)} command(s) planned (dry run), {self.already_correct} already correct"
        else:
            text = f"{head}, {self.fixed} fixed, {self.already_correct} already correct"
        if self.stale_removed:
            text += f", {self.stale_removed} stale route(s) " + ("to remove" if self.dry_run else "removed")
        if self.skipped:
            text += f", {len(self.skipped)} skipped ({self.interface} is down)"
        if self.failed:
            text += f", {len(self.failed)} still wrong: {', '.join(self.failed)}"
        if not self.commands:
            text += "; nothing to change"
        return text

    def to_json(self) -> dict:
        data = asdict(self)
        data["node_ips"] = {f"ipv{k}": v for k, v in self.node_ips.items()}
        data["ok"] = self.ok
        return data


def describe(plan: RepairPlan, then: RepairPlan) -> list[dict]:
    """Per address, what changes: `plan`'s adds, then `then`'s removals (planned once the adds are in)."""
    removals = {c.vip: list(c.remove) for c in then.checks}
    changes = [{"address": c.vip, "change": "repair", "lines": list(c.add) + removals.get(c.vip, [])}
               for c in plan.checks if c.lines]
    changes += [{"address": c.vip, "change": "repair", "lines": list(c.remove)}
                for c in then.checks if c.remove and not any(x["address"] == c.vip for x in changes)]
    changes += [{"address": r.dst, "change": "remove stale route", "lines": [delete_line(r)]} for r in plan.orphans]
    changes += [{"address": vip, "change": "skipped: interface down", "lines": []} for vip in plan.skipped]
    return changes


def _node_ips(facts: NetFacts, interface: str, node_ip_args: list[str]) -> dict[int, str]:
    node_ips = resolve_node_ips(node_ip_args, facts, interface=interface)
    missing = sorted({family_of(vip) for vip in service_addresses_on(facts, interface)} - set(node_ips))
    if missing:
        family = missing[0]
        raise ConfigError(f"{interface} holds IPv{family} service addresses but this node has no IPv{family} "
                          f"node IP (no --node-ip and no IPv{family} default route): pass --node-ip")
    return node_ips


def _warn(plan: RepairPlan, facts: NetFacts, interface: str) -> None:
    if plan.skipped:
        log.warning("%s is down: the kernel refuses IPv6 routes through a down device, so %s keep their "
                    "routes as they are", interface, ", ".join(plan.skipped))
    for check in plan.checks:
        others = other_devices(facts, check.vip, interface)
        if check.lines and others:
            log.warning("%s is also on %s: only %s's route is changed", check.vip, ", ".join(others), interface)


KNOWN_INTERFACES = {"kube-dummy-if": "kube-router's and kipvs's", "kube-ipvs0": "kube-proxy's (IPVS mode)"}


def missing_interface(interface: str, facts) -> str:
    """Why there is nothing to repair, and the --interface that would find something (never the one given)."""
    dummies = sorted(name for name, kind in facts.kinds.items() if kind == "dummy" and name != interface)
    text = f"interface {interface} does not exist on this node"
    if dummies:
        return text + f"; its dummy interfaces: {', '.join(dummies)}: pass --interface {dummies[0]}"
    others = [f"{KNOWN_INTERFACES[name]} is {name} (--interface {name})" for name in KNOWN_INTERFACES
              if name != interface]
    return text + ", nor any other dummy interface: is kube-router, kube-proxy (IPVS mode) or kipvs running here? " + \
        "; ".join(others)


def fix_routes(runner: Runner, interface: str, node_ip_args: list[str]) -> FixRoutesReport:
    facts = read_net_facts(runner)
    if interface not in facts.interfaces:
        raise ConfigError(missing_interface(interface, facts))
    node_ips = _node_ips(facts, interface, node_ip_args)
    first = plan_repair(facts, interface, node_ips)
    _warn(first, facts, interface)
    # The removals that will follow once the added routes are read back (what a dry run shows).
    then = plan_repair(assume_added(facts, first, interface), interface, node_ips)
    report = FixRoutesReport(interface, node_ips, runner.dry_run, checked=len(first.checks) + len(first.skipped),
                             already_correct=sum(c.correct for c in first.checks), skipped=first.skipped,
                             changes=describe(first, then))
    # Once an IPv4 route is repaired (its wrong twin gone), unresolved neighbours go too: see routes.py.
    flush = (FLUSH_UNRESOLVED_NEIGHBOURS,) if any(c.lines and c.family == 4 for c in first.checks) else ()
    if runner.dry_run:
        lines = first.add_lines + then.remove_lines + flush
        report.commands = Batch("ip", lines).command_lines()
        report.stale_removed = len(then.orphans)
        runner.apply([Batch("ip", lines)])
        return report
    now, plan = facts, first
    # Phase 1 adds; phase 2 removes what is wrong once the added routes are read back; phase 3
    # removes a route added for an address withdrawn during the run. Each phase runs once.
    for phase in ("add", "remove", "stale"):
        lines = plan.add_lines if phase == "add" else \
            plan.remove_lines if phase == "remove" else tuple(delete_line(r) for r in plan.orphans)
        if lines:
            runner.apply([Batch("ip", lines)])
            report.commands += Batch("ip", lines).command_lines()
            report.stale_removed += len(plan.orphans) if phase != "add" else 0
            now = read_net_facts(runner)
            plan = plan_repair(now, interface, node_ips)
    if flush:
        runner.apply([Batch("ip", flush)])
        report.commands += Batch("ip", flush).command_lines()
    final = {c.vip: c for c in plan.checks}
    report.failed = [vip for vip, c in final.items() if not c.correct]
    report.fixed = sum(1 for c in first.checks if c.lines and c.vip in final and final[c.vip].correct)
    return report


def run_fix_routes(env: Environment, interface: str, node_ips: tuple[str, ...], run: RunOptions) -> ExitStatus:
    runner = env.runner(run.dry_run, run.command_timeout, collect=run.json)
    with writer_lock(run.dry_run, run.lock_file, run.lock_timeout):
        report = fix_routes(runner, interface, list(node_ips))
    if run.json:
        emit_json(env, report.to_json())
    else:
        summary(env, report.summary())
    return ExitStatus.OK if report.ok else ExitStatus.DRIFT
