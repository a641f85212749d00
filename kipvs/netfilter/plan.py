"""Desired rules vs `iptables-save` facts -> `iptables-restore --noflush` input (pure).

Ownership: chains named KIPVS-* are kipvs's, and so is any rule elsewhere whose target is one
of them (the jumps). Nothing else is ever written or deleted. A chain whose contents differ is
rewritten whole (declaring it flushes it); an unchanged chain and a present jump write nothing,
so a converged node gives empty input. One restore is one transaction per table.
"""
from __future__ import annotations

from collections import Counter

from kipvs.facts.iptables import Table, target_of
from kipvs.netfilter.rules import PREFIX, Ruleset


def owned(chain: str | None) -> bool:
    return bool(chain) and chain.startswith(PREFIX)


def _table_lines(name: str, want: Ruleset, have: Table, counts: Counter) -> list[str]:
    wanted = {chain: rules for (table, chain), rules in want.chains.items() if table == name}
    jumps = [j for j in want.jumps if j.table == name]
    declare, delete, add, remove = [], [], [], []
    for chain, rules in wanted.items():
        if chain not in have.policies or have.chain(chain) != rules:
            declare.append(f":{chain} - [0:0]")
            add += [f"-A {chain} {rule}" for rule in rules]
            counts["netfilter chains written"] += 1
    for chain in have.policies:
        if owned(chain) and chain not in wanted:
            declare.append(f":{chain} - [0:0]")
            remove.append(f"-X {chain}")
            counts["netfilter chains removed"] += 1
    wanted_jumps = {(j.chain, j.rule) for j in jumps}
    for chain, rules in have.rules.items():
        if owned(chain):
            continue
        seen = set()
        for rule in rules:
            if not owned(target_of(rule)):
                continue
            if (chain, rule) in wanted_jumps and (chain, rule) not in seen:
                seen.add((chain, rule))
                continue
            delete.append(f"-D {chain} {rule}")
            counts["netfilter jumps removed"] += 1
    for jump in jumps:
        if jump.rule not in have.chain(jump.chain):
            add.insert(0, f"-I {jump.chain} 1 {jump.rule}")
            counts["netfilter jumps added"] += 1
    body = declare + delete + add + remove
    return [f"*{name}", *body, "COMMIT"] if body else []


def tables_after(want: Ruleset, have: dict[str, Table]) -> dict[str, Table]:
    """One family's tables once `restore_lines(want, have)` has been restored whole (iptables-restore
    commits a table or nothing): every owned chain exactly as wanted, the wanted jumps present once, at
    the top where `-I ... 1` put them, no other owned chain or jump; everything else as it was. Rules are
    kept in kipvs's rendering, which is iptables-save's (a converged node plans no lines)."""
    names = set(have) | {table for table, _ in want.chains} | {j.table for j in want.jumps}
    tables = {}
    for name in sorted(names):
        old = have.get(name, Table(name))
        policies = {chain: policy for chain, policy in old.policies.items() if not owned(chain)}
        rules = {chain: tuple(r for r in chain_rules if not owned(target_of(r)))
                 for chain, chain_rules in old.rules.items() if not owned(chain)}
        for (table, chain), chain_rules in want.chains.items():
            if table == name:
                policies[chain], rules[chain] = "-", tuple(chain_rules)
        for jump in want.jumps:
            if jump.table == name:
                rules[jump.chain] = (jump.rule, *rules.get(jump.chain, ()))
        tables[name] = Table(name, policies, rules)
    return tables


def restore_lines(want: Ruleset, have: dict[str, Table], counts: Counter) -> list[str]:
    """The restore input that turns `have` (one family's save) into `want`; [] when converged."""
    names = {table for table, _ in want.chains} | {j.table for j in want.jumps} | \
        {name for name, table in have.items() if any(owned(c) for c in table.policies) or
         any(owned(target_of(r)) for rules in table.rules.values() for r in rules)}
    lines: list[str] = []
    for name in sorted(names):
        lines += _table_lines(name, want, have.get(name, Table(name)), counts)
    return lines
