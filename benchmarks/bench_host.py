"""Host-side cost of kipvs's pure Python: parse a cluster dump -> desired state -> parse kernel facts ->
diff -> render commands, at growing N. Prints absolute times and ratios measured in this run, then:
file mode (a JSON dump planned in a fresh process: time and peak RSS), watch mode's event planning
(one endpoint added) and informer memory, and a YAML dump against its JSON twin.

    python benchmarks/bench_host.py [--sizes 1000,10000,50000] [--endpoints 10] [--event-sizes 1000,50000]
                                    [--yaml-services 16000] [--watch-services 50000]
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.synthetic import NODE_IP, NODE_NAME, objects  # noqa: E402
from kipvs.config import NetfilterOptions, ProxyOptions  # noqa: E402
from kipvs.desired import build_desired  # noqa: E402
from kipvs.facts.ipvsadm import parse_rules  # noqa: E402
from kipvs.facts.iproute import parse_links, parse_route_list  # noqa: E402
from kipvs.facts.kernel import IPVS_SYSCTLS, STRICT_ARP_SYSCTLS, KernelFacts  # noqa: E402
from kipvs.model import NetFacts  # noqa: E402
from kipvs.plan import plan_sync  # noqa: E402
from kipvs.reconcile import without_endpoints  # noqa: E402
from kipvs.runner import DryRunRunner  # noqa: E402
from kipvs.incremental import IncrementalDesired, KernelIndex, object_key  # noqa: E402
from kipvs.sources.file import parse_cluster_text, read_cluster_file  # noqa: E402
from kipvs.commands.watch import api_resources  # noqa: E402
from kipvs.sources.reflector import Reflector  # noqa: E402
from kipvs.netfilter.backend import NetfilterFacts  # noqa: E402
from kipvs.netfilter.rules import build_netfilter  # noqa: E402
from kipvs.netfilter.sync import plan_batches  # noqa: E402

OPTIONS = ProxyOptions()
CLI_OPTIONS = ProxyOptions(netfilter=NetfilterOptions())  # the CLI always writes netfilter rules too


def converged_kernel_text(desired) -> tuple[str, list, list]:
    """What `ipvsadm -S -n` and `ip -j` would print on a node converged to `desired`."""
    rules = []
    for vs in desired.virtual_servers:
        rules.append(f"-A {vs.service_args()} {vs.options_args()}")
        rules += [f"-a {vs.service_args()} -r {rs.ip}:{rs.port} -m -w {rs.weight}" for rs in vs.real_servers]
    links = [{"ifname": "eth0", "flags": ["UP"], "addr_info": [{"family": "inet", "local": NODE_IP, "prefixlen": 24,
                                                                "scope": "global"}]},
             {"ifname": "kube-dummy-if", "flags": ["UP"], "addr_info": [
                 {"family": "inet", "local": ip, "prefixlen": 32, "scope": "global"} for ip in desired.addresses]}]
    routes = [{"type": "local", "dst": ip, "dev": "kube-dummy-if", "protocol": "kernel", "scope": "host",
               "prefsrc": NODE_IP} for ip in desired.addresses]
    return "\n".join(rules) + "\n", links, routes


def converged_kernel(desired) -> KernelFacts:
    rules_text, links, routes = converged_kernel_text(desired)
    addresses, interfaces, up = parse_links(links)
    return KernelFacts(net=NetFacts(tuple(addresses), frozenset(interfaces), frozenset(up),
                                    tuple(parse_route_list(routes))),
                       rules=tuple(parse_rules(rules_text)), sysctls={**IPVS_SYSCTLS, **STRICT_ARP_SYSCTLS})


def measure(services: int, endpoints: int) -> dict:
    text = json.dumps({"kind": "List", "apiVersion": "v1", "items": objects(services, endpoints)})
    gc.collect()
    times = pipeline(text)
    tracemalloc.start()  # a second run for memory: tracing slows Python down several times
    pipeline(text)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return dict(times, services=services, peak_mb=peak / 2**20)


def pipeline(text: str) -> dict:
    t0 = time.perf_counter()
    snapshot = parse_cluster_text(text, "bench")
    t1 = time.perf_counter()
    desired = build_desired(snapshot, NODE_NAME, {4: NODE_IP}, OPTIONS)
    t2 = time.perf_counter()
    full = plan_sync(desired, KernelFacts(), OPTIONS)
    lines = full.command_lines()
    t3 = time.perf_counter()
    t4 = time.perf_counter()
    kernel = converged_kernel(desired)
    t5 = time.perf_counter()
    noop = plan_sync(desired, kernel, OPTIONS)
    t6 = time.perf_counter()
    assert noop.empty, noop.command_lines()[:3]
    return {"rules": len(lines), "parse_cluster": t1 - t0, "desired": t2 - t1, "plan_full": t3 - t2,
            "parse_kernel": t5 - t4, "plan_noop": t6 - t5, "pipeline": (t3 - t0) + (t6 - t4)}


# --- file mode: what `kipvs sync --dry-run -f dump.json` computes, in a fresh process ---------------

def file_mode(path: str) -> None:
    """Runs in its own process (peak RSS is per process): read the dump, desired state, full plan,
    netfilter rules (the CLI has them on) planned against an empty node, printed as --dry-run does."""
    from collections import Counter

    started, started_cpu = time.perf_counter(), time.process_time()
    snapshot = read_cluster_file(path)
    read, read_cpu = time.perf_counter(), time.process_time() - started_cpu
    desired = build_desired(snapshot, NODE_NAME, {4: NODE_IP}, CLI_OPTIONS)
    snapshot = without_endpoints(snapshot)  # as `kipvs sync` does once planned (reconcile.start_sync)
    expanded = time.perf_counter()
    plan = plan_sync(desired, KernelFacts(), CLI_OPTIONS)
    with open(os.devnull, "w") as out:  # what --dry-run does with the plan: print it
        DryRunRunner(out).apply(plan.batches)
    planned = time.perf_counter()
    want = build_netfilter(desired, snapshot, NODE_NAME, CLI_OPTIONS.netfilter, per_service=False)
    batches = plan_batches(want.rulesets, NetfilterFacts("legacy", {}), Counter())
    with open(os.devnull, "w") as out:
        DryRunRunner(out).apply(batches)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - started_cpu  # steadier than wall time on a machine shared with other jobs
    # VmHWM, not ru_maxrss: Linux keeps the parent's high-water mark in ru_maxrss across fork+exec.
    with open("/proc/self/status") as status:
        peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    print(json.dumps({"seconds": seconds, "cpu": cpu, "rss_mb": peak_kb / 1024, "commands": plan.command_count,
                      "read": read - started, "read_cpu": read_cpu, "desired": expanded - read, "plan": planned - expanded,
                      "netfilter": seconds - (planned - started)}))


def measure_file_mode(services: int, endpoints: int, directory: str) -> dict:
    path = os.path.join(directory, f"dump-{services}.json")
    with open(path, "w") as f:
        json.dump({"kind": "List", "apiVersion": "v1", "items": objects(services, endpoints)}, f)
    out = subprocess.run([sys.executable, __file__, "--file-mode", path], check=True, capture_output=True, text=True)
    os.unlink(path)
    return dict(json.loads(out.stdout), services=services)


# --- watch mode: one event, planned ----------------------------------------------------------------

def measure_event(services: int, endpoints: int, changes: int = 30) -> dict:
    """Median planning time of one endpoint added (recompute + plan against the verified kernel), and
    how many Services each event recomputed."""
    items = objects(services, endpoints)
    state = IncrementalDesired(NODE_NAME, {4: NODE_IP}, [], OPTIONS)
    state.rebuild([o for o in items if o["kind"] == "Service"], [o for o in items if o["kind"] == "EndpointSlice"])
    index = KernelIndex(converged_kernel(state.desired()), OPTIONS.interface)
    slices = [o for o in items if o["kind"] == "EndpointSlice"]
    times, planned = [], set()
    for i in range(changes):
        # An odd index: a ClusterIP-only Service (every 4th has a NodePort, which would be 2 writes).
        changed = json.loads(json.dumps(slices[(i * 7919) % (len(slices) // 2) * 2 + 1]))
        changed["endpoints"].append({"addresses": [f"10.255.{i // 250}.{i % 250 + 1}"], "conditions": {"ready": True}})
        started = time.perf_counter()
        change = state.apply({}, {object_key(changed): changed})
        plan = plan_sync(state.view(change), index.view(change), OPTIONS)
        times.append(time.perf_counter() - started)
        planned.add(state.last_planned)
        writes = plan.command_lines()
        assert len(writes) == 1 and writes[0].startswith("ipvsadm -a "), writes
    return {"services": services, "ms": statistics.median(times) * 1000, "planned": max(planned)}


def measure_watch_memory(services: int, endpoints: int) -> dict:
    """Watch mode's informer caches (filled as the watch stream delivers objects) plus its desired
    state, against file mode's peak, both traced in this process."""
    items = objects(services, endpoints)
    text = json.dumps({"kind": "List", "apiVersion": "v1", "items": items})
    lines = [json.dumps({"type": "ADDED", "object": obj}) for obj in items]
    del items
    gc.collect()
    tracemalloc.start()
    snapshot = parse_cluster_text(text, "bench")
    build_desired(snapshot, NODE_NAME, {4: NODE_IP}, OPTIONS)
    _, file_peak = tracemalloc.get_traced_memory()
    del snapshot
    tracemalloc.stop()
    gc.collect()
    tracemalloc.start()
    stop = threading.Event()
    caches = {resource.kind: Reflector(resource, lambda _kind: None, stop)
              for resource in api_resources(None)}
    for line in lines:
        event = json.loads(line)
        caches[event["object"]["kind"]]._apply(event)
    state = IncrementalDesired(NODE_NAME, {4: NODE_IP}, [], OPTIONS)
    state.rebuild(caches["Service"].items(), caches["EndpointSlice"].items())
    watch_now, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"services": services, "file_peak_mb": file_peak / 2**20, "watch_mb": watch_now / 2**20}


