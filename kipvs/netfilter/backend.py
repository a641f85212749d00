"""Which iptables backend this node uses, decided like kube-proxy's iptables-wrapper: the backend
that already holds more rules wins; when neither holds any, the first one the kernel can really
write to (nft first, as modern distributions default to it). A backend whose tools are missing or
whose kernel side is absent is never chosen."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import os
import re

from kipvs.errors import KipvsError
from kipvs.facts.iptables import Table, parse_save, rule_count
from kipvs.facts.ipset import IpSet, parse_ipset_save
from kipvs.netfilter.sets import PREFIX
from kipvs.runner import Runner

log = logging.getLogger("kipvs.netfilter")

BACKENDS = ("nft", "legacy")
COMMAND = {4: "iptables", 6: "ip6tables"}
# Creates and deletes one chain in one transaction: nft's restore --test passes even on a kernel
# without nf_tables for IPv4, so only a real write tells.
PROBE = "*filter\n:KIPVS-PROBE - [0:0]\n-X KIPVS-PROBE\nCOMMIT\n"


class NetfilterUnavailable(KipvsError):
    """No iptables backend can run here."""


def save_argv(backend: str, family: int) -> list[str]:
    return [f"{COMMAND[family]}-{backend}-save"]


def restore_tool(backend: str, family: int) -> str:
    return f"{COMMAND[family]}-{backend}-restore"


@dataclass(frozen=True)
class NetfilterFacts:
    backend: str
    tables: dict[int, dict[str, Table]]  # family -> table name -> Table
    sets: dict[str, IpSet] = field(default_factory=dict)  # kipvs's own (KIPVS-*)
    set_names: tuple[str, ...] = ()                       # every set on the node (for leftovers)
    random_fully: bool = True


def random_fully_supported(release: str) -> bool:
    """SNAT/MASQUERADE --random-fully: the kernel has it from 3.13; the iptables side from 1.6.2, older
    than the -legacy/-nft tool names kipvs runs (1.8.0), so only the kernel can lack it."""
    found = re.match(r"(\d+)\.(\d+)", release)
    return bool(found) and (int(found[1]), int(found[2])) >= (3, 13)


def read_sets(runner: Runner) -> tuple[dict[str, IpSet], tuple[str, ...]]:
    try:
        owned, names = parse_ipset_save(runner.run(["ipset", "save"]), PREFIX)
    except KipvsError as exc:
        raise NetfilterUnavailable(f"ipset: {exc}") from None
    return owned, tuple(names)


def with_sets(runner: Runner, backend: str, tables: dict[int, dict[str, Table]]) -> NetfilterFacts:
    owned, names = read_sets(runner)
    return NetfilterFacts(backend, tables, owned, names, random_fully_supported(os.uname().release))


def read_saves(runner: Runner, backend: str, families: tuple[int, ...] = (4, 6)) -> dict[int, str]:
    return {family: runner.run(save_argv(backend, family)) for family in families}


def read_facts(runner: Runner, backend: str) -> NetfilterFacts:
    return with_sets(runner, backend, {f: parse_save(text) for f, text in read_saves(runner, backend).items()})


def reread_facts(runner: Runner, before: NetfilterFacts, families: set[int], sets: bool) -> NetfilterFacts:
    """`before` with the tables of `families` (and the sets) read again: what the restores changed."""
    tables = dict(before.tables)
    saves = read_saves(runner, before.backend, tuple(sorted(families)))
    tables.update({f: parse_save(text) for f, text in saves.items()})
    if not sets:
        return replace(before, tables=tables)
    owned, names = read_sets(runner)
    return replace(before, tables=tables, sets=owned, set_names=names)


def _writable(runner: Runner, backend: str) -> bool:
    try:
        runner.run([restore_tool(backend, 4), "--noflush"], stdin=PROBE)
        return True
    except KipvsError as exc:
        log.debug("iptables %s backend cannot write here: %s", backend, exc)
        return False


def detect(runner: Runner, mode: str, probe: bool = True) -> NetfilterFacts:
    """The facts of the backend to use: `mode` legacy or nft forces it; auto decides. `probe` False
    (dry runs, show): never write, and assume the first backend whose tools answer."""
    if mode != "auto":
        try:
            return read_facts(runner, mode)
        except KipvsError as exc:
            raise NetfilterUnavailable(f"iptables {mode} backend: {exc}") from None
    saves, reasons = {}, []
    for backend in BACKENDS:
        try:
            saves[backend] = read_saves(runner, backend)
        except KipvsError as exc:
            reasons.append(f"{backend}: {exc}")
    counts = {b: sum(rule_count(text) for text in texts.values()) for b, texts in saves.items()}
    probe = probe and not runner.dry_run
    for backend in sorted(saves, key=lambda b: (-counts[b], BACKENDS.index(b))):
        if counts[backend] > 0 or not probe or _writable(runner, backend):
            return with_sets(runner, backend, {f: parse_save(t) for f, t in saves[backend].items()})
        reasons.append(f"{backend}: the kernel refused a write")
    raise NetfilterUnavailable("no usable iptables backend (" + "; ".join(reasons) + ")")
