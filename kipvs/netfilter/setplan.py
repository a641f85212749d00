"""Desired sets vs `ipset save` facts -> `ipset restore` input (pure), by minimal diff.

Ownership: sets named KIPVS-* are kipvs's; no other set is read closely, written or destroyed.
A converged node gives empty input; a new Service adds members. Sets no rule needs any more are
destroyed only after the rules that referenced them are gone (the kernel refuses otherwise), so
they come as a second, separate list.
"""
from __future__ import annotations

from collections import Counter

from kipvs.facts.ipset import IpSet
from kipvs.netfilter.sets import FAMILY, KINDS, PREFIX, SetContents, create_line, set_name


def set_lines(wanted: list[SetContents], have: dict[str, IpSet], counts: Counter) -> tuple[list[str], list[str]]:
    """(restore lines creating and filling the wanted sets, destroy lines for owned sets not wanted)."""
    lines: list[str] = []
    names: set[str] = set()
    for contents in wanted:
        for base, members in sorted(contents.members.items()):
            name = set_name(base, contents.family)
            names.add(name)
            current = have.get(name)
            if current is not None and (current.kind, current.family) != (KINDS[base], FAMILY[contents.family]):
                # kipvs changed a set's type: it can only be made again (refused while a rule still uses it)
                lines.append(f"destroy {name}")
                current = None
            if current is None:
                lines.append(create_line(base, contents.family))
                counts["ipsets created"] += 1
            old = current.members if current is not None else set()
            added = sorted(members - old)
            removed = sorted(old - members)
            lines += [f"add {name} {m}" for m in added]
            lines += [f"del {name} {m}" for m in removed]
            counts.update(+Counter({"ipset members added": len(added), "ipset members removed": len(removed)}))
    destroy = [f"destroy {name}" for name in sorted(have) if name.startswith(PREFIX) and name not in names]
    counts.update(+Counter({"ipsets removed": len(destroy)}))
    return lines, destroy
