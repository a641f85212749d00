"""Netfilter's turn in a sync, a cleanup and a show: detect the backend, plan, apply, verify by reading back."""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field, replace

from kipvs.cluster import Problem
from kipvs.config import NetfilterOptions
from kipvs.desired import Desired
from kipvs.netfilter.backend import (NetfilterFacts, NetfilterUnavailable, detect, read_facts, reread_facts,
                                     restore_tool)
from kipvs.errors import ConfigError
from kipvs.facts.ipset import IpSet
from kipvs.netfilter.leftovers import kube_router_restore_lines, kube_router_sets, leftovers
from kipvs.netfilter.plan import owned, restore_lines, tables_after
from kipvs.netfilter.rules import DesiredNetfilter, Ruleset, build_netfilter
from kipvs.netfilter.setplan import set_lines
from kipvs.netfilter.sets import FAMILY, KINDS, PREFIX, set_name
from kipvs.runner import Batch, Result, Runner
from kipvs.sources import Snapshot

log = logging.getLogger("kipvs.netfilter")


@dataclass
class NetfilterOutcome:
    backend: str | None = None
    batches: list[Batch] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    remaining: list[str] = field(default_factory=list)
    problems: tuple[Problem, ...] = ()
    warnings: tuple[str, ...] = ()
    unavailable: str | None = None
    facts_after: NetfilterFacts | None = None  # the node's netfilter as this turn left it, when known without a read


def plan_batches(rulesets: dict[int, Ruleset], facts: NetfilterFacts, counts: Counter) -> list[Batch]:
    """One `ipset restore` (sets and members, before the rules that use them), one restore per family
    (all its tables), and, only when a set is no longer used, its destruction after the rules."""
    wanted = [r.sets for _, r in sorted(rulesets.items()) if r.sets is not None]
    fill, destroy = set_lines(wanted, facts.sets, counts)
    batches = [Batch("ipset", tuple(fill))] if fill else []
    for family in (4, 6):
        lines = restore_lines(rulesets.get(family, Ruleset()), facts.tables.get(family, {}), counts)
        if lines:
            batches.append(Batch(restore_tool(facts.backend, family), tuple(lines)))
    return batches + ([Batch("ipset", tuple(destroy))] if destroy else [])


def _apply_verified(runner: Runner, rulesets: dict[int, Ruleset], facts: NetfilterFacts,
                    outcome: NetfilterOutcome) -> None:
    outcome.backend = facts.backend
    outcome.batches = plan_batches(rulesets, facts, outcome.counts)
    results = runner.apply(outcome.batches)
    if runner.dry_run:
        return
    if all_applied(outcome.batches, results):
        # A restore is all-or-nothing per table, with --noflush every -D must match, and `ipset restore`
        # stops at its first failing line: exit 0 and a silent stderr from each means all of it is there.
        outcome.facts_after = restored(facts, rulesets)
        return
    # Anything else is read back (a family nothing was written to is as it was read).
    written = {6 if batch.tool.startswith("ip6") else 4 for batch in outcome.batches if batch.tool != "ipset"}
    sets = any(batch.tool == "ipset" for batch in outcome.batches)
    after = reread_facts(runner, facts, written, sets)
    again = plan_batches(rulesets, after, Counter())
    outcome.remaining = [line for batch in again for line in batch.command_lines()]
    outcome.facts_after = None if again else after


def restored(facts: NetfilterFacts, rulesets: dict[int, Ruleset]) -> NetfilterFacts:
    """`facts` once every planned batch was applied whole: the sets and both families' tables as wanted."""
    tables = {family: tables_after(rulesets.get(family, Ruleset()), facts.tables.get(family, {}))
              for family in sorted(set(facts.tables) | set(rulesets))}
    return replace(sets_applied(facts, rulesets), tables=tables)


def sets_applied(facts: NetfilterFacts, rulesets: dict[int, Ruleset]) -> NetfilterFacts:
    """`facts` once the planned `ipset restore` input has been applied whole: kipvs's sets are exactly
    the wanted ones (other sets, and every table, as they were)."""
    owned = {set_name(base, r.sets.family): IpSet(set_name(base, r.sets.family), KINDS[base],
                                                   FAMILY[r.sets.family], set(members))
             for r in rulesets.values() if r.sets is not None for base, members in r.sets.members.items()}
    names = tuple(n for n in facts.set_names if not n.startswith(PREFIX)) + tuple(sorted(owned))
    return replace(facts, sets=owned, set_names=names)


