"""Parse `ipset save` output into sets: type, family and members, for the sets whose name has a prefix.

Members are kept as the exact text ipset prints back: kipvs renders its own members in that
normalised form (kipvs.netfilter.sets), so comparing text is comparing members.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from kipvs.errors import KipvsError


class IpsetFormatError(KipvsError):
    """ipset save printed something that is not its format."""


@dataclass
class IpSet:
    name: str
    kind: str            # hash:ip, hash:ip,port, ...
    family: str          # inet or inet6
    members: set[str] = field(default_factory=set)


def parse_ipset_save(text: str, prefix: str = "") -> tuple[dict[str, IpSet], list[str]]:
    """({name: IpSet} of the sets named `prefix`*, every set's name). Other sets' members are skipped
    unread (kube-proxy's sets on a big node are most of the text)."""
    sets: dict[str, IpSet] = {}
    names: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("add "):
            name, _, member = line[4:].partition(" ")
            if name in sets:
                sets[name].members.add(member.split(" ", 1)[0])
        elif line.startswith("create "):
            words = line.split()
            if len(words) < 3:
                raise IpsetFormatError(f"ipset save line {number}: {line[:80]!r}")
            names.append(words[1])
            if words[1].startswith(prefix):
                options = dict(zip(words[3::2], words[4::2]))
                sets[words[1]] = IpSet(words[1], words[2], options.get("family", "inet"))
        elif line.strip():
            raise IpsetFormatError(f"ipset save line {number}: unexpected {line[:80]!r}")
    return sets, names
