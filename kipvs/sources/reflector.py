"""List+watch caches of Services, EndpointSlices and Nodes on the official client, built to survive.

Layers (as in kopf): `Reflector.run` retries forever with capped, jittered exponential
backoff; `_list_then_watch` lists (paged, one snapshot), then watches from the list's
resourceVersion; `_watch_once` is one stream with a server-side timeout and a client-side
read timeout, so a half-open connection cannot hang it. The official client's
`Watch.stream()` is not used: it retries a 410 once with the same stale version and raises,
where a reflector must re-list and turn vanished objects into deletions.
"""
from __future__ import annotations

import json
import logging
import random
import threading
from dataclasses import dataclass
from typing import Callable

from kipvs.sources.api import list_all

log = logging.getLogger("kipvs.reflector")


class Gone(Exception):
    """410: the resourceVersion or continue token is older than the server keeps."""


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


@dataclass
class Resource:
    kind: str
    api_version: str
    list_call: Callable  # e.g. CoreV1Api.list_service_for_all_namespaces
    # What the cache keeps of each object (EndpointSlices: their parsed form, a fraction of the dicts).
    compact: Callable[[dict], object] | None = None


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
        self.resource_version = ""
        self.synced = threading.Event()
        self.stats = ReflectorStats()
        self.thread = threading.Thread(target=self.run, name=f"reflector-{resource.kind}", daemon=True)

    def items(self) -> tuple[dict, ...]:
        with self.lock:
            return tuple(self.cache.values())

    def drain(self) -> tuple[bool, dict[tuple[str, str], dict | None]]:
        """(whether the cache was listed anew, so anything may have changed; the objects changed since
        the last drain by key, None for a deleted one), and start counting afresh."""
        with self.lock:
            relisted, changed = self.relisted, {key: self.cache.get(key) for key in self.changed}
            self.relisted, self.changed = False, set()
        return relisted, changed

    def start(self) -> "Reflector":
        self.thread.start()
        return self

    # --- layer 1: forever, with backoff ---

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self._list_then_watch()
            except Gone:
                self.stats.relists_410 += 1
                log.info("%s: resourceVersion expired (410): re-listing", self.resource.kind)
                continue
            except Exception as exc:  # API down, 5xx, 429, broken stream: keep the cache, retry later
                self.stats.errors += 1
                delay = self.backoff.next_delay()
                log.warning("%s: %s; retrying in %.1fs (the last programmed state stays)", self.resource.kind,
                            _describe(exc), delay)
                self.stop.wait(delay)

    # --- layer 2: list, then watch from the list's resourceVersion ---

    def _list_then_watch(self) -> None:
        items, rv = list_all(self.resource.list_call, self.resource.kind, self.resource.api_version,
                             self.request_timeout, gone=Gone)
        compact = self.resource.compact or (lambda obj: obj)
        fresh = {_key(obj): compact(obj) for obj in items}
        with self.lock:
            vanished = set(self.cache) - set(fresh)
            self.cache = fresh
            self.relisted, self.changed = True, set()
            self.resource_version = rv
        self.stats.lists += 1
        if vanished:
            log.info("%s: %d object(s) deleted while we were not watching", self.resource.kind, len(vanished))
        self.synced.set()
        self.backoff.reset()
        self.on_change(self.resource.kind)
        while not self.stop.is_set():
            self._watch_once()
            self.stats.watch_restarts += 1

    # --- layer 3: one watch stream ---

    def _watch_once(self) -> None:
        response = self.resource.list_call(
            watch=True, resource_version=self.resource_version, allow_watch_bookmarks=True,
            timeout_seconds=self.watch_timeout, _preload_content=False,
            _request_timeout=(self.request_timeout, self.watch_timeout + self.read_grace))
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

    def _apply(self, event: dict) -> None:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Gone(obj.get("message", "410"))
            raise RuntimeError(f"watch error {obj.get('code')}: {obj.get('message')}")
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if kind == "BOOKMARK":
            if rv:
                self.resource_version = rv
            return
        obj.setdefault("kind", self.resource.kind)
        obj.setdefault("apiVersion", self.resource.api_version)
        with self.lock:
            if kind == "DELETED":
                self.cache.pop(_key(obj), None)
            else:
                self.cache[_key(obj)] = self.resource.compact(obj) if self.resource.compact else obj
            self.changed.add(_key(obj))
            if rv:
                self.resource_version = rv
        self.stats.events += 1
        self.on_change(self.resource.kind)


def _describe(exc: Exception) -> str:
    status = getattr(exc, "status", None)
    if status:
        return f"API answered {status} {getattr(exc, 'reason', '')}".strip()
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
