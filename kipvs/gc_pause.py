"""Pause Python's cyclic garbage collector around bulk building of acyclic data.

Parsing a 50,000-Service dump and expanding it creates millions of small objects: every
700 allocations the collector walks the young ones, and its full collections walk all of them,
which made planning grow faster than the cluster (2x the per-Service cost at 50k). None of this
data has cycles, so reference counting frees it; the collector resumes afterwards.

Resuming alone is not enough: the young generation would still hold every object built during the
pause, and the first allocation after it walks them all (then again as they age through the middle
generation): ~0.2 s per phase at 50k. So they are moved to the oldest generation at once
(gc.freeze then gc.unfreeze: two list splices, no walk, and the young count reset). They stay
collectable: a full collection still walks them; it just does not happen because of them."""
from __future__ import annotations

import gc
from contextlib import contextmanager


@contextmanager
def gc_paused():
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.freeze()
            gc.unfreeze()
            gc.enable()
