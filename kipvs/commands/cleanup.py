"""`kipvs cleanup`: remove what kipvs owns (virtual servers, addresses, routes, the empty dummy interface)."""
from __future__ import annotations

from kipvs.config import ProxyOptions, RunOptions
from kipvs.environment import Environment
from kipvs.errors import ExitStatus
from kipvs.lock import writer_lock
from kipvs.output import summary
from kipvs.reconcile import remove_owned


def run_cleanup(env: Environment, options: ProxyOptions, run: RunOptions) -> ExitStatus:
    with writer_lock(run.dry_run, run.lock_file, run.lock_timeout):
        plan, remaining = remove_owned(env.runner(run.dry_run, run.command_timeout), options)
    summary(env, f"cleanup: {plan.summary()}" + (f"; {len(remaining)} left over" if remaining else ""))
    return ExitStatus.OK if not remaining else ExitStatus.DRIFT
