"""Chains another service proxy left behind: kube-router keeps its netfilter state after it stops
(its INPUT firewall then rejects ports kipvs adds to an existing service address), and so may kube-proxy."""
from __future__ import annotations

from kipvs.netfilter.backend import NetfilterFacts

KUBE_ROUTER = ("KUBE-ROUTER-",)
KUBE_PROXY = ("KUBE-SERVICES", "KUBE-SVC-", "KUBE-SEP-", "KUBE-NODE-PORT", "KUBE-LOAD-BALANCER",
              "KUBE-IPVS-FILTER", "KUBE-PROXY-FIREWALL", "KUBE-EXTERNAL-SERVICES", "KUBE-PROXY-CANARY")


def leftovers(facts: NetfilterFacts) -> list[str]:
    """`IPv4 filter KUBE-ROUTER-SERVICES (kube-router)` for each such chain."""
    found = []
    for family, tables in sorted(facts.tables.items()):
        for name, table in sorted(tables.items()):
            for chain in table.policies:
                owner = "kube-router" if chain.startswith(KUBE_ROUTER) else \
                    "kube-proxy" if chain.startswith(KUBE_PROXY) else None
                if owner:
                    found.append(f"IPv{family} {name} {chain} ({owner})")
    return found
