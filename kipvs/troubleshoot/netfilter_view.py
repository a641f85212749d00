"""kipvs's netfilter state as the kernel has it, for `show` and `doctor` (read through kipvs.netfilter's facts)."""
from __future__ import annotations

from kipvs.facts.iptables import BUILTIN_CHAINS, target_of
from kipvs.netfilter.backend import NetfilterFacts
from kipvs.netfilter.plan import owned


def owned_rules(facts: NetfilterFacts) -> list[dict]:
    """kipvs's chains with their rules, and the built-in chains' jumps into them, per family and table."""
    found = []
    for family, tables in sorted(facts.tables.items()):
        for name, table in sorted(tables.items()):
            for chain, rules in table.rules.items():
                if owned(chain):
                    found.append({"family": family, "table": name, "chain": chain, "rules": list(rules)})
                elif chain in BUILTIN_CHAINS:
                    jumps = [rule for rule in rules if owned(target_of(rule))]
                    if jumps:
                        found.append({"family": family, "table": name, "chain": chain, "rules": jumps})
    return found
