"""`kipvs cleanup`: remove what kipvs owns (virtual servers, addresses, routes, the empty dummy interface)."""
from __future__ import annotations

from kipvs.config import ProxyOptions
from kipvs.facts.kernel import read_kernel, read_kernel_or_empty
from kipvs.plan import Plan, plan_cleanup
from kipvs.runner import Runner


def cleanup(runner: Runner, options: ProxyOptions) -> tuple[Plan, list[str]]:
    """Returns the plan and what is still there afterwards (empty on success)."""
    kernel = read_kernel_or_empty(runner)
    plan = plan_cleanup(kernel, options)
    runner.apply(plan.batches)
    if runner.dry_run or plan.empty:
        return plan, []
    return plan, plan_cleanup(read_kernel(runner), options).command_lines()
