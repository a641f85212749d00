"""`kipvs cleanup`: remove what kipvs owns (virtual servers, addresses, routes, the empty dummy interface)."""
from __future__ import annotations

from kipvs.config import ProxyOptions, RunOptions
from kipvs.environment import Environment
from kipvs.errors import ExitStatus
from kipvs.lock import writer_lock
from kipvs.netfilter.sync import remove_kube_router_leftovers
from kipvs.output import summary
from kipvs.reconcile import remove_owned


def run_cleanup(env: Environment, options: ProxyOptions, run: RunOptions, kube_router_leftovers: bool = False) -> ExitStatus:
    if kube_router_leftovers:
        with writer_lock(run.dry_run, run.lock_file, run.lock_timeout):
            outcome = remove_kube_router_leftovers(env.runner(run.dry_run, run.command_timeout),
                                                   options.netfilter.mode if options.netfilter else "auto")
        removed = ", ".join(f"{n} {what}" for what, n in sorted(outcome.counts.items()) if n) or "nothing to remove"
        summary(env, f"cleanup of kube-router's leftovers: {removed}" +
                (f"; {len(outcome.remaining)} left over" if outcome.remaining else ""))
        return ExitStatus.OK if not outcome.remaining else ExitStatus.DRIFT
    with writer_lock(run.dry_run, run.lock_file, run.lock_timeout):
        plan, remaining = remove_owned(env.runner(run.dry_run, run.command_timeout), options)
    summary(env, f"cleanup: {plan.summary()}" + (f"; {len(remaining)} left over" if remaining else ""))
    return ExitStatus.OK if not remaining else ExitStatus.DRIFT
