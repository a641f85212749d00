"""Chains another service proxy left behind: kube-router keeps its netfilter state after it stops
(its INPUT firewall then rejects ports kipvs adds to an existing service address), and so may kube-proxy."""
from __future__ import annotations

from kipvs.facts.iptables import target_of
from kipvs.netfilter.backend import NetfilterFacts

KUBE_ROUTER = ("KUBE-ROUTER-",)
KUBE_PROXY = ("KUBE-SERVICES", "KUBE-SVC-", "KUBE-SEP-", "KUBE-NODE-PORT", "KUBE-LOAD-BALANCER",
              "KUBE-IPVS-FILTER", "KUBE-PROXY-FIREWALL", "KUBE-EXTERNAL-SERVICES", "KUBE-PROXY-CANARY")


def leftovers(facts: NetfilterFacts) -> list[str]:
    """`IPv4 filter KUBE-ROUTER-SERVICES (kube-router)` for each such chain, and kube-router's SNAT rules."""
    found = []
    for family, tables in sorted(facts.tables.items()):
        for name, table in sorted(tables.items()):
            found += [f"IPv{family} {name} POSTROUTING rule {rule} (kube-router)" for rule in table.chain("POSTROUTING")
                      if _kube_router_rule("POSTROUTING", rule, target_of(rule)) and
                      not (target_of(rule) or "").startswith(KUBE_ROUTER)]
            for chain in table.policies:
                owner = "kube-router" if chain.startswith(KUBE_ROUTER) else \
                    "kube-proxy" if chain.startswith(KUBE_PROXY) else None
                if owner:
                    found.append(f"IPv{family} {name} {chain} ({owner})")
    kube_router = set(kube_router_sets(list(facts.set_names)))
    found += [f"ipset {name} (kube-router)" if name in kube_router else f"ipset {name} (kube-proxy)"
              for name in facts.set_names if name in kube_router or name.startswith(KUBE_PROXY_SETS)]
    return found


# What kube-router's service proxy leaves behind (pkg/controllers/proxy: setupIpvsFirewall,
# ensureMasqueradeIptablesRule, syncHairpinIptablesRules): its chains, the jumps into them, its
# IPVS SNAT rules in nat POSTROUTING, and its ipsets (IPv6 ones prefixed inet6:).
KUBE_ROUTER_SETS = ("kube-router-local-ips", "kube-router-svip", "kube-router-svip-prt")
KUBE_PROXY_SETS = ("KUBE-",)  # IPVS mode's KUBE-CLUSTER-IP, KUBE-LOOP-BACK, KUBE-NODE-PORT-TCP, ...
KUBE_ROUTER_SNAT = "-m ipvs --vdir ORIGINAL --vmethod MASQ"


def _kube_router_rule(chain: str, rule: str, target: str | None) -> bool:
    """A jump into kube-router's chains, or its IPVS SNAT rule (it writes an empty comment)."""
    if target and target.startswith(KUBE_ROUTER):
        return True
    return chain == "POSTROUTING" and KUBE_ROUTER_SNAT in rule and '--comment ""' in rule and \
        target in ("SNAT", "MASQUERADE")


def kube_router_restore_lines(tables: dict) -> list[str]:
    """Restore input removing kube-router's rules and chains from one family's tables."""
    lines: list[str] = []
    for name, table in sorted(tables.items()):
        chains = [c for c in table.policies if c.startswith(KUBE_ROUTER)]
        deletes = [f"-D {chain} {rule}" for chain, rules in table.rules.items() if not chain.startswith(KUBE_ROUTER)
                   for rule in rules if _kube_router_rule(chain, rule, target_of(rule))]
        if chains or deletes:
            lines += [f"*{name}", *[f":{c} - [0:0]" for c in chains], *deletes, *[f"-X {c}" for c in chains],
                      "COMMIT"]
    return lines


def kube_router_sets(names: list[str]) -> list[str]:
    wanted = set(KUBE_ROUTER_SETS) | {f"inet6:{n}" for n in KUBE_ROUTER_SETS}
    return [n for n in names if n in wanted]
