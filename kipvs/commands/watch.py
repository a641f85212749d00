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
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from functools import partial

from kipvs.commands.sync import NodeIdentity, SyncResult, sync_once
from kipvs.config import ProxyOptions
from kipvs.errors import KipvsError
from kipvs.facts.kernel import KernelFacts
from kipvs.lock import node_lock
from kipvs.metrics import Metrics
from kipvs.runner import Runner
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


def api_resources(api_client) -> list[Resource]:
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    discovery = client.DiscoveryV1Api(api_client)
    return [Resource("Service", "v1", core.list_service_for_all_namespaces),
            Resource("EndpointSlice", "discovery.k8s.io/v1", discovery.list_endpoint_slice_for_all_namespaces),
            Resource("Node", "v1", core.list_node)]


def own_node_only(resource: Resource, node_name: str) -> Resource:
    """Only this node's Node object matters (its addresses); every other node's status heartbeat
    (every ~10 s per node, cluster-wide) would otherwise wake the reflector and mark the state dirty."""
    return replace(resource, list_call=partial(resource.list_call, field_selector=f"metadata.name={node_name}"))


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
        self.syncs: list[SyncResult] = []
        # The kernel as the last converged sync verified it: event-driven syncs plan from it instead
        # of reading thousands of rules again; the periodic full resync reads the kernel for real.
        self.verified: KernelFacts | None = None
        resources = [own_node_only(r, node.name) if r.kind == "Node" else r for r in resources]
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
        lock = node_lock(self.settings.lock_file, self.settings.lock_timeout) if self.settings.lock_file \
            else nullcontext()
        started = time.monotonic()
        try:
            with lock:
                result = sync_once(self.runner, self.snapshot(), self.node, self.options,
                                   known=None if full else self.verified)
        except KipvsError as exc:
            log.error("sync failed: %s", exc)
            self.metrics.observe_error()
            self.verified = None
            return None
        self.verified = result.kernel_after if result.converged else None
        desired = result.desired
        self.metrics.observe_sync(time.monotonic() - started, result.converged, len(result.plan.command_lines()),
                                  len({(o.namespace, o.name) for o in desired.origins.values()}),
                                  len(desired.virtual_servers), sum(len(v.real_servers) for v in desired.virtual_servers))
        self.syncs.append(result)
        level = logging.INFO if not result.plan.empty or not result.converged else logging.DEBUG
        log.log(level, "%s", result.summary())
        return result

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
            if now < next_full and not self.dirty.wait(timeout=min(next_full - now, 1.0)):
                continue
            if self.stop.is_set():
                break
            # Debounce: let a burst of events settle into one sync.
            wait = self.settings.min_sync_period - (time.monotonic() - last_sync)
            if wait > 0 and self.stop.wait(wait):
                break
            self.dirty.clear()
            last_sync = time.monotonic()
            full = last_sync >= next_full
            self.sync(full=full)
            if full:
                next_full = time.monotonic() + self.settings.sync_period

    def shutdown(self) -> None:
        self.stop.set()
