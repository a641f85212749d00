"""The core sync step shared by `sync`, `show` and `watch`: node identity, desired state, plan, apply, verify."""
from __future__ import annotations

import ipaddress
import json
import logging
import math
import time
from dataclasses import dataclass, field, replace
from typing import Callable

from kipvs.applied import net_after, rules_after
from kipvs.config import ProxyOptions, SourceOptions
from kipvs.cluster import find_node, node_ips_of, node_zone_of
from kipvs.desired import Desired, build_desired
from kipvs.draining import Drain, drain, drained_service, leaving
from kipvs.errors import ConfigError
from kipvs.facts.ipvs_conns import read_connections
from kipvs.facts.ipvs_timeouts import read_timeouts
from kipvs.facts.ipvsadm import TARGETED_READ_MAX, service_key_of_line
from kipvs.facts.kernel import KernelFacts, read_kernel, read_kernel_or_empty, reread
from kipvs.model import family_of
from kipvs.netfilter.backend import NetfilterFacts
from kipvs.netfilter.sync import NetfilterOutcome, cleanup_netfilter, sync_netfilter
from kipvs.plan import Plan, plan_addresses, plan_cleanup, plan_sync
from kipvs.routes import resolve_node_ips
from kipvs.runner import Result, Runner
from kipvs.sources import Snapshot, load_snapshot

log = logging.getLogger("kipvs.sync")


class PartialCluster(ConfigError):
    """The cluster state lacks something without which a sync would tear down working rules."""


@dataclass(frozen=True)
class NodeIdentity:
    name: str
    explicit_ips: tuple[str, ...] = ()


@dataclass
class SyncResult:
    desired: Desired
    plan: Plan
    kernel: KernelFacts
    remaining: list[str] = field(default_factory=list)  # what still differs after applying
    seconds: float = 0.0
    kernel_after: KernelFacts | None = None  # the kernel as verified at the end (None for a dry run)
    netfilter: NetfilterOutcome | None = None
    drains: list[Drain] = field(default_factory=list)  # real servers kept at weight 0 for their connections
    net_read: bool = False  # kernel_after's addresses and routes were read whole (not planned-from, nor modelled)

    @property
    def converged(self) -> bool:
        return not self.remaining

    @property
    def held(self) -> int:
        """Stale virtual servers and addresses kept because a Service's addresses could not be read."""
        return self.plan.held

    def held_line(self) -> str:
        """What is held and why, for stderr ("" when nothing is)."""
        if not self.held:
            return ""
        services = self.desired.holding
        named = ", ".join(services[:5]) + (f" and {len(services) - 5} more" if len(services) > 5 else "")
        return (f"{self.held} stale virtual server(s) and address(es) not removed: the addresses of {named} "
                "could not be read, so what it had is unknown (fix or delete it)")

    def summary(self) -> str:
        vs = len(self.desired.virtual_servers)
        rs = sum(len(v.real_servers) for v in self.desired.virtual_servers)
        text = f"sync: {vs} virtual servers, {rs} real servers, {len(self.desired.addresses)} addresses; "
        text += self.plan.summary()
        if self.drains:
            text += f"; {len(self.drains)} real server(s) draining"
        if self.desired.problems:
            text += f"; {len(self.desired.problems)} problem(s) in cluster objects"
        if self.remaining:
            text += f"; NOT CONVERGED, {len(self.remaining)} difference(s) remain"
        if self.held:
            text += f"; NOT CONVERGED, {self.held} removal(s) held for {len(self.desired.holding)} unreadable Service(s)"
        return text + f" ({self.seconds:.2f}s)"


def check_complete(snapshot: Snapshot, node: NodeIdentity, from_file: bool) -> None:
    """Refuse a snapshot that would wipe the node: a dump without EndpointSlices would remove every
    real server, one without this node's Node would drop its NodePorts (kube-router stops there too)."""
    missing = []
    if from_file and not snapshot.endpoint_slices:
        missing.append("no EndpointSlices")
    if from_file and not snapshot.nodes:
        missing.append("no Nodes")
    elif find_node(snapshot.nodes, node.name) is None:
        if not missing and snapshot.nodes:  # the cluster is whole: the name is what is wrong
            raise PartialCluster(f"{snapshot.origin}: no Node named {node.name!r} (--node-name, default the "
                                 f"hostname); Nodes found: {_names(snapshot.nodes)}: pass --node-name with one of them")
        missing.append(f"no Node named {node.name!r} (--node-name)")
    if missing:
        raise PartialCluster(f"{snapshot.origin}: {', '.join(missing)}: refusing to sync from a partial cluster "
                             "(dump with `kubectl get services,endpointslices,nodes -A -o json`, or pass "
                             "--allow-partial)")


