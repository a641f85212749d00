"""Which of a Service port's endpoints get traffic (kube-proxy's rule), and which are only kept draining.

Pure. `desired.py` hands in the endpoints that apply to one virtual server (family and, for a
Local policy, node already filtered; other filters such as topology go before `select` too).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

from kipvs.cluster import Endpoint


class Selection(NamedTuple):
    chosen: list[tuple[Endpoint, int]]  # get new connections, at full weight
    held: list[tuple[Endpoint, int]]    # still listed but not chosen: drain (weight 0) while connected


def select(candidates: Sequence[tuple[Endpoint, int]]) -> Selection:
    """Ready endpoints; only when there are none, those still serving while terminating (kube-proxy).
    Every other listed endpoint is held: its pod may still answer the connections it has."""
    chosen = [c for c in candidates if c[0].ready] or [c for c in candidates if c[0].serving]
    if len(chosen) == len(candidates):
        return Selection(chosen, [])
    picked = {(e.ip, n) for e, n in chosen}
    return Selection(chosen, [(e, n) for e, n in candidates if (e.ip, n) not in picked])
