"""A protocol fake of the Kubernetes API server, kept for one kind of fault: error answers on demand.

kipvs is tested against a real kube-apiserver + etcd (tests/kube/kubepair.py): lists, paging,
watches, bookmarks, compaction and 410s, outages, RBAC. A real server cannot be made to answer
the next N requests with 500 or 429, so test_watch_injected_errors.py uses this instead. It speaks
what the official client needs for cluster-wide lists and watches of Services, EndpointSlices and
Nodes: one global resourceVersion; typed lists with `limit`/`continue` from one snapshot and
`labelSelector` (equality); `?watch=true` as one JSON event per line in a chunked response,
replaying events newer than `resourceVersion`, then live ones, with `BOOKMARK`s. Faults: drop
every watch connection, fail the next N requests with 500 or 429. Every request is logged with
its time (to see backoff).
"""
from __future__ import annotations

import base64
import copy
import json
import os
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

RESOURCES = {
    # path -> (kind, apiVersion, namespaced)
    "/api/v1/services": ("Service", "v1", True),
    "/api/v1/nodes": ("Node", "v1", False),
    "/apis/discovery.k8s.io/v1/endpointslices": ("EndpointSlice", "discovery.k8s.io/v1", True),
}
KIND_PATH = {kind: path for path, (kind, _, _) in RESOURCES.items()}


@dataclass
class Event:
    rv: int
    path: str
    type: str
    object: dict


def status(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}


