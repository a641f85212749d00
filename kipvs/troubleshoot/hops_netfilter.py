"""The doctor's netfilter hops: the service-address firewall (and source ranges), and the masquerade.

Read through kipvs.netfilter: the wanted rules come from its rules builder, the kernel's from its
facts, so the hops follow whatever shape kipvs's rules take. Only differences that concern the
address asked about count for the firewall; the masquerade is node-wide, so any difference counts.
"""
from __future__ import annotations

from kipvs.facts.iptables import BUILTIN_CHAINS, Table, target_of
from kipvs.model import known_family
from kipvs.netfilter.backend import COMMAND, NetfilterFacts, NetfilterUnavailable, detect
from kipvs.netfilter.plan import owned
from kipvs.netfilter.rules import DesiredNetfilter, build_netfilter

from kipvs.troubleshoot.scene import Hop, Scene

BLOCKING = ("DROP", "REJECT")


def netfilter_facts(scene: Scene) -> NetfilterFacts | str:
    """The kernel's tables, or why they cannot be read (cached on the scene: two hops use them)."""
    if "netfilter facts" not in scene.cache:
        try:
            scene.cache["netfilter facts"] = detect(scene.runner, scene.options.netfilter.mode, probe=False)
        except NetfilterUnavailable as exc:
            scene.cache["netfilter facts"] = str(exc)
    return scene.cache["netfilter facts"]


def _wanted(scene: Scene) -> DesiredNetfilter | None:
    if scene.desired is None:
        return None
    if "netfilter wanted" not in scene.cache:
        scene.cache["netfilter wanted"] = build_netfilter(scene.desired, scene.snapshot, scene.node.name,
                                                          scene.options.netfilter)
    return scene.cache["netfilter wanted"]


def _host(ip: str) -> str:
    return f"{ip}/{32 if known_family(ip) == 4 else 128}"


def _mentions(rule: str, ip: str) -> bool:
    words = rule.split()
    return _host(ip) in words or ip in words


def _table(facts: NetfilterFacts, family: int, name: str) -> Table:
    return facts.tables.get(family, {}).get(name, Table(name))


def _drift(wanted: DesiredNetfilter, facts: NetfilterFacts, family: int, table: str, ip: str | None) -> list[str]:
    """What differs in kipvs's chains of `table` (only rules naming `ip`, when given) and its jumps."""
    ruleset = wanted.rulesets.get(family)
    have = _table(facts, family, table)
    found = []
    for (name, chain), rules in (ruleset.chains.items() if ruleset else ()):
        if name != table:
            continue
        want_rules = [r for r in rules if ip is None or _mentions(r, ip)]
        have_rules = [r for r in have.chain(chain) if ip is None or _mentions(r, ip)]
        if want_rules != have_rules:
            found += [f"missing: -A {chain} {r}" for r in want_rules if r not in have_rules]
            found += [f"extra: -A {chain} {r}" for r in have_rules if r not in want_rules]
            if not found:
                found.append(f"{chain}: rules out of order")
    for jump in (ruleset.jumps if ruleset else ()):
        if jump.table == table and jump.rule not in have.chain(jump.chain):
            found.append(f"missing: -A {jump.chain} {jump.rule}")
    return found


def _jumps_into_ours(table: Table) -> list[str]:
    return [f"{chain} → {target_of(rule)}" for chain, rules in table.rules.items() if chain in BUILTIN_CHAINS
            for rule in rules if owned(target_of(rule))]


NOT_OURS = "kipvs has no netfilter rules on this node (another service proxy's?): not judged without the cluster"


def kipvs_has_rules(facts: NetfilterFacts, family: int) -> bool:
    return any(owned(chain) for table in facts.tables.get(family, {}).values() for chain in table.policies)


def _blocking(facts: NetfilterFacts, family: int, ip: str) -> list[str]:
    """Someone else's DROP/REJECT naming the address in the built-in INPUT chain (kipvs's firewall is its own)."""
    return [rule for rule in _table(facts, family, "filter").chain("INPUT")
            if target_of(rule) in BLOCKING and _mentions(rule, ip)]


def _source_ranges(scene: Scene, wanted: DesiredNetfilter) -> str:
    ranges = set()
    for vs in scene.wanted_servers():
        origin = scene.desired.origins.get(vs.key)
        state = wanted.services.get((origin.namespace, origin.name)) if origin else None
        if state and state.source_ranges:
            ranges.update(state.source_ranges)
    return f"; loadBalancerSourceRanges {', '.join(sorted(ranges))} only" if ranges else ""


def firewall_hop(scene: Scene) -> Hop:
    facts = netfilter_facts(scene)
    if isinstance(facts, str):
        return Hop("firewall", None, f"netfilter unreadable: {facts}")
    family = known_family(scene.ip)
    tool = f"{COMMAND[family]}-{facts.backend}"
    blocking = _blocking(facts, family, scene.ip)
    if blocking:
        return Hop("firewall", False, f"INPUT {'; '.join(blocking)} (not kipvs's) blocks {scene.ip}",
                   " && ".join(f"{tool} -t filter -D INPUT {rule}" for rule in blocking))
    wanted = _wanted(scene)
    if wanted is None and not kipvs_has_rules(facts, family):
        return Hop("firewall", None, NOT_OURS)
    if wanted is None:
        jumps = [j for j in _jumps_into_ours(_table(facts, family, "filter")) if j.startswith("INPUT")]
        if not jumps and scene.options.netfilter.firewall:
            return Hop("firewall", False, "no jump from INPUT into kipvs's firewall chain", "kipvs sync")
        return Hop("firewall", True, f"{', '.join(jumps) or 'no kipvs firewall'}; nothing else blocks {scene.ip} "
                   "(ports allowed: unknown without the cluster)")
    drift = _drift(wanted, facts, family, "filter", scene.ip)
    if drift:
        return Hop("firewall", False, f"kipvs's filter rules for {scene.ip} differ: {'; '.join(drift[:4])}",
                   "kipvs sync")
    ports = sorted({f"{vs.protocol}/{vs.port}" for vs in scene.wanted_servers()})
    allowed = f"ports {', '.join(ports)} pass" if scene.options.netfilter.firewall else "firewall off (--ipvs-permit-all)"
    return Hop("firewall", True, f"{allowed}{_source_ranges(scene, wanted)}")


def masquerade_hop(scene: Scene) -> Hop:
    facts = netfilter_facts(scene)
    if isinstance(facts, str):
        return Hop("masquerade", None, f"netfilter unreadable: {facts}")
    family = known_family(scene.ip)
    wanted = _wanted(scene)
    nat = _table(facts, family, "nat")
    if wanted is None and not kipvs_has_rules(facts, family):
        return Hop("masquerade", None, NOT_OURS)
    if wanted is None:
        ours = [rule for chain, rules in nat.rules.items() if owned(chain) for rule in rules
                if target_of(rule) in ("SNAT", "MASQUERADE")]
        jumps = _jumps_into_ours(nat)
        if not jumps or not ours:
            return Hop("masquerade", False, "kipvs's SNAT rule or the jump from POSTROUTING into it is missing",
                       "kipvs sync")
        return Hop("masquerade", True, f"{', '.join(jumps)}; {len(ours)} SNAT/MASQUERADE rule(s)")
    drift = _drift(wanted, facts, family, "nat", None)
    if drift:
        return Hop("masquerade", False, f"kipvs's nat rules differ: {'; '.join(drift[:4])}", "kipvs sync")
    rule = next(iter(wanted.services.values()), None)
    return Hop("masquerade", True, rule.masquerade if rule else "no virtual server needs it")
