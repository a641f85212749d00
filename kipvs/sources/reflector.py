"""List+watch caches of Services, EndpointSlices and Nodes on the official client, built to survive
and to cost the API server as little as client-go's reflector does.

Layers (as in kopf): `Reflector.run` retries forever with capped, jittered exponential
backoff; it lists (paged, one snapshot) only at start and after 410 Gone, and otherwise
watches from the last resourceVersion it saw (an event's, or a bookmark's: bookmarks are
requested), so a dropped stream costs one new WATCH, not a LIST of the whole cluster.
`_watch_once` is one stream with a server-side timeout and a client-side read timeout, so a
half-open connection cannot hang it. The official client's `Watch.stream()` is not used: it
retries a 410 once with the same stale version and raises, where a reflector must re-list and
turn vanished objects into deletions.
"""
from __future__ import annotations

import json
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Callable, NamedTuple

from kipvs.sources.api import list_all

log = logging.getLogger("kipvs.reflector")


class Gone(Exception):
    """410: the resourceVersion or continue token is older than the server keeps."""


class StaleCache(Exception):
    """The API server's cache is behind the resourceVersion a list asked for (it answers 504)."""


@dataclass
class Backoff:
    initial: float = 0.5
    cap: float = 30.0
    attempt: int = 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.initial * (2 ** self.attempt))
        self.attempt += 1
        return delay * random.uniform(0.5, 1.0)  # full jitter's gentler cousin: never zero

    def reset(self) -> None:
        self.attempt = 0


@dataclass
class ReflectorStats:
    lists: int = 0
    relists_410: int = 0
    watch_restarts: int = 0
    errors: int = 0
    events: int = 0
    watches: int = 0  # watch requests the server accepted


@dataclass
class Resource:
    kind: str
    api_version: str
    list_call: Callable  # e.g. CoreV1Api.list_service_for_all_namespaces
    # What the cache keeps of each object (EndpointSlices: their parsed form, a fraction of the dicts).
    compact: Callable[[dict], object] | None = None
    # When the change an event carries was triggered (unix time; EndpointSlices' last-change-trigger-time),
    # kept until drained so the sync that writes it can time it: kipvs/programming_latency.py.
    trigger_time: Callable[[dict], float | None] | None = None


class Drained(NamedTuple):
    relisted: bool  # the cache was listed anew: anything may have changed
    changed: dict  # the objects changed since the last drain by key, None for a deleted one
    trigger_times: list  # the changes' trigger times (Resource.trigger_time), oldest first


def _key(obj: dict) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace") or "", meta.get("name") or "")