def all_applied(batches: list[Batch], results: list[Result]) -> bool:
    """Whether every batch ran, exited 0 and printed nothing on stderr."""
    ran = [b for b in batches if b.lines]
    return len(results) == len(ran) and all(r.clean for r in results)


def sync_netfilter(runner: Runner, desired: Desired, snapshot: Snapshot, node_name: str,
                   options: NetfilterOptions, known: NetfilterFacts | None = None) -> NetfilterOutcome:
    """`known`: the facts a previous turn left (its `facts_after`), to plan from without reading the
    tables and sets again (watch's event syncs; a full resync reads them)."""
    try:
        facts = known if known is not None else detect(runner, options.mode)
    except NetfilterUnavailable as exc:
        log.error("netfilter rules (masquerade, hairpin, firewall) not written: %s", exc)
        want = build_netfilter(desired, snapshot, node_name, options, per_service=False)
        return NetfilterOutcome(problems=want.problems, unavailable=str(exc))
    want = build_netfilter(desired, snapshot, node_name, options, per_service=False,
                           random_fully=facts.random_fully)
    for warning in want.warnings:
        log.warning("%s", warning)
    outcome = NetfilterOutcome(problems=want.problems, warnings=want.warnings)
    _apply_verified(runner, want.rulesets, facts, outcome)
    return outcome


def cleanup_netfilter(runner: Runner, mode: str) -> NetfilterOutcome:
    outcome = NetfilterOutcome()
    try:
        facts = detect(runner, mode)
    except NetfilterUnavailable as exc:
        outcome.unavailable = str(exc)
        return outcome
    _apply_verified(runner, {}, facts, outcome)
    return outcome


def netfilter_report(runner: Runner, desired: Desired, snapshot: Snapshot, node_name: str,
                     options: NetfilterOptions) -> tuple[dict, DesiredNetfilter]:
    """What `show` says about netfilter: backend, drift as the restore input a sync would write, leftovers."""
    try:
        facts = detect(runner, options.mode, probe=False)  # show never writes, not even a probe
    except NetfilterUnavailable as exc:
        return {"backend": None, "unavailable": str(exc), "commands": [], "leftovers": [], "sets": {}}, \
            build_netfilter(desired, snapshot, node_name, options)
    want = build_netfilter(desired, snapshot, node_name, options, random_fully=facts.random_fully)
    lines = [line for batch in plan_batches(want.rulesets, facts, Counter()) for line in batch.command_lines()]
    sizes = {name: len(s.members) for name, s in sorted(facts.sets.items())}
    return {"backend": facts.backend, "unavailable": None, "commands": lines, "leftovers": leftovers(facts),
            "sets": sizes, "warnings": list(want.warnings)}, want


def _kube_router_batches(runner: Runner, facts: NetfilterFacts, counts: Counter) -> list[Batch]:
    batches = []
    for family in (4, 6):
        lines = kube_router_restore_lines(facts.tables.get(family, {}))
        counts["kube-router rules and chains removed"] += sum(1 for line in lines if line[:2] in ("-D", "-X"))
        if lines:
            batches.append(Batch(restore_tool(facts.backend, family), tuple(lines)))
    sets = kube_router_sets(list(facts.set_names))
    counts["kube-router ipsets removed"] += len(sets)
    if sets:  # after the rules that reference them
        batches.append(Batch("ipset", tuple(f"destroy {name}" for name in sets)))
    return batches


def remove_kube_router_leftovers(runner: Runner, mode: str) -> NetfilterOutcome:
    """`cleanup --kube-router-leftovers`: only once kipvs's own rules are in place, so that no moment
    is left without masquerade or firewall."""
    facts = detect(runner, mode)
    if not any(owned(chain) for tables in facts.tables.values() for t in tables.values() for chain in t.policies):
        raise ConfigError("kipvs's own netfilter rules are not in place yet: run `kipvs sync` first, then remove "
                          "kube-router's leftovers")
    outcome = NetfilterOutcome(backend=facts.backend)
    outcome.batches = _kube_router_batches(runner, facts, outcome.counts)
    runner.apply(outcome.batches)
    if outcome.batches and not runner.dry_run:
        again = _kube_router_batches(runner, read_facts(runner, facts.backend), Counter())
        outcome.remaining = [line for batch in again for line in batch.command_lines()]
    return outcome
