"""`kipvs sync`: one reconcile of IPVS, service addresses and local routes, verified afterwards."""
from __future__ import annotations

import logging
import time

from kipvs.config import ProxyOptions, RunOptions, SourceOptions
from kipvs.environment import Environment
from kipvs.errors import ExitStatus
from kipvs.lock import writer_lock
from kipvs.output import emit_json, progress_reporter, report_problems, summary
from kipvs.reconcile import finish_sync, load_cluster, start_sync

log = logging.getLogger("kipvs.sync")


def run_sync(env: Environment, source: SourceOptions, options: ProxyOptions, run: RunOptions) -> ExitStatus:
    started = time.monotonic()
    runner = env.runner(run.dry_run, run.command_timeout, collect=run.json)  # its helper forks while kipvs is small
    snapshot, node = load_cluster(source)
    with writer_lock(run.dry_run, run.lock_file, run.lock_timeout), progress_reporter(env) as progress:
        planned = start_sync(runner, snapshot, node, options, progress)
        del snapshot  # planned: its EndpointSlices are not needed any more (~70 MB at 50,000 Services)
        result = finish_sync(runner, planned, options, progress)
    result.seconds = time.monotonic() - started  # the time reported includes reading and parsing the cluster
    report_problems(result.desired.problems)
    if result.held:
        log.error("removals held: %s", result.held_line())
    if run.json:
        emit_json(env, {"counts": dict(result.plan.counts), "commands": result.plan.command_lines(),
                        "removals_held": result.held, "holding": list(result.desired.holding),
                        "remaining": result.remaining, "problems": [str(p) for p in result.desired.problems],
                        "converged": result.converged, "dry_run": run.dry_run, "seconds": round(result.seconds, 3)})
    else:
        summary(env, result.summary())
    # Held removals are drift too: cron must notice a node that cannot remove what is stale.
    return ExitStatus.OK if result.converged and not result.held else ExitStatus.DRIFT
