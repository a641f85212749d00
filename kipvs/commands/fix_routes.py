"""`kipvs fix-routes`: one-shot repair of the local routes of the dummy interface's addresses."""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

from kipvs.config import RunOptions
from kipvs.environment import Environment
from kipvs.errors import ConfigError, ExitStatus
from kipvs.lock import writer_lock
from kipvs.output import emit_json, summary
from kipvs.facts.iproute import read_net_facts
from kipvs.routes import check_routes, repair_lines, resolve_node_ips, service_addresses_on
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
    failed: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        head = f"fix-routes: {self.interface}: {self.checked} service address(es) checked"
        if self.dry_run:
            return f"{head}, {len(self.commands)} command(s) planned (dry run), {self.already_correct} already correct"
        text = f"{head}, {self.fixed} fixed, {self.already_correct} already correct"
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


def fix_routes(runner: Runner, interface: str, node_ip_args: list[str]) -> FixRoutesReport:
    facts = read_net_facts(runner)
    if interface not in facts.interfaces:
        raise ConfigError(f"interface {interface} does not exist (is kube-router/kipvs running? "
                          "kube-proxy's is kube-ipvs0: --interface kube-ipvs0)")
    vips = service_addresses_on(facts, interface)
    node_ips = resolve_node_ips(node_ip_args, facts)
    checks = check_routes(vips, interface, node_ips, facts)
    report = FixRoutesReport(interface, node_ips, runner.dry_run, checked=len(checks))
    report.already_correct = sum(c.correct for c in checks)
    for check in checks:
        if check.node_ip is None:
            log.error("%s: no IPv%d node IP (no --node-ip and no default route for that family): route left as is",
                      check.vip, check.family)
    lines = repair_lines(checks)
    report.commands = Batch("ip", lines).command_lines()
    runner.apply([Batch("ip", lines)])
    if runner.dry_run:
        return report
    after = check_routes(vips, interface, node_ips, read_net_facts(runner)) if lines else checks
    report.failed = [c.vip for c in after if not c.correct]
    report.fixed = sum(1 for before, now in zip(checks, after) if before.lines and now.correct)
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