class Reflector:
    def __init__(self, resource: Resource, on_change: Callable[[str], None], stop: threading.Event,
                 watch_timeout: int = 300, read_grace: float = 30.0, request_timeout: float = 30.0,
                 backoff: Backoff | None = None):
        self.resource = resource
        self.on_change = on_change
        self.stop = stop
        self.watch_timeout = watch_timeout
        self.read_grace = read_grace
        self.request_timeout = request_timeout
        self.backoff = backoff or Backoff()
        self.lock = threading.Lock()
        self.cache: dict[tuple[str, str], dict] = {}
        # What changed since the consumer last drained: keys of objects, or everything after a list.
        self.changed: set[tuple[str, str]] = set()
        self.relisted = False
        self.resource_version = ""  # the last one seen: a list's, an event's or a bookmark's
        self.must_list = True  # at start and after 410 Gone; a dropped stream resumes watching instead
        self.consistent_list = False  # the next list reads the latest state (see list_version)
        self.triggers: dict[tuple[str, str], list[float]] = {}  # by key, since the last drain
        self.started = time.time()  # changes triggered before the watch began are not its to time
        self.synced = threading.Event()
        self.stats = ReflectorStats()
        self.thread = threading.Thread(target=self.run, name=f"reflector-{resource.kind}", daemon=True)

    def items(self) -> tuple[dict, ...]:
        with self.lock:
            return tuple(self.cache.values())

    def drain(self) -> Drained:
        """What changed since the last drain, and start counting afresh."""
        with self.lock:
            relisted, changed = self.relisted, {key: self.cache.get(key) for key in self.changed}
            triggers = sorted(t for times in self.triggers.values() for t in times)
            self.relisted, self.changed, self.triggers = False, set(), {}
        return Drained(relisted, changed, triggers)

    def pending(self) -> list:
        """The objects changed since the last drain that are still there, as cached; nothing is drained."""
        with self.lock:
            return [self.cache[key] for key in self.changed if key in self.cache]

    def start(self) -> "Reflector":
        self.thread.start()
        return self

    # --- layer 1: forever, with backoff; a LIST only when the watch cannot resume ---

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                if self.must_list:
                    self._list()
                self._watch_once()
            except Gone as exc:
                self.stats.relists_410 += 1
                self.must_list = True
                log.info("%s: %s (410): re-listing", self.resource.kind, exc)
            except Exception as exc:  # API down, 5xx, 429, broken stream: keep the cache, resume later
                self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        self.stats.errors += 1
        delay = self.backoff.next_delay()
        log.warning("%s: %s; retrying in %.1fs (the last programmed state stays)", self.resource.kind,
                    _describe(exc), delay)
        self.stop.wait(delay)

    # --- layer 2: one list, from the API server's watch cache where that is consistent enough ---

    def list_version(self) -> dict:
        """What a LIST may answer with (the official client's keyword arguments).

        At start: resourceVersion "0" (any state the server has), served from its watch cache
        without a round trip to etcd; kipvs has seen nothing yet that the answer could contradict.
        After a 410, consistency needs more: the re-list must not be older than the state kipvs has
        already programmed (a lagging replica's cache at "0" could bring deleted Services back for a
        sync), so it asks for NotOlderThan the last resourceVersion seen, still from the cache. When
        even that cannot be served (the continue token expired, or the cache is behind that version:
        "Too large resource version"), the next list is a consistent read of the latest state
        (resourceVersion unset), as client-go's reflector does.
        """
        if self.consistent_list:
            return {}
        return {"resource_version": self.resource_version or "0", "resource_version_match": "NotOlderThan"}

    def _list(self) -> None:
        version = self.list_version()
        compact = self.resource.compact or (lambda obj: obj)
        try:
            # Each object is compacted as its page is decoded: a page of raw objects at most is alive.
            items, rv = list_all(self.resource.list_call, self.resource.kind, self.resource.api_version,
                                 self.request_timeout, gone=Gone, first_page=version,
                                 item=lambda obj: (_key(obj), compact(obj)))
        except Gone:
            self.consistent_list = True
            raise
        except Exception as exc:
            if _too_large_version(exc):
                self.consistent_list = True
                raise StaleCache(f"the server's cache is behind resourceVersion {self.resource_version}") from None
            raise
        fresh = dict(items)
        del items
        with self.lock:
            vanished = set(self.cache) - set(fresh)
            self.cache = fresh
            self.relisted, self.changed = True, set()
            self.resource_version = rv
        self.must_list = self.consistent_list = False
        self.stats.lists += 1
        if vanished:
            log.info("%s: %d object(s) deleted while we were not watching", self.resource.kind, len(vanished))
        self.synced.set()
        self.backoff.reset()
        self.on_change(self.resource.kind)

    # --- layer 3: one watch stream, from the last resourceVersion seen ---

    def _watch_once(self) -> None:
        try:
            response = self.resource.list_call(
                watch=True, resource_version=self.resource_version, allow_watch_bookmarks=True,
                timeout_seconds=self.watch_timeout, _preload_content=False,
                _request_timeout=(self.request_timeout, self.watch_timeout + self.read_grace))
        except Exception as exc:
            if getattr(exc, "status", None) == 410:  # the official client's ApiException
                raise Gone(f"watch from resourceVersion {self.resource_version}: {exc}") from None
            raise
        self.stats.watches += 1
        self.backoff.reset()  # accepted: a stream cut from here on waits the initial delay, not the last one
        try:
            buffer = b""
            for chunk in response.stream(amt=65536, decode_content=True):
                if self.stop.is_set():
                    return
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        self._apply(json.loads(line))
        finally:
            response.release_conn()
            if not self.stop.is_set():
                self.stats.watch_restarts += 1

    def _apply(self, event: dict) -> None:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if _expired(obj):
                raise Gone(obj.get("message") or "410")
            raise RuntimeError(f"watch error {obj.get('code')}: {obj.get('message')}")
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if kind == "BOOKMARK":
            if rv:
                self.resource_version = rv
            return
        obj.setdefault("kind", self.resource.kind)
        obj.setdefault("apiVersion", self.resource.api_version)
        key = _key(obj)
        triggered = self.resource.trigger_time(obj) if self.resource.trigger_time and kind != "DELETED" else None
        with self.lock:
            if kind == "DELETED":
                self.cache.pop(key, None)
                self.triggers.pop(key, None)  # its annotation dates from its last update, not the deletion
            else:
                self.cache[key] = self.resource.compact(obj) if self.resource.compact else obj
                if triggered is not None and triggered > self.started:
                    self.triggers.setdefault(key, []).append(triggered)
            self.changed.add(key)
            if rv:
                self.resource_version = rv
        self.stats.events += 1
        self.on_change(self.resource.kind)


def _expired(status: dict) -> bool:
    """Whether a watch's ERROR event says its resourceVersion is gone (410 Expired / Gone,
    "too old resource version"): only a re-list recovers from that."""
    return status.get("code") == 410 or status.get("reason") in ("Expired", "Gone") or \
        "too old resource version" in str(status.get("message") or "")


def _too_large_version(exc: Exception) -> bool:
    """The API server's answer to a list NotOlderThan a version its cache has not reached yet
    (504 Timeout, cause ResourceVersionTooLarge)."""
    if getattr(exc, "status", None) != 504:
        return False
    body = getattr(exc, "body", None) or ""
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    return "ResourceVersionTooLarge" in body or "Too large resource version" in body


def _describe(exc: Exception) -> str:
    status = getattr(exc, "status", None)
    if status:
        return f"API answered {status} {getattr(exc, 'reason', '')}".strip()
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