def _names(nodes, shown: int = 10) -> str:
    names = sorted(str((n.get("metadata") or {}).get("name")) for n in nodes if isinstance(n, dict))
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def load_cluster(source: SourceOptions) -> tuple[Snapshot, NodeIdentity]:
    """The snapshot and this node's identity for `sync` and `show`, refused when partial (unless allowed)."""
    snapshot = load_snapshot(source.cluster_file, source.kubeconfig, source.api_timeout, source.master)
    node = NodeIdentity(source.node_name, source.node_ips)
    if not source.allow_partial:
        check_complete(snapshot, node, from_file=bool(source.cluster_file))
    return snapshot, node


def node_ips_for(node: NodeIdentity, snapshot: Snapshot, kernel: KernelFacts, interface: str,
                 problems: list | None = None) -> dict[int, str]:
    """--node-ip, else the Node object's InternalIPs, else the default-route interface; never an
    address that is only on kipvs's own interface (a service address is not the node)."""
    from_api = node_ips_of(find_node(snapshot.nodes, node.name), problems if problems is not None else [])
    if kernel.readable:
        return resolve_node_ips(list(node.explicit_ips), kernel.net, fallback=from_api, interface=interface)
    chosen = dict(from_api)
    chosen.update({family_of(ip): ip for ip in node.explicit_ips})
    return chosen


def host_addresses(net, options: ProxyOptions) -> frozenset[str]:
    """This host's own addresses (and its IPv4 subnets' broadcast addresses), outside kipvs's interface."""
    found = set()
    for address in net.addresses:
        if address.interface == options.interface:
            continue
        found.add(address.ip)
        if address.family == 4 and address.prefixlen < 31:
            found.add(str(ipaddress.ip_network(f"{address.ip}/{address.prefixlen}", strict=False).broadcast_address))
    return frozenset(found)


def check_interface(kernel: KernelFacts, interface: str) -> None:
    """kipvs adds and deletes addresses and links only on a dummy interface of its own."""
    kind = kernel.net.kinds.get(interface)
    if kernel.readable and interface in kernel.net.interfaces and kind != "dummy":
        raise ConfigError(f"--interface {interface} exists and is not a dummy interface "
                          f"({kind or 'a network device'}): refusing to manage its addresses")


@dataclass(frozen=True)
class NodeFacts:
    """What the desired state needs to know about this node, besides the cluster objects."""

    node_ips: dict[int, str]
    local_ips: list[str]
    host_addresses: frozenset[str]
    problems: tuple = ()
    zone: str = ""  # topology.kubernetes.io/zone of this node's Node


def node_facts(snapshot: Snapshot, node: NodeIdentity, options: ProxyOptions, kernel: KernelFacts) -> NodeFacts:
    node_problems: list = []
    node_ips = node_ips_for(node, snapshot, kernel, options.interface, node_problems)
    local_ips = [a.ip for a in kernel.net.addresses
                 if a.interface not in (options.interface, "lo") and a.scope == "global"]
    zone = node_zone_of(find_node(snapshot.nodes, node.name), node_problems)
    return NodeFacts(node_ips, local_ips, host_addresses(kernel.net, options), tuple(node_problems), zone)


def compute(snapshot: Snapshot, node: NodeIdentity, options: ProxyOptions, kernel: KernelFacts,
            backends: bool = False) -> Desired:
    """The desired state; its problems are the caller's to report (once per run, or once per change in watch).
    `backends`: with every real server's pod and node (for show)."""
    facts = node_facts(snapshot, node, options, kernel)
    desired = build_desired(snapshot, node.name, facts.node_ips, options, facts.local_ips, facts.host_addresses,
                            facts.zone, backends)
    if facts.problems:
        desired = replace(desired, problems=facts.problems + desired.problems)
    warn_missing_families(desired, node)
    return desired


