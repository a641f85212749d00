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


def select(candidates: Sequence[tuple[Endpoint, int]],
           listed: Sequence[tuple[Endpoint, int]] | None = None) -> Selection:
    """Ready endpoints; only when there are none, those still serving while terminating (kube-proxy).
    Every other listed endpoint is held: its pod may still answer the connections it has. `listed`:
    every endpoint still in the slice when a filter (topology hints) narrowed `candidates`: one the
    filter left out drains as if there were no hints, it has not left the slice."""
    chosen = [c for c in candidates if c[0].ready] or [c for c in candidates if c[0].serving]
    listed = candidates if listed is None else listed
    if len(chosen) == len(listed):
        return Selection(chosen, [])
    picked = {(e.ip, n) for e, n in chosen}
    return Selection(chosen, [(e, n) for e, n in listed if (e.ip, n) not in picked])
