"""Host-side cost of kipvs's pure Python: parse a cluster dump -> desired state -> parse kernel facts ->
diff -> render commands, at growing N. Prints absolute times and ratios measured in this run.

    python benchmarks/bench_host.py [--sizes 1000,10000,50000] [--endpoints 10]
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.synthetic import NODE_IP, NODE_NAME, objects  # noqa: E402
from kipvs.config import ProxyOptions  # noqa: E402
from kipvs.desired import build_desired  # noqa: E402
from kipvs.facts.ipvsadm import parse_rules  # noqa: E402
from kipvs.facts.iproute import parse_links, parse_route_list  # noqa: E402
from kipvs.facts.kernel import IPVS_SYSCTLS, STRICT_ARP_SYSCTLS, KernelFacts  # noqa: E402
from kipvs.model import NetFacts  # noqa: E402
from kipvs.plan import plan_sync  # noqa: E402
from kipvs.sources.file import parse_cluster_text  # noqa: E402

OPTIONS = ProxyOptions()


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
    rules_text, links, routes = converged_kernel_text(desired)
    t4 = time.perf_counter()
    addresses, interfaces, up = parse_links(links)
    kernel = KernelFacts(net=NetFacts(tuple(addresses), frozenset(interfaces), frozenset(up),
                                      tuple(parse_route_list(routes))),
                         rules=tuple(parse_rules(rules_text)), sysctls={**IPVS_SYSCTLS, **STRICT_ARP_SYSCTLS})
    t5 = time.perf_counter()
    noop = plan_sync(desired, kernel, OPTIONS)
    t6 = time.perf_counter()
    assert noop.empty, noop.command_lines()[:3]
    return {"rules": len(lines), "parse_cluster": t1 - t0, "desired": t2 - t1, "plan_full": t3 - t2,
            "parse_kernel": t5 - t4, "plan_noop": t6 - t5, "pipeline": (t3 - t0) + (t6 - t4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--endpoints", type=int, default=10)
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