class Store:
    """Objects, the event history and the faults; all under one condition variable."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.rv = 100
        self.objects: dict[str, dict[tuple[str, str], dict]] = {path: {} for path in RESOURCES}
        self.events: list[Event] = []
        self.generation = 0  # bumped to drop every open watch
        self.failures: list[int] = []
        self.requests: list[tuple[float, str, str, int]] = []  # (time, LIST|WATCH, path, status)
        self.bookmark_interval = 1.0

    # --- writes (tests call these directly) ---

    def _write(self, kind: str, obj: dict, event_type: str) -> dict:
        path = KIND_PATH[kind]
        with self.cond:
            self.rv += 1
            obj = copy.deepcopy(obj)
            meta = obj.setdefault("metadata", {})
            meta["resourceVersion"] = str(self.rv)
            meta.setdefault("uid", f"uid-{kind}-{meta.get('namespace', '')}-{meta['name']}")
            obj["kind"], obj["apiVersion"] = kind, RESOURCES[path][1]
            key = (meta.get("namespace", ""), meta["name"])
            if event_type == "DELETED":
                self.objects[path].pop(key, None)
            else:
                self.objects[path][key] = obj
            self.events.append(Event(self.rv, path, event_type, obj))
            self.cond.notify_all()
            return obj

    def apply(self, obj: dict) -> dict:
        path = KIND_PATH[obj["kind"]]
        meta = obj["metadata"]
        exists = (meta.get("namespace", ""), meta["name"]) in self.objects[path]
        return self._write(obj["kind"], obj, "MODIFIED" if exists else "ADDED")

    def delete(self, kind: str, name: str, namespace: str = "") -> None:
        path = KIND_PATH[kind]
        with self.cond:
            last = self.objects[path].get((namespace, name))
        if last is not None:
            self._write(kind, last, "DELETED")

    # --- faults ---

    def drop_watches(self) -> None:
        with self.cond:
            self.generation += 1
            self.cond.notify_all()

    def fail_next(self, count: int, code: int = 500) -> None:
        with self.cond:
            self.failures += [code] * count


def _matches(obj: dict, selector: str | None) -> bool:
    if not selector:
        return True
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in selector.split(","):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.split("==", 1) if "==" in term else term.split("=", 1)
            if labels.get(key) != value:
                return False
        elif term and term not in labels:
            return False
    return True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "APIServer"

    def log_message(self, *_):
        pass

    def send_json(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        store = self.server.store
        url = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        with store.cond:
            failure = store.failures.pop(0) if store.failures else None
            store.requests.append((time.monotonic(), "WATCH" if query.get("watch") in ("true", "1") else "LIST",
                                   url.path, failure or 200))
        if failure:
            reason = "TooManyRequests" if failure == 429 else "InternalError"
            self.send_json(failure, status(failure, reason, f"injected {failure}"))
            return
        if url.path not in RESOURCES:
            self.send_json(404, status(404, "NotFound", f"the server could not find {url.path}"))
            return
        if query.get("watch") in ("true", "1"):
            self.watch(url.path, query)
        else:
            self.list(url.path, query)

    def list(self, path: str, query: dict) -> None:
        store = self.server.store
        kind, api_version, _ = RESOURCES[path]
        token = query.get("continue")
        if token:
            state = json.loads(base64.b64decode(token))
            snapshot = self.server.snapshots.get(state["id"])
            if snapshot is None:
                self.send_json(410, status(410, "Expired", "The provided continue parameter is too old to display "
                                                           "a consistent list result. You can start a new list "
                                                           "without the continue parameter."))
                return
            rv, items, offset = state["rv"], snapshot, state["offset"]
        else:
            with store.cond:
                rv = store.rv
                items = [copy.deepcopy(o) for _, o in sorted(store.objects[path].items())
                         if _matches(o, query.get("labelSelector"))]
            offset = 0
        limit = int(query.get("limit") or 0)
        page = items[offset:offset + limit] if limit else items[offset:]
        meta = {"resourceVersion": str(rv)}
        if limit and offset + limit < len(items):
            snapshot_id = token and json.loads(base64.b64decode(token))["id"] or os.urandom(6).hex()
            self.server.snapshots[snapshot_id] = items
            meta["continue"] = base64.b64encode(json.dumps(
                {"id": snapshot_id, "rv": rv, "offset": offset + limit}).encode()).decode()
            meta["remainingItemCount"] = len(items) - offset - limit
        self.send_json(200, {"kind": f"{kind}List", "apiVersion": api_version, "metadata": meta, "items": page})

    def chunk(self, body: dict) -> None:
        data = json.dumps(body).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def watch(self, path: str, query: dict) -> None:
        store = self.server.store
        kind, api_version, _ = RESOURCES[path]
        since = int(query.get("resourceVersion") or 0)
        timeout = float(query.get("timeoutSeconds") or 1800)
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        selector = query.get("labelSelector")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        deadline = time.monotonic() + timeout
        with store.cond:
            generation = store.generation
            if since == 0:  # "any": start with the current state as ADDED events
                pending = [Event(store.rv, path, "ADDED", o) for o in store.objects[path].values()]
                since = store.rv
            else:
                pending = [e for e in store.events if e.path == path and e.rv > since]
        try:
            last_bookmark = time.monotonic()
            while True:
                for event in pending:
                    if _matches(event.object, selector):
                        self.chunk({"type": event.type, "object": event.object})
                    since = max(since, event.rv)
                with store.cond:
                    while True:
                        now = time.monotonic()
                        if store.generation != generation or now >= deadline:
                            return
                        pending = [e for e in store.events if e.path == path and e.rv > since]
                        if pending:
                            break
                        if bookmarks and now - last_bookmark >= store.bookmark_interval:
                            break
                        store.cond.wait(max(0.01, min(0.2, deadline - now)))
                if not pending and bookmarks:
                    last_bookmark = time.monotonic()
                    self.chunk({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version,
                                                               "metadata": {"resourceVersion": str(store.rv)}}})
                    since = max(since, store.rv)
        except (BrokenPipeError, ConnectionResetError):
            return
        finally:
            try:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except OSError:
                pass
            self.close_connection = True


class APIServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], store: Store):
        self.store = store
        self.snapshots: dict[str, list[dict]] = {}
        super().__init__(address, Handler)


class LocalAPIServer:
    """An API server in a background thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, store: Store | None = None):
        self.store = store or Store()
        self.host = host
        self.port = port
        self.httpd: APIServer | None = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "LocalAPIServer":
        self.httpd = APIServer((self.host, self.port), self.store)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.httpd:
            self.store.drop_watches()
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    def kubeconfig(self, path) -> str:
        config = {"apiVersion": "v1", "kind": "Config", "current-context": "test",
                  "clusters": [{"name": "test", "cluster": {"server": self.url}}],
                  "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
                  "users": [{"name": "test", "user": {"token": "test"}}]}
        with open(path, "w") as f:
            json.dump(config, f)
        return str(path)
