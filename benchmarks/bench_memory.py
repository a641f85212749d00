"""Peak memory of `kipvs watch` at N ClusterIP Services x M endpoints, beside kube-proxy's (issue 25).

The parent starts the kube tests' real kube-apiserver + etcd on loopback (tests/kube/kubepair.py,
binaries from scripts/kube-binaries), creates N Services with one EndpointSlice of M endpoints each
(as the EndpointSlice controller writes them) and this node's Node, then runs `kipvs watch` in a
fresh child process: the real command line (typer, option parsing, the command's imports), with the
simulated kernel of the kube tests (tests/kube/simkernel.py) at the runner seam, so nothing on this
host is changed. The runner forks its command helper (kipvs/spawn.py) exactly where `kipvs watch`
does. Once the simulated kernel holds every Service with all its endpoints, the child reads its own
/proc memory figures and its helper's, and stops itself with SIGTERM, as a service manager would.

Figures per process: VmHWM (peak RSS, what the lab's 158 MB summed for kipvs and its helper), and
from /proc/PID/smaps_rollup at the end Rss, Pss (shared pages divided among the processes sharing
them: the pair's Pss sum counts each page once) and USS (private pages). The helper is forked before
any cluster state is loaded, so most of its pages are the parent's, shared copy-on-write. The
breakdown shows the main process's RSS after the imports, after the informer caches' lists (just
before the first sync) and after the first sync, each beside the goal (kube-proxy 77 MB x 1.25).

    .venv/bin/python benchmarks/bench_memory.py                    # 1,000 x 10 (~1-2 minutes)
    .venv/bin/python benchmarks/bench_memory.py --services 5000 --endpoints 10
    .venv/bin/python benchmarks/bench_memory.py --smoke            # 100 x 10, well under a minute
    .venv/bin/python benchmarks/bench_memory.py --trace            # also tracemalloc's top allocations
                                                                   # (slower; RSS figures then include it)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

KUBE_PROXY_MB = 77.0  # kube-proxy v1.36.3 IPVS mode, 1,000 x 10, peak RSS in the lab guest (issue 25)
GOAL_RATIO = 1.25
NODE = "bench-node"
NODE_IP = "192.168.1.10"  # the simulated kernel's eth0 address
NAMESPACE = "bench-memory"


# --- the parent: the API server, the objects, the child ----------------------------------------------


def service_objects(i: int, endpoints: int) -> tuple[dict, dict]:
    name = f"svc-{i:05}"
    service = {"kind": "Service", "apiVersion": "v1", "metadata": {"name": name, "namespace": NAMESPACE},
               "spec": {"type": "ClusterIP",
                        "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]}}
    base = 1 + i // 250 % 250
    eps = [{"addresses": [f"10.{base}.{i % 250}.{j % 250 + 1}"],
            "conditions": {"ready": True, "serving": True, "terminating": False},
            "nodeName": f"node-{j % 5}", "zone": "zone-a",
            "targetRef": {"kind": "Pod", "namespace": NAMESPACE, "name": f"{name}-pod-{j}",
                          "uid": f"00000000-0000-0000-{i:04x}-{j:012x}"}} for j in range(endpoints)]
    endpoint_slice = {
        "kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1", "addressType": "IPv4",
        "metadata": {"name": f"{name}-x", "namespace": NAMESPACE,
                     "labels": {"kubernetes.io/service-name": name,
                                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}], "endpoints": eps}
    return service, endpoint_slice


def seed(kubeconfig: Path, services: int, endpoints: int) -> float:
    from kubernetes import client
    from tests.kube import writes
    from tests.kube.kubepair import api_client_from

    started = time.monotonic()
    admin = api_client_from(kubeconfig)
    client.CoreV1Api(admin).create_namespace({"metadata": {"name": NAMESPACE}})
    writes.apply(admin, {"kind": "Node", "apiVersion": "v1", "metadata": {"name": NODE},
                         "status": {"addresses": [{"type": "InternalIP", "address": NODE_IP}]}})

    def one(i: int) -> None:
        for obj in service_objects(i, endpoints):
            writes.apply(admin, obj)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(services)))
    return time.monotonic() - started


def run_child(kubeconfig: Path, workdir: Path, services: int, endpoints: int, trace: bool,
              timeout: float) -> dict:
    out = workdir / "figures.json"
    env = {**os.environ, "KIPVS_EFFECTIVE_CONFIG": str(workdir / "effective-config.yaml")}
    for name in ("KUBECONFIG", "KIPVS_CONFIG"):
        env.pop(name, None)
    argv = [sys.executable, __file__, "--child", str(out), "--services", str(services),
            "--endpoints", str(endpoints), "--kubeconfig", str(kubeconfig), "--lock-file", str(workdir / "lock")]
    if trace:
        argv.append("--trace")
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"the watch child failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(out.read_text())


# --- the child: kipvs watch itself --------------------------------------------------------------------


def status_kb(pid: int | str = "self") -> dict[str, int]:
    figures = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                figures[key] = int(value.split()[0])
    return figures


def rollup_kb(pid: int | str = "self") -> dict[str, int]:
    """Rss, Pss and USS (Private_Clean + Private_Dirty) from smaps_rollup."""
    figures: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        for line in rollup:
            key, _, value = line.partition(":")
            if key in ("Rss", "Pss", "Private_Clean", "Private_Dirty", "Shared_Clean", "Shared_Dirty"):
                figures[key] = int(value.split()[0])
    figures["USS"] = figures.get("Private_Clean", 0) + figures.get("Private_Dirty", 0)
    return figures


def child(args) -> int:
    """`kipvs watch` with the simulated kernel: the real CLI (kipvs.cli_help.run, as the console script)."""
    import signal
    import threading

    started = time.monotonic()
    figures: dict = {"phases": {}}
    if args.trace:
        import tracemalloc

        tracemalloc.start(12)
    figures["phases"]["interpreter"] = status_kb()["VmRSS"]
    from tests.kube.simkernel import SimKernel  # the runner seam: this imports kipvs.runner and the parsers

    class BenchKernel(SimKernel):
        """The simulated kernel, plus a netfilter that starts empty and takes every restore silently
        (`kipvs watch` always plans netfilter; its rules are kept by kipvs, not read back)."""

        netfilter_lines = 0

        def run(self, argv, stdin=None) -> str:
            if argv[0].endswith("-save") or argv[:2] == ["ipset", "save"]:
                return ""
            if argv[0].endswith("-restore"):  # the backend probe
                return ""
            return super().run(argv, stdin)

        def apply(self, batches):
            from kipvs.runner import Result

            results = []
            for batch in batches:
                if batch.tool == "ipset" or batch.tool.endswith("-restore"):
                    if batch.lines:
                        self.netfilter_lines += len(batch.lines)
                        results.append(Result((batch.tool,), 0, "", "", 0.0))
                else:
                    results += super().apply([batch])
            return results

    kernels: list[SimKernel] = []

    def sim_runner(dry_run: bool, timeout: float, out=None) -> SimKernel:
        kernel = BenchKernel()
        kernel.timeout = timeout
        kernel.start_helper()  # forked where `kipvs watch` forks its helper
        kernels.append(kernel)
        return kernel

    import kipvs.cli
    import kipvs.commands.watch as watch
    from kipvs.cli_help import run
    from kipvs.environment import Environment

    syncs = []
    original = watch.Watcher._sync

    def timed_sync(self, full):
        if not syncs:
            figures["phases"]["listed (before the first sync)"] = status_kb()["VmRSS"]
        result = original(self, full)
        syncs.append(full)
        if len(syncs) == 1:
            figures["phases"]["first sync done"] = status_kb()["VmRSS"]
            figures["first_sync_seconds"] = time.monotonic() - started
        return result

    watch.Watcher._sync = timed_sync
    import kipvs.sources.api as api

    load_client_config = api.load_client_config

    def timed_load(*args, **kwargs):
        loaded = load_client_config(*args, **kwargs)
        figures["phases"]["API client loaded"] = status_kb()["VmRSS"]
        return loaded

    api.load_client_config = timed_load

    def converged(kernel: SimKernel) -> bool:
        with kernel.lock:
            reals = [len(kernel.real.get(key, {})) for key in kernel.services]
        return len(reals) >= args.services and sum(r >= args.endpoints for r in reals) >= args.services

    def monitor() -> None:
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            if kernels and syncs and converged(kernels[0]):
                break
            time.sleep(0.2)
        else:
            figures["error"] = f"not converged within {args.timeout:g}s"
        time.sleep(1.0)  # a second of steady state: reflectors idle, metrics registered
        kernel = kernels[0]
        figures["converged_seconds"] = time.monotonic() - started
        figures["services_in_kernel"] = len(kernel.services)
        figures["netfilter_lines"] = kernel.netfilter_lines
        figures["main"] = {**status_kb(), **rollup_kb()}
        figures["main"]["pid"] = os.getpid()
        helper = kernel.helper
        if helper is not None and helper.alive:
            figures["helper"] = {**status_kb(helper.pid), **rollup_kb(helper.pid), "pid": helper.pid}
        figures["modules"] = len(sys.modules)
        figures["top_packages"] = top_packages()
        if args.trace:
            figures["traced"] = traced_top()
        Path(args.child).write_text(json.dumps(figures))
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=monitor, daemon=True).start()
    figures["phases"]["imports"] = status_kb()["VmRSS"]
    sys.argv = ["kipvs", "watch", "--kubeconfig", args.kubeconfig, "--node-name", NODE,
                "--lock-file", args.lock_file, "--healthz-bind-address", "",
                "--iptables-mode", "legacy", "--sync-period", "1h"]
    env = Environment(runner_factory=sim_runner, privileged=lambda: True, err_isatty=False)
    try:
        kipvs.cli.app(sys.argv[1:], prog_name="kipvs", obj=env, standalone_mode=False)
    except SystemExit:
        pass
    del run
    return 0


def top_packages() -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in list(sys.modules):
        top = name.split(".")[0]
        counts[top] = counts.get(top, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1])[:12])


def traced_top(limit: int = 15) -> list:
    import tracemalloc

    snapshot = tracemalloc.take_snapshot()
    stats = snapshot.statistics("filename")
    total = sum(s.size for s in stats)
    rows = [("total traced", total // 1024)]
    rows += [(str(s.traceback[0].filename).replace(str(REPO) + "/", ""), s.size // 1024) for s in stats[:limit]]
    return rows


# --- the report -----------------------------------------------------------------------------------------


def mb(kb: int | None) -> str:
    return "-" if kb is None else f"{kb / 1024:.1f} MB"


def report(figures: dict, services: int, endpoints: int, seed_seconds: float, out=print) -> None:
    goal = KUBE_PROXY_MB * GOAL_RATIO
    main, helper = figures["main"], figures.get("helper") or {}
    out(f"memory: kipvs watch, {services} ClusterIP Services x {endpoints} endpoints (real kube-apiserver on "
        f"loopback, simulated kernel); Python {platform.python_version()}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    out(f"seeded in {seed_seconds:.1f} s; converged {figures['converged_seconds']:.1f} s after the child started "
        f"({figures['services_in_kernel']} virtual servers); {figures['modules']} modules loaded")
    if figures.get("error"):
        out(f"ERROR: {figures['error']}")
    out(f"goal: <= {GOAL_RATIO}x kube-proxy's {KUBE_PROXY_MB:g} MB = {goal:.1f} MB")
    out(f"{'process':<14} {'VmHWM':>10} {'Rss':>10} {'Pss':>10} {'USS':>10}")
    for name, row in (("kipvs", main), ("helper", helper)):
        if row:
            out(f"{name:<14} {mb(row.get('VmHWM')):>10} {mb(row.get('Rss')):>10} {mb(row.get('Pss')):>10} "
                f"{mb(row.get('USS')):>10}")
    both = {key: main.get(key, 0) + helper.get(key, 0) for key in ("VmHWM", "Rss", "Pss", "USS")}
    out(f"{'sum':<14} {mb(both['VmHWM']):>10} {mb(both['Rss']):>10} {mb(both['Pss']):>10} {mb(both['USS']):>10}")
    for label, key in (("sum of VmHWM (the lab's measure)", "VmHWM"), ("sum of Pss (each page once)", "Pss")):
        out(f"{label:<36} {both[key] / 1024:7.1f} MB  {both[key] / 1024 / KUBE_PROXY_MB:5.2f}x kube-proxy  "
            f"({'met' if both[key] / 1024 <= goal else 'NOT met'}: <= {goal:.1f} MB)")
    out("main process RSS by phase:")
    for phase, kb in figures["phases"].items():
        if kb is not None:
            out(f"  {phase:<34} {kb / 1024:7.1f} MB  {kb / 1024 / goal:5.2f} of the goal")
    out("modules by package: " + ", ".join(f"{k} {v}" for k, v in figures["top_packages"].items()))
    for name, kb in figures.get("traced") or ():
        out(f"  traced {kb / 1024:7.1f} MB  {name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--smoke", action="store_true", help="100 Services x 10 endpoints")
    parser.add_argument("--trace", action="store_true", help="tracemalloc in the child (slower)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds the watch may take to converge")
    parser.add_argument("--json", action="store_true", help="print the child's figures as JSON too")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--kubeconfig", help=argparse.SUPPRESS)
    parser.add_argument("--lock-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    if args.smoke:
        args.services, args.endpoints = 100, 10
    from tests.kube.kubepair import KubePair

    with tempfile.TemporaryDirectory(prefix="kipvs-bench-memory-") as tmp:
        workdir = Path(tmp)
        pair = KubePair(workdir / "pair").start()
        try:
            kubeconfig = pair.kubeconfig(workdir / "admin.kubeconfig")
            seconds = seed(kubeconfig, args.services, args.endpoints)
            figures = run_child(kubeconfig, workdir, args.services, args.endpoints, args.trace, args.timeout + 60)
        finally:
            pair.stop()
    report(figures, args.services, args.endpoints, seconds)
    if args.json:
        print(json.dumps(figures))
    return 1 if figures.get("error") else 0


if __name__ == "__main__":
    sys.exit(main())