def load_record(runner: Runner, path: str | None) -> dict[str, float]:
    """The drain record ({drain name: start time}). It is only a cache of clocks: whatever is wrong with it
    (missing, a directory, a FIFO, a device, too large, not ASCII, not JSON, numbers out of range) is one
    warning, and it is rebuilt from what this sync sees (those drains start their grace period again)."""
    if not path:
        return {}
    try:
        text = runner.read_file(path)
        record = json.loads(text) if text else {}
    except (OSError, ValueError, RecursionError) as exc:  # not ASCII, not JSON, a number int() refuses, too deep
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else \
            (str(exc).splitlines() or [type(exc).__name__])[0][:120]
        log.warning("drain record %s is unusable (%s): starting it again", path, why)
        return {}
    if not isinstance(record, dict):
        log.warning("drain record %s is not a JSON object: starting it again", path)
        return {}
    now = time.time()
    kept = {key: float(value) for key, value in record.items() if isinstance(key, str) and _plausible_time(value, now)}
    if len(kept) < len(record):
        log.warning("drain record %s: %d entr(ies) without a possible start time dropped (those drains start "
                    "their grace period again)", path, len(record) - len(kept))
    return kept


def _plausible_time(value, now: float) -> bool:
    """A start time a drain can have: a finite number of seconds, not in the future (an int of 400 digits
    would not even convert to a float)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= now + 60 and \
        math.isfinite(value)


def with_draining(runner: Runner, desired: Desired, kernel: KernelFacts, options: ProxyOptions,
                  keep_record: bool, partial: bool = False) -> tuple[Desired, list[Drain]]:
    """Keep the real servers that still have connections at weight 0 (kipvs.draining); the kernel's
    counters are read only for the virtual servers that lose a real server. `partial`: `desired` and
    `kernel` cover only some virtual servers (watch's event syncs), so the record's other drains keep
    their clocks."""
    candidates = leaving(desired, kernel, options)
    record = load_record(runner, options.drain_record)
    drains: list[Drain] = []
    new_record: dict[str, float] = {}
    if candidates:
        counters = read_connections(runner, set(candidates))
        desired, drains, new_record = drain(desired, candidates, counters, record, time.time(), options)
    if partial:
        seen = {vs.label() for vs in desired.virtual_servers} | {vs.label() for vs in kernel.rules}
        new_record = {**{name: since for name, since in record.items() if drained_service(name) not in seen},
                      **new_record}
    if keep_record and options.drain_record and new_record != record:
        _keep(runner, options.drain_record, new_record)
    return desired, drains


def _keep(runner: Runner, path: str, record: dict[str, float]) -> None:
    """A record that cannot be written only costs time: the next sync starts those drains' clocks again."""
    try:
        runner.write_file(path, json.dumps(record, sort_keys=True))
    except OSError as exc:
        log.error("cannot write the drain record %s (%s): drains that left their slice restart their "
                  "grace period next sync", path, exc.strerror or exc)


def with_timeouts(runner: Runner, kernel: KernelFacts, options: ProxyOptions) -> KernelFacts:
    """IPVS timeouts are read only when kipvs is asked to set some."""
    if any(options.timeouts) and kernel.timeouts is None and kernel.readable:
        return replace(kernel, timeouts=read_timeouts(runner))
    return kernel


def warn_missing_families(desired: Desired, node: NodeIdentity) -> None:
    for family in sorted({family_of(ip) for ip in desired.addresses} - set(desired.node_ips)):
        log.error("no IPv%d node IP for node %s: NodePorts and route sources of that family are skipped "
                  "(pass --node-ip)", family, node.name)


def sync_once(runner: Runner, snapshot: Snapshot, node: NodeIdentity, options: ProxyOptions,
              progress: Callable[[str], None] = lambda phase: None, known: KernelFacts | None = None,
              planner: Callable[..., Desired] = compute, latest: Callable[[], Snapshot] | None = None) -> SyncResult:
    """`progress` hears each phase (a terminal shows it; elsewhere it is a log line). `known`: the
    kernel as the previous sync verified it, to plan from without reading it again (watch mode).
    `planner`: how the desired state is computed (watch keeps its own, see kipvs.incremental).
    `latest`: the cluster as it is once the kernel has been read, planned instead of `snapshot` (watch)."""
    return finish_sync(runner, start_sync(runner, snapshot, node, options, progress, known, planner, latest),
                       options, progress)


@dataclass(frozen=True)
class Planned:
    """A sync with its desired state computed, not yet applied: what the rest of it needs."""

    desired: Desired
    kernel: KernelFacts
    snapshot: Snapshot  # without_endpoints: netfilter reads only Services and Nodes
    node: NodeIdentity
    started: float


def without_endpoints(snapshot: Snapshot) -> Snapshot:
    """What a sync still reads of the cluster once its desired state is computed: a caller that lets go of
    its own snapshot then (`kipvs sync`) frees the EndpointSlices, ~70 MB at 50,000 Services."""
    return replace(snapshot, endpoint_slices=())


def start_sync(runner: Runner, snapshot: Snapshot, node: NodeIdentity, options: ProxyOptions,
               progress: Callable[[str], None] = lambda phase: None, known: KernelFacts | None = None,
               planner: Callable[..., Desired] = compute, latest: Callable[[], Snapshot] | None = None) -> Planned:
    """The first half of sync_once: read the kernel, compute the desired state."""
    started = time.monotonic()
    progress("reading the kernel")
    kernel = known if known is not None else read_kernel_or_empty(runner)
    check_interface(kernel, options.interface)
    kernel = with_timeouts(runner, kernel, options)
    if latest is not None:  # changes that came while the kernel was read join this sync, not the next one
        snapshot = latest()
    progress(f"planning {len(snapshot.services)} services")
    desired = planner(snapshot, node, options, kernel)
    return Planned(desired, kernel, without_endpoints(snapshot), node, started)


def finish_sync(runner: Runner, planned: Planned, options: ProxyOptions,
                progress: Callable[[str], None] = lambda phase: None) -> SyncResult:
    """The second half of sync_once: apply and verify IPVS, then netfilter."""
    result = apply_and_verify(runner, planned.desired, planned.kernel, options, progress, planned.started)
    with_netfilter(runner, result, result.desired, planned.snapshot, planned.node.name, options)
    for line in result.remaining[:20]:
        log.error("still differs after sync: %s", line)
    result.seconds = time.monotonic() - planned.started
    return result


def apply_and_verify(runner: Runner, desired: Desired, kernel: KernelFacts, options: ProxyOptions,
                     progress: Callable[[str], None] = lambda phase: None, started: float | None = None,
                     scope: Callable[[KernelFacts], KernelFacts] | None = None) -> SyncResult:
    """Plan `desired` against `kernel`, apply, verify. `scope`: `desired` and `kernel` cover only part
    of the node (watch's event syncs), and what verification reads back is narrowed the same way."""
    started = time.monotonic() if started is None else started
    desired, drains = with_draining(runner, desired, kernel, options, keep_record=not runner.dry_run,
                                    partial=scope is not None)
    plan = plan_sync(desired, kernel, options)
    if not plan.empty:
        progress(f"applying {plan.command_count} commands")
    results = runner.apply(plan.batches)
    result = SyncResult(desired, plan, kernel, kernel_after=None if runner.dry_run else kernel, drains=drains)
    if not runner.dry_run and not plan.empty:
        progress("verifying")
        result.remaining, result.kernel_after, result.net_read = settle(runner, desired, kernel, options, plan,
                                                                        results, scope)
    result.seconds = time.monotonic() - started
    return result


def with_netfilter(runner: Runner, result: SyncResult, desired: Desired, snapshot: Snapshot, node_name: str,
                   options: ProxyOptions, known: NetfilterFacts | None = None) -> None:
    """Netfilter after IPVS: its rules come from the whole desired state (`desired`, which an event
    sync's `result` only has a part of); its commands and problems join the result. `known`: netfilter
    as the last turn left it (kipvs.netfilter.sync.sync_netfilter)."""
    if options.netfilter is not None:
        _merge_netfilter(result, sync_netfilter(runner, desired, snapshot, node_name, options.netfilter, known))


def _merge_netfilter(result: SyncResult, outcome: NetfilterOutcome) -> None:
    """Netfilter's commands, counts, leftovers and problems join the sync's own (same contract as IPVS)."""
    result.netfilter = outcome
    result.plan.batches += outcome.batches
    result.plan.counts.update(outcome.counts)
    result.remaining += outcome.remaining
    if outcome.problems:
        result.desired = replace(result.desired, problems=result.desired.problems + outcome.problems)


# How long to wait for IPv6's deferred local route of a new address, and how many repair rounds follow.
KERNEL_ROUTE_WAIT = 3.0
SETTLE_ROUNDS = 1


def settle(runner: Runner, desired: Desired, before: KernelFacts, options: ProxyOptions, plan: Plan,
           results: list[Result], scope: Callable[[KernelFacts], KernelFacts] | None = None
           ) -> tuple[list[str], KernelFacts, bool]:
    """Verify against the kernel read again and apply what the kernel did after our batch: IPv6
    inserts a new address's local route later, with the VIP as source, and that route must be
    repaired once it is there. Re-reads only what the applied batches could change, and IPVS only
    when `ipvsadm -R` reported a failing line (it exits 0 then, but says why on stderr). Returns what
    still differs, the kernel as last read or known (not narrowed by `scope`, which applies to planning
    only), and whether its addresses and routes were read whole (else they are `before`'s, or `before`'s
    with what a clean `ip -batch` did)."""
    scope = scope or (lambda kernel: kernel)
    new_v6 = {ip for ip in desired.addresses if family_of(ip) == 6} - \
        {a.ip for a in before.net.addresses_on(options.interface)}
    known, tools = _applied(before, desired, plan, results, options, scope)
    after, net_read = reread(runner, known, tools, _touched(plan)), "ip" in tools
    waited = 0.0
    while new_v6 and waited < KERNEL_ROUTE_WAIT and not new_v6 <= _kernel_made_routes(after, new_v6):
        time.sleep(0.1)
        waited += 0.1
        after, net_read = reread(runner, after, {"ip"}), True
    for _ in range(SETTLE_ROUNDS):
        again = plan_sync(desired, scope(after), options)
        if again.empty:
            return [], after, net_read
        runner.apply(again.batches)
        after, net_read = reread(runner, after, _tools(again), _touched(again)), net_read or "ip" in _tools(again)
    return plan_sync(desired, scope(after), options).command_lines(), after, net_read


def _applied(before: KernelFacts, desired: Desired, plan: Plan, results: list[Result], options: ProxyOptions,
             scope: Callable[[KernelFacts], KernelFacts]) -> tuple[KernelFacts, set[str]]:
    """The kernel to verify from and the tools to read again: a batch its tool reported applied whole
    (kipvs.applied) is known without a read: a silent `ipvsadm -R` (one process less per endpoint event,
    a whole-table read less per full sync), a clean `ip -batch` of IPv4 addresses and routes (two reads
    less per new or deleted Service). Timeouts (`--set`) and IPv6 are always read back."""
    tools = _tools(plan)
    clean = {tool for tool in tools if [r.clean for r in results if r.argv[:1] == (tool,)] == [True]}
    lines = {batch.tool: batch.lines for batch in plan.batches}
    known = before
    if "ipvsadm" in clean and not any(line.startswith("--set") for line in lines["ipvsadm"]):
        known = replace(known, rules=rules_after(plan.removed, desired, before))
        tools -= {"ipvsadm"}
    net = net_after(before.net, lines["ip"], options.interface) if "ip" in clean else None
    # The model must leave nothing for the plan to do, or the kernel is read instead of believed.
    if net is not None and not plan_addresses(desired, scope(replace(known, net=net)).net, options, Plan()):
        known = replace(known, net=net)
        tools -= {"ip"}
    return known, tools


def _tools(plan: Plan) -> set[str]:
    return {batch.tool for batch in plan.batches if batch.lines}


def _touched(plan: Plan) -> set[tuple] | None:
    """The services the ipvsadm lines act on; None (read the whole table) as soon as there are more
    than are verified one by one: parsing 13,000 lines of a full sync only to learn that took ~1 s
    in the lab guest."""
    touched: set[tuple] = set()
    for batch in plan.batches:
        for line in batch.lines if batch.tool == "ipvsadm" else ():
            if line.startswith("--set"):
                continue
            touched.add(service_key_of_line(line))
            if len(touched) > TARGETED_READ_MAX:
                return None
    return touched


def _kernel_made_routes(kernel: KernelFacts, addresses: set[str]) -> set[str]:
    return {r.dst for r in kernel.net.local_routes if r.dst in addresses and r.metric == 0}


def remove_owned(runner: Runner, options: ProxyOptions) -> tuple[Plan, list[str]]:
    """`cleanup` (and `watch --cleanup-on-exit`): returns the plan and what is still there afterwards."""
    kernel = read_kernel_or_empty(runner)
    check_interface(kernel, options.interface)
    plan = plan_cleanup(kernel, options)
    runner.apply(plan.batches)
    remaining = [] if runner.dry_run or plan.empty else plan_cleanup(read_kernel(runner), options).command_lines()
    if options.netfilter is not None:
        outcome = cleanup_netfilter(runner, options.netfilter.mode)
        plan.batches += outcome.batches
        plan.counts.update(outcome.counts)
        remaining += outcome.remaining
    return plan, remaining
