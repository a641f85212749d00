"""What kipvs watch costs the API server: requests per second of one idle kipvs (its three reflectors:
Services, EndpointSlices, its own Node) and of many simulated kipvs watchers (each its own API client
and reflectors, as in separate processes, in threads here) against one real kube-apiserver + etcd
(the kube tests' pair, built by scripts/kube-binaries), then what every stream cut at once costs them
(a load balancer in front of the API servers restarting): LISTs and WATCHes.

The requests are counted by the API server itself (apiserver_request_total of Services,
EndpointSlices and Nodes less its own, apiserver_selfrequest_total: a watch counts when it ends),
and by the reflectors (what they sent).
On demand, not in CI (an idle window is one watch timeout, 5 minutes); --smoke runs in seconds.

    python benchmarks/bench_api.py [--watchers 100] [--services 100] [--endpoints 10] [--seconds 330]
    python benchmarks/bench_api.py --smoke
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kipvs import __version__  # noqa: E402
from kipvs.commands.watch import WatchSettings, api_resources  # noqa: E402
from kipvs.sources.reflector import Backoff, Reflector  # noqa: E402
from tests.kube import writes  # noqa: E402
from tests.kube.kubepair import KubePair, api_client_from  # noqa: E402
from tests.kube.tcpproxy import TCPProxy  # noqa: E402

RESOURCES = ("services", "endpointslices", "nodes")
NODE = "bench-node"


class Watchers:
    """`count` simulated kipvs watchers: each its own API client and the reflectors `kipvs watch` runs."""

    def __init__(self, pair: KubePair, proxy: TCPProxy, count: int, settings: WatchSettings, workdir: Path):
        self.stop = threading.Event()
        self.reflectors: list[Reflector] = []
        for i in range(count):
            kubeconfig = pair.kubeconfig(workdir / f"watcher-{i}.kubeconfig", server=f"https://127.0.0.1:{proxy.port}")
            api_client = api_client_from(kubeconfig)
            for resource in api_resources(api_client, NODE):
                self.reflectors.append(Reflector(
                    resource, lambda kind: None, self.stop, settings.watch_timeout, settings.read_grace,
                    settings.request_timeout, Backoff(settings.backoff_initial, settings.backoff_cap)))

    def start(self, timeout: float = 300) -> "Watchers":
        for reflector in self.reflectors:
            reflector.start()
        deadline = time.monotonic() + timeout
        for reflector in self.reflectors:
            if not reflector.synced.wait(max(0.0, deadline - time.monotonic())):
                raise RuntimeError(f"{reflector.resource.kind} reflector not synced within {timeout:g}s")
        return self

    def total(self, field: str) -> int:
        return sum(getattr(r.stats, field) for r in self.reflectors)

    def wait_rewatching(self, opened: list[int], timeout: float = 120) -> float:
        """Seconds until every reflector has opened a watch since `opened` (their watch counts)."""
        started = time.monotonic()
        while any(r.stats.watches <= n for r, n in zip(self.reflectors, opened)):
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"not every watch reopened within {timeout:g}s")
            time.sleep(0.05)
        return time.monotonic() - started

    def close(self) -> None:
        self.stop.set()
        for reflector in self.reflectors:
            reflector.thread.join(timeout=5)


def ours(counts: dict, before: dict) -> dict[str, int]:
    """Requests of the watched resources answered between two readings, by verb."""
    by_verb: dict[str, int] = {}
    for (verb, resource), n in counts.items():
        if resource in RESOURCES:
            by_verb[verb] = by_verb.get(verb, 0) + n - before.get((verb, resource), 0)
    return {verb: n for verb, n in by_verb.items() if n}


def sent(watchers: Watchers) -> dict[str, int]:
    """What the reflectors have asked so far: lists, watches accepted, and failed requests."""
    return {field: watchers.total(field) for field in ("lists", "watches", "errors")}


def since(watchers: Watchers, before: dict[str, int]) -> dict[str, int]:
    return {field: n - before[field] for field, n in sent(watchers).items()}


def idle(pair: KubePair, watchers: Watchers, seconds: float) -> dict:
    before, asked = pair.request_counts(), sent(watchers)
    time.sleep(seconds)
    return {"seconds": seconds, "answered": ours(pair.request_counts(), before), **since(watchers, asked)}


def cut_all(pair: KubePair, proxy: TCPProxy, watchers: Watchers) -> dict:
    before, asked = pair.request_counts(), sent(watchers)
    opened = [r.stats.watches for r in watchers.reflectors]
    proxy.drop()
    seconds = watchers.wait_rewatching(opened)
    time.sleep(1.0)  # let the cut streams' ends reach the server's counters
    return {"seconds": seconds, "answered": ours(pair.request_counts(), before), **since(watchers, asked)}


def seed(pair: KubePair, services: int, endpoints: int, workdir: Path, namespace: str) -> None:
    admin = api_client_from(pair.kubeconfig(workdir / "admin.kubeconfig"))
    _namespace(admin, namespace)
    writes.apply(admin, {"kind": "Node", "apiVersion": "v1", "metadata": {"name": NODE},
                         "status": {"addresses": [{"type": "InternalIP", "address": "192.168.123.249"}]}})
    for i in range(services):
        name = f"svc-{i:05}"
        writes.apply(admin, {"kind": "Service", "apiVersion": "v1", "metadata": {"name": name, "namespace": namespace},
                             "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]}})
        writes.apply(admin, {
            "kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1", "addressType": "IPv4",
            "metadata": {"name": f"{name}-x", "namespace": namespace, "labels": {"kubernetes.io/service-name": name}},
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [f"10.{1 + i // 250 % 250}.{i % 250}.{j % 250 + 1}"],
                           "conditions": {"ready": True}, "nodeName": f"node-{j % 5}"} for j in range(endpoints)]})


def _namespace(admin, namespace: str) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        client.CoreV1Api(admin).create_namespace({"metadata": {"name": namespace}})
    except ApiException as exc:
        if exc.status != 409:
            raise


def row(label: str, result: dict, watchers: int) -> str:
    """The server's count (its clients': here, only the watchers) beside what the watchers sent."""
    answered = result["answered"]
    verbs = ", ".join(f"{verb} {n}" for verb, n in sorted(answered.items())) or "none"
    ours_ = result["lists"] + result["watches"] + result["errors"]
    rate = ours_ / result["seconds"]
    return (f"{label:<38} {result['seconds']:>7.1f} s  {sum(answered.values()):>6} {'(' + verbs + ')':<20}  {ours_:>6}  "
            f"{rate:>9.4f}  {rate / watchers:>11.5f}  {result['lists']:>5}")


def run(pair: KubePair, watchers: int, services: int, endpoints: int, seconds: float, settings: WatchSettings,
        workdir: Path, namespace: str = "bench", out=print) -> dict:
    """The measurements against `pair`, printed through `out`; returns the cut's result."""
    seed(pair, services, endpoints, workdir, namespace)
    proxy = TCPProxy(("127.0.0.1", pair.port))
    try:
        version = json.loads(pair._apiserver_get("/version")).get("gitVersion", "?")
        out(f"API load: kube-apiserver {version} + etcd on loopback; {services} Services x {endpoints} endpoints; "
            f"kipvs {__version__}, Python {platform.python_version()}, {os.cpu_count()} CPUs; "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
        out(f"watch timeout {settings.watch_timeout} s; 'answered': requests of Services, EndpointSlices and Nodes "
            "from clients as kube-apiserver counted them (a watch counts when it ends); 'kipvs': the requests "
            "the watchers sent (lists, watches, failed requests)")
        out(f"{'':<38} {'window':>9}  {'answered':<27}  {'kipvs':>6}  {'req/s':>9}  {'per watcher':>11}  "
            f"{'LISTs':>5}")
        one = Watchers(pair, proxy, 1, settings, workdir).start()
        try:
            out(row("one idle kipvs watch (3 reflectors)", idle(pair, one, seconds), 1))
        finally:
            one.close()
        many = Watchers(pair, proxy, watchers, settings, workdir).start()
        try:
            out(row(f"{watchers} idle watchers", idle(pair, many, seconds), watchers))
            cut = cut_all(pair, proxy, many)
        finally:
            many.close()
        answered = ", ".join(f"{verb} {n}" for verb, n in sorted(cut["answered"].items())) or "none"
        out(f"every stream of the {watchers} watchers cut at once: {cut['lists']} LISTs (a reflector that re-lists "
            f"on a cut: {3 * watchers}), {cut['watches']} watches reopened from their resourceVersion, all within "
            f"{cut['seconds']:.1f} s; the server answered: {answered}")
        return cut
    finally:
        proxy.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watchers", type=int, default=100)
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=330.0, help="idle window (default: one watch timeout + 30 s)")
    parser.add_argument("--smoke", action="store_true", help="seconds-long: 3 watchers, 5 Services, 2 s watches")
    args = parser.parse_args(argv)
    logging.getLogger("kipvs").setLevel(logging.ERROR)  # the cut's retries are the point, not news
    settings = WatchSettings()  # kipvs watch's defaults: 300 s watches
    if args.smoke:
        args.watchers, args.services, args.endpoints, args.seconds = 3, 5, 2, 3.0
        settings = replace(settings, watch_timeout=2)
    with tempfile.TemporaryDirectory(prefix="kipvs-bench-api-") as tmp:
        pair = KubePair(Path(tmp) / "pair").start()
        try:
            run(pair, args.watchers, args.services, args.endpoints, args.seconds, settings, Path(tmp))
        finally:
            pair.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
