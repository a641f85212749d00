"""`kipvs watch`: list+watch the API and keep the node converged, with the same sync as `kipvs sync`.

Reflector events only mark the state dirty. The loop waits until every cache has listed
once, then runs a sync from the caches when dirty (debounced by --min-sync-period, so a
burst of changes costs a few syncs) and at least every --sync-period (which also repairs
drift made by hand). Syncs never overlap. While the API is unreachable the caches keep
their last state, so nothing that works is torn down; the next sync after recovery
applies what changed meanwhile.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace

from kipvs.config import (ProxyOptions, RunOptions, SourceOptions, WatchRequest, metrics_address, parse_duration,
                          parse_listen_address)
from kipvs.config_file import write_atomically
from kipvs.environment import Environment
from kipvs.errors import ExitStatus, KipvsError
from kipvs.cluster import (endpoint_slice_spec, find_node, parse_endpoint_slice_early, parse_service_early,
                           service_spec)
from kipvs.desired import Desired
from kipvs.facts.kernel import KernelFacts
from kipvs.healthcheck import HealthServers, node_eligible, wanted_checks, wants_health_check
from kipvs.incremental import Change, IncrementalDesired, KernelIndex
from kipvs.lock import node_lock
from kipvs.metrics import Metrics, serve
from kipvs.netfilter.backend import NetfilterFacts
from kipvs.output import ProblemLog
from kipvs.programming_latency import trigger_time
from kipvs.reconcile import (NodeIdentity, SyncResult, apply_and_verify, check_complete, node_facts, remove_owned,
                             sync_once, warn_missing_families, with_netfilter)
from kipvs.runner import Runner
from kipvs.service_metrics import TrafficMetrics
from kipvs.sources import Snapshot
from kipvs.sources.reflector import Backoff, Reflector, Resource

log = logging.getLogger("kipvs.watch")


@dataclass(frozen=True)
class WatchSettings:
    min_sync_period: float = 0.2
    sync_period: float = 300.0
    watch_timeout: int = 300
    read_grace: float = 30.0
    request_timeout: float = 30.0
    backoff_initial: float = 0.5
    backoff_cap: float = 30.0
    lock_file: str | None = None
    lock_timeout: float = 30.0
    drain_recheck: float = 5.0  # while real servers drain, sync this often to delete them once idle


def api_resources(api_client, node_name: str | None = None) -> list[Resource]:
    """With `node_name`, only that Node is watched: other nodes' heartbeats must not wake kipvs up.
    Services and EndpointSlices are kept parsed (kipvs.cluster's early parse), not as served."""
    from kipvs.sources.api import list_endpoint_slices, list_nodes, list_services

    return [Resource("Service", "v1", list_services(api_client), compact=parse_service_early),
            Resource("EndpointSlice", "discovery.k8s.io/v1", list_endpoint_slices(api_client),
                     compact=parse_endpoint_slice_early, trigger_time=trigger_time),
            Resource("Node", "v1", list_nodes(api_client, node_name))]


class Watcher:
    def __init__(self, resources: list[Resource], runner: Runner, node: NodeIdentity, options: ProxyOptions,
                 settings: WatchSettings, metrics: Metrics | None = None, origin: str = "api"):
        self.runner = runner
        self.node = node
        self.options = options
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.origin = origin
        self.stop = threading.Event()
        self.dirty = threading.Event()
        # Only the last result is kept: a long-running service must not grow with every sync.
        self.last_result: SyncResult | None = None
        self.sync_count = 0
        self.problem_log = ProblemLog()
        self.health: HealthServers | None = None  # healthCheckNodePort servers, when run_watch serves them
        # The kernel as the last converged sync verified it: event-driven syncs plan from it instead
        # of reading thousands of rules again; the periodic full resync reads the kernel for real.
        self.drain_check_at = float("inf")  # monotonic time of the next re-check of draining servers
        self.draining: set[tuple] = set()  # virtual servers with a draining real server (re-checked)
        self.last_change: Change | None = None  # what the last event sync recomputed
        self.health_problems: list = []  # from the last health-check update
        self.netfilter_problems: tuple = ()  # from the last netfilter sync (event syncs may skip it)
        # Netfilter as the last sync left it, when that is known without reading it back (set members
        # written by a clean `ipset restore`): event syncs plan from it; the periodic resync reads.
        self.netfilter_facts: NetfilterFacts | None = None
        self.kernel: KernelIndex | None = None
        # Every Service's desired state, kept between syncs: an event recomputes only what it affects.
        self.state: IncrementalDesired | None = None
        self.sync_lock = threading.Lock()  # syncs never overlap (tests call sync() beside the loop)
        self.reflectors = [
            Reflector(r, self._changed, self.stop, settings.watch_timeout, settings.read_grace,
                      settings.request_timeout, Backoff(settings.backoff_initial, settings.backoff_cap))
            for r in resources]
        self.metrics.reflector_stats = {r.resource.kind: r.stats for r in self.reflectors}

    def _changed(self, _kind: str) -> None:
        self.dirty.set()

    def snapshot(self) -> Snapshot:
        services, slices, nodes = (r.items() for r in self.reflectors)
        return Snapshot(services, slices, nodes, self.origin)

    def synced(self) -> bool:
        return all(r.synced.is_set() for r in self.reflectors)

    def sync(self, full: bool = True) -> SyncResult | None:
        """`full`: read the kernel and recompute every Service (the periodic resync, which repairs
        drift); otherwise only what changed since the last sync, planned against the kernel that sync
        verified (a full sync all the same when there is no such kernel, or after a re-list)."""
        with self.sync_lock:
            return self._sync(full)

    def _sync(self, full: bool) -> SyncResult | None:
        lock = node_lock(self.settings.lock_file, self.settings.lock_timeout) if self.settings.lock_file \
            else nullcontext()
        started = time.monotonic()
        (services_relisted, services, _), (slices_relisted, slices, triggers), (nodes_relisted, nodes, _) = \
            (r.drain() for r in self.reflectors)
        full = full or self.state is None or self.kernel is None or services_relisted or slices_relisted or \
            ((nodes_relisted or bool(nodes)) and self._node_changed())
        try:
            if full:
                snapshot = self.snapshot()
                # Without this node's Node, NodePorts and node IPs are unknown: stop, as kube-router does.
                check_complete(snapshot, self.node, from_file=False)
                with lock:
                    result = sync_once(self.runner, snapshot, self.node, self.options, planner=self._rebuild,
                                       latest=lambda: self._latest(snapshot, triggers))
                self.kernel = KernelIndex(result.kernel_after, self.options.interface) \
                    if result.converged and result.kernel_after is not None else None
            else:
                with lock:
                    result = self._sync_change(services, slices, started)
        except KipvsError as exc:
            log.error("sync failed: %s", exc)
            self.metrics.observe_error()
            self.kernel = None  # the next sync reads the kernel and recomputes everything
            self.netfilter_facts = None
            if self.drain_check_at != float("inf"):  # try the drains again later, not in a tight loop
                self.drain_check_at = time.monotonic() + self.settings.drain_recheck
            return None
        self.metrics.observe_sync(time.monotonic() - started, result.converged, result.plan.command_count,
                                  *self.state.counts(), len(result.remaining), full=full)
        if result.converged:  # what a sync that did not converge drops, kube-proxy's failed syncs drop too
            self.metrics.observe_programmed(triggers, time.time())
        self.last_result = result
        self._track_drains(result, None if full else self.last_change)
        self.sync_count += 1
        if self.health and (full or self._health_affected(services, bool(nodes))):
            snapshot = self.snapshot()
            checks = wanted_checks(snapshot, self.node.name, self.options.node_port_range)
            self.health_problems = self.health.update(checks, list(result.desired.node_ips.values()),
                                                      node_eligible(snapshot, self.node.name))
        if result.netfilter is not None:
            self.netfilter_problems = result.netfilter.problems
            self.netfilter_facts = result.netfilter.facts_after
            self._keep_backend(result.netfilter.backend)
        carried = () if result.netfilter is not None else tuple(self.netfilter_problems)
        held = (f"removals held: {result.held_line()}",) if result.held else ()
        self.problem_log.update(result.desired.problems + carried + tuple(self.health_problems) + held)
        level = logging.INFO if not result.plan.empty or not result.converged else logging.DEBUG
        if full:
            log.log(level, "%s", result.summary())
        else:
            log.log(level, "sync of %d changed service(s): %s", self.state.last_planned, result.summary())
        return result

    def _latest(self, snapshot: Snapshot, triggers: list[float]) -> Snapshot:
        """The caches once a full sync has read the kernel (seconds in a large node): what changed
        meanwhile is drained into this sync (its trigger times with it), so it waits for the plan and
        the writes only, not for the whole sync and then a sync of its own."""
        drained = [r.drain() for r in self.reflectors]
        if not any(d.relisted or d.changed for d in drained):
            return snapshot
        for d in drained:
            triggers.extend(d.trigger_times)
        latest = self.snapshot()
        check_complete(latest, self.node, from_file=False)
        return latest

    def _rebuild(self, snapshot: Snapshot, node: NodeIdentity, options: ProxyOptions, kernel: KernelFacts) -> Desired:
        """The planner of a full sync: every Service recomputed, kept for the event syncs that follow."""
        facts = node_facts(snapshot, node, options, kernel)
        self.state = IncrementalDesired(node.name, facts.node_ips, facts.local_ips, options, facts.host_addresses,
                                        facts.problems, facts.zone,
                                        last_readable=self.state.last_readable if self.state else None)
        self.state.rebuild(snapshot.services, snapshot.endpoint_slices)
        desired = self.state.desired()
        warn_missing_families(desired, node)
        return desired

    def _keep_backend(self, backend: str | None) -> None:
        """`--iptables-mode auto` decides once per run, as iptables-wrapper does once per container start:
        later syncs read and write only the chosen backend (detection read both backends' tables each time)."""
        netfilter = self.options.netfilter
        if netfilter is not None and netfilter.mode == "auto" and backend:
            log.info("iptables backend %s detected: used for the rest of this run", backend)
            self.options = replace(self.options, netfilter=replace(netfilter, mode=backend))

    def _sync_change(self, services: dict, slices: dict, started: float) -> SyncResult:
        """Recompute the changed Services (and those sharing their virtual servers); plan and verify
        only their virtual servers, addresses and routes against the verified kernel."""
        index = self.kernel
        change = self.state.apply(services, slices)
        if self.draining:  # draining servers are re-checked with every event sync
            change = replace(change, keys=change.keys | self.draining)
        self.last_change = change
        view = index.view(change)
        wanted = self.state.view(change)
        result = apply_and_verify(self.runner, wanted, view, self.options, started=started,
                                  scope=lambda kernel: index.narrow(kernel, change))
        if self.options.netfilter is not None and (services or self._local_endpoints_changed(wanted, view)):
            with_netfilter(self.runner, result, self.state.desired(), self.snapshot(), self.node.name, self.options,
                           known=self.netfilter_facts)
        if result.converged and result.kernel_after is not None:
            index.update(view, result.kernel_after, change, result.net_read)
        else:
            self.kernel = None
        return result

    def _local_endpoints_changed(self, wanted: Desired, view: KernelFacts) -> bool:
        """Whether an endpoint event changes netfilter's input: virtual servers come or go, or this node's
        endpoints among them change (hairpin). Remote endpoint churn, the common event, does not."""
        if {vs.key for vs in wanted.virtual_servers} != {vs.key for vs in view.rules}:
            return True
        ours = self.state.local_backends

        def local(servers) -> set[tuple]:  # the hairpin set's members: endpoint, protocol, port
            return {(vs.protocol, rs.ip, rs.port) for vs in servers for rs in vs.real_servers if rs.key in ours}
        return local(wanted.virtual_servers) != local(view.rules)

    def _track_drains(self, result: SyncResult, change: Change | None) -> None:
        """Which virtual servers still drain: a full sync sees them all, an event sync only its own."""
        if change is None:
            self.draining = set()
        else:
            self.draining -= change.keys
        self.draining |= {d.service for d in result.drains}
        self.drain_check_at = time.monotonic() + self.settings.drain_recheck if self.draining else float("inf")

    def _health_affected(self, services: dict, nodes_changed: bool) -> bool:
        """Whether an event sync can change a health check: a checked Service (or its endpoints) changed,
        a changed Service may now want one, or this node's Node changed (its eligibility)."""
        return nodes_changed or bool(self.last_change.services & set(self.health.checks)) or \
            any(wants_health_check(obj) for obj in services.values() if obj is not None)

    def origins(self) -> dict:
        """Every virtual server's Service, for the traffic metrics (a copy: the sync thread changes it)."""
        return dict(self.state.origins) if self.state else {}

    def _node_changed(self) -> bool:
        """Whether this node's Node is gone or now gives other node IPs or another zone (its heartbeats
        alone change nothing); a full sync then applies it, or stops as it does without the Node."""
        snapshot = Snapshot(nodes=self.reflectors[2].items())
        if find_node(snapshot.nodes, self.node.name) is None:
            return True
        facts = node_facts(snapshot, self.node, self.options, self.kernel.kernel)
        return facts.node_ips != self.state.node_ips or facts.zone != self.state.zone

    def run(self) -> None:
        for reflector in self.reflectors:
            reflector.start()
        log.info("watching %s as node %s; first sync once every cache has listed", self.origin, self.node.name)
        while not self.stop.is_set() and not self.synced():
            self.stop.wait(0.05)
        next_full = 0.0
        last_sync = 0.0
        while not self.stop.is_set():
            now = time.monotonic()
            due = min(next_full, self.drain_check_at)
            if now < due and not self.dirty.wait(timeout=min(due - now, 1.0)):
                continue
            if self.stop.is_set():
                break
            # Debounce: let a burst of events settle into one sync.
            wait = self.settings.min_sync_period - (time.monotonic() - last_sync)
            if wait > 0 and self.stop.wait(wait):
                break
            if self._hold_for_first_slices():
                break
            self.dirty.clear()
            last_sync = time.monotonic()
            full = last_sync >= next_full
            self.sync(full=full)
            if full:
                next_full = time.monotonic() + self.settings.sync_period

    def _hold_for_first_slices(self) -> bool:
        """Wait up to --min-sync-period while a new Service's first EndpointSlice is on its way: the
        controller writes it just after the Service, and one sync of both costs one batch per tool
        where two syncs would start `ipvsadm` a second time for the endpoints. True when stopped meanwhile."""
        deadline = time.monotonic() + self.settings.min_sync_period
        while not self.stop.is_set() and self._awaiting_first_slices():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.dirty.clear()  # the sync that follows drains whatever else arrives meanwhile
            self.dirty.wait(left)  # shutdown() sets it too
        return self.stop.is_set()

    def _awaiting_first_slices(self) -> bool:
        """Whether a changed Service that this watch has not programmed yet selects pods (its slices are
        the controller's to write) and has no EndpointSlice yet, applied or pending."""
        if self.state is None:  # the first sync: the lists hold everything there is
            return False
        new = set()
        for obj in self.reflectors[0].pending():
            spec = service_spec(obj, [])
            key = (spec.namespace, spec.name)
            if spec.selects_pods and spec.skip_reason is None and key not in self.state.services:
                new.add(key)
        if not new:
            return False
        for obj in self.reflectors[1].pending():
            spec = endpoint_slice_spec(obj, [])
            if spec is not None:
                new.discard((spec.namespace, spec.service))
        return any(not self.state.slices_of.get(key) for key in new)

    def shutdown(self) -> None:
        self.stop.set()
        self.dirty.set()  # wakes a loop that waits for events


def write_effective_config(path: str, text: str) -> None:
    """What watch runs with, for show/sync/cleanup/fix-routes on this node; a failure costs only that."""
    if not path or not text:
        return
    try:
        write_atomically(path, text)
        log.info("settings written to %s", path)
    except OSError as exc:
        log.warning("cannot write the effective configuration %s (%s): show and sync on this node will not "
                    "find watch's settings", path, exc.strerror)


def run_watch(env: Environment, source: SourceOptions, options: ProxyOptions, run: RunOptions,
              request: WatchRequest, effective: str = "") -> ExitStatus:
    """`effective`: the settings as a configuration file, written to request.effective_config once the
    options are known to be good."""
    import signal

    settings = WatchSettings(min_sync_period=parse_duration(request.min_sync_period, "--min-sync-period"),
                             sync_period=parse_duration(request.sync_period, "--sync-period"),
                             lock_file=run.lock_file, lock_timeout=run.lock_timeout)
    metrics_addr = metrics_address(request.metrics_addr, request.metrics_port)
    listen = parse_listen_address(metrics_addr, "--metrics-addr") if metrics_addr else None
    max_age = parse_duration(request.health_max_age, "--health-max-age")
    healthz = parse_listen_address(request.healthz_bind_address, "--healthz-bind-address") \
        if request.healthz_bind_address else None
    runner = env.runner(False, run.command_timeout)  # its helper forks before the API client is even loaded
    from kipvs.sources.api import load_client_config

    api_client = load_client_config(source.kubeconfig, source.master)
    write_effective_config(request.effective_config, effective)
    metrics = Metrics()
    if listen:
        serve(metrics, listen, max_age)
    watcher = Watcher(api_resources(api_client, source.node_name), runner,
                      NodeIdentity(source.node_name, source.node_ips), options, settings, metrics,
                      origin=api_client.configuration.host)
    metrics.add_collector(TrafficMetrics(runner, watcher.origins))
    watcher.health = HealthServers(lambda: (age := metrics.age()) is not None and age <= max_age,
                                   lambda: metrics.last_success or None, time.time)
    if healthz:
        watcher.health.serve_node(healthz)

    def stop(signum, _frame):
        log.warning("%s: finishing the current sync, then exiting", signal.Signals(signum).name)
        watcher.shutdown()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    watcher.run()
    watcher.health.close()
    if request.cleanup_on_exit:
        with node_lock(run.lock_file, run.lock_timeout):
            plan, _ = remove_owned(runner, options)
        log.warning("cleanup on exit: %s", plan.summary())
        if request.effective_config and os.path.isfile(request.effective_config):
            os.unlink(request.effective_config)  # nothing of these settings is left on the node
    else:
        log.warning("exiting; IPVS rules, addresses and routes stay in place")
    return ExitStatus.OK