# --- YAML against JSON ---------------------------------------------------------------------------

def measure_yaml(services: int, endpoints: int) -> dict:
    import yaml

    document = {"kind": "List", "apiVersion": "v1", "items": objects(services, endpoints)}
    as_json = json.dumps(document)
    as_yaml = yaml.dump(document, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper))
    del document
    found = {}
    for name, text in (("json", as_json), ("yaml", as_yaml)):
        started = time.perf_counter()
        build_desired(parse_cluster_text(text, "bench"), NODE_NAME, {4: NODE_IP}, OPTIONS)
        found[name] = time.perf_counter() - started
    return {"services": services, "json_s": found["json"], "yaml_s": found["yaml"],
            "json_mb": len(as_json) / 2**20, "yaml_mb": len(as_yaml) / 2**20,
            "libyaml": bool(getattr(yaml, "__with_libyaml__", False))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--event-sizes", default="1000,50000")
    parser.add_argument("--watch-services", type=int, default=50000)
    parser.add_argument("--yaml-services", type=int, default=16000)
    parser.add_argument("--file-mode", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.file_mode:
        file_mode(args.file_mode)
        return
    rows = [measure(int(n), args.endpoints) for n in args.sizes.split(",")]
    base = rows[0]
    print(f"host: pure Python, {args.endpoints} endpoints per service (ratios: per-service cost vs N={base['services']})")
    print(f"{'N':>7} {'commands':>9} {'parse dump':>11} {'desired':>9} {'plan full':>10} {'parse kernel':>13} "
          f"{'plan no-op':>11} {'total':>8} {'per-svc ratio':>14} {'peak MB':>8}")
    for row in rows:
        ratio = (row["pipeline"] / row["services"]) / (base["pipeline"] / base["services"])
        print(f"{row['services']:>7} {row['rules']:>9} {row['parse_cluster']:>10.3f}s {row['desired']:>8.3f}s "
              f"{row['plan_full']:>9.3f}s {row['parse_kernel']:>12.3f}s {row['plan_noop']:>10.3f}s "
              f"{row['pipeline']:>7.2f}s {ratio:>13.2f}x {row['peak_mb']:>8.0f}")
    with tempfile.TemporaryDirectory(prefix="kipvs-bench-") as directory:
        files = [measure_file_mode(int(n), args.endpoints, directory) for n in args.sizes.split(",")]
    first = files[0]
    print(f"\nfile mode: a JSON dump read, expanded and planned from empty, one fresh process per N "
          f"(goal at the largest N: <= 5 s, <= 400 MB peak RSS, per-service time <= 1.3x N={first['services']})")
    print(f"{'N':>7} {'time':>8} {'peak RSS':>9} {'per-svc ratio':>14}   phases: read dump, desired, IPVS plan+print, "
          f"netfilter rules+print")
    for row in files:
        ratio = (row["seconds"] / row["services"]) / (first["seconds"] / first["services"])
        print(f"{row['services']:>7} {row['seconds']:>7.2f}s {row['rss_mb']:>6.0f} MB {ratio:>13.2f}x   "
              f"{row['read']:.2f} / {row['desired']:.2f} / {row['plan']:.2f} / {row['netfilter']:.2f} s")
    events = [measure_event(int(n), args.endpoints) for n in args.event_sizes.split(",")]
    print(f"\nwatch: one endpoint added, planning on the host (median of 30 events; goal: largest N <= 1.5x "
          f"N={events[0]['services']} and < 20 ms; 1 IPVS write each)")
    print(f"{'N':>7} {'planning':>9} {'ratio':>7} {'services recomputed per event':>30}")
    for row in events:
        print(f"{row['services']:>7} {row['ms']:>7.2f}ms {row['ms'] / events[0]['ms']:>6.2f}x {row['planned']:>30}")
    memory = measure_watch_memory(args.watch_services, args.endpoints)
    print(f"\nwatch: informer caches + desired state at N={memory['services']}: {memory['watch_mb']:.0f} MB traced; "
          f"file mode's traced peak {memory['file_peak_mb']:.0f} MB: "
          f"{memory['watch_mb'] / memory['file_peak_mb']:.2f}x (goal <= 2x)")
    y = measure_yaml(args.yaml_services, args.endpoints)
    print(f"\nYAML vs JSON dump, N={y['services']} (parse + desired state; libyaml C loader: "
          f"{'yes' if y['libyaml'] else 'NO'}): JSON {y['json_mb']:.0f} MB {y['json_s']:.2f}s, "
          f"YAML {y['yaml_mb']:.0f} MB {y['yaml_s']:.2f}s: {y['yaml_s'] / y['json_s']:.1f}x (goal <= 10x)")


if __name__ == "__main__":
    main()
