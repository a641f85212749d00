"""Parse `iptables-save` / `ip6tables-save` output (either backend) into tables, chains and rules.

Rules are kept as the exact text the tool prints after `-A CHAIN `: kipvs writes its own
rules in that same normalised form, so comparing text is comparing rules.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from kipvs.errors import KipvsError

BUILTIN_CHAINS = frozenset({"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"})


class SaveFormatError(KipvsError):
    """iptables-save printed something that is not its format."""


@dataclass(frozen=True)
class Table:
    name: str
    policies: dict[str, str] = field(default_factory=dict)          # chain -> policy ("-" for a user chain)
    rules: dict[str, tuple[str, ...]] = field(default_factory=dict)  # chain -> rule specs, in order

    def chain(self, name: str) -> tuple[str, ...]:
        return self.rules.get(name, ())


def target_of(rule: str) -> str | None:
    """The `-j`/`-g` target of a rule spec (None when it has none, or cannot be split)."""
    try:
        words = shlex.split(rule)
    except ValueError:
        return None
    for i, word in enumerate(words[:-1]):
        if word in ("-j", "-g", "--jump", "--goto"):
            return words[i + 1]
    return None


def parse_save(text: str) -> dict[str, Table]:
    """{table name: Table}. Comments and COMMIT lines carry nothing; counters are dropped."""
    tables: dict[str, Table] = {}
    rules: dict[str, dict[str, list[str]]] = {}
    current: Table | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            current = tables.setdefault(line[1:], Table(line[1:]))
            rules.setdefault(current.name, {})
        elif current is None:
            raise SaveFormatError(f"iptables-save line {number}: {line[:80]!r} outside a table")
        elif line == "COMMIT":
            current = None
        elif line.startswith(":"):
            name, _, rest = line[1:].partition(" ")
            current.policies[name] = rest.split(" ")[0] if rest else "-"
            rules[current.name].setdefault(name, [])
        elif line.startswith("-A "):
            name, _, spec = line[3:].partition(" ")
            rules[current.name].setdefault(name, []).append(spec)
        else:
            raise SaveFormatError(f"iptables-save line {number}: unexpected {line[:80]!r}")
    for name, table in tables.items():
        table.rules.update({chain: tuple(specs) for chain, specs in rules[name].items()})
    return tables


def rule_count(text: str) -> int:
    """Rules in a save (what iptables-wrapper counts to tell which backend a node uses)."""
    return sum(1 for line in text.splitlines() if line.startswith("-"))
