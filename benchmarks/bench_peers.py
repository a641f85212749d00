"""kipvs beside kube-proxy (IPVS mode) and kube-router (service proxy only) on one real kernel.

One lab guest (UML, or QEMU where UML cannot run; 1 vCPU), one real kube-apiserver + etcd inside it
holding N ClusterIP Services x M endpoints; each proxy in turn, rounds interleaved, is started with its
defaults on a fresh node namespace (its own IPVS table, netfilter and ipsets) and measured from outside its process:

- cold start: process start -> every Service's virtual server and all its real servers in the kernel;
- CPU to converge: user+system seconds of the proxy's process tree (reaped children included) by then;
- peak RSS: the sum of VmHWM over the proxy's process tree at the end of its run (kipvs: main + helper);
- one endpoint added to a slice through the API -> its real server in the kernel (p50/p90/p99);
- one new Service + its slice through the API -> its virtual server with all real servers in the kernel;
- idle CPU: the process tree's CPU seconds per 60 s with nothing changing.

The kernel is read from /proc/PID/net/ip_vs of a process in the node namespace every --poll seconds (the
same for every proxy; the read costs the guest's one CPU 16-63 ms at 11,000 lines, so it is not polled
faster). Absolute times are the guest's; compare within one run.

    python benchmarks/bench_peers.py [--services 1000] [--endpoints 10] [--rounds 2] [--changes 30]
                                     [--new-services 10] [--idle 60] [--proxies kipvs,kube-proxy,kube-router]
    python benchmarks/bench_peers.py --smoke     # kipvs and kube-proxy at 20 x 3, one round, a few minutes

The host part builds or reuses kube-apiserver/etcd (scripts/kube-binaries) and the peers
(scripts/peer-binaries) and runs the rest inside the lab guest (scripts/lab). About an hour at the
defaults; keep it out of CI (its smoke mode is what CI can afford).
"""
from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

NODE = "node"  # the namespace, and the Node object's name
NODE_IP, API_IP, PORT = "192.168.123.249", "192.168.123.250", 6443
SERVICE_CIDR, CLUSTER_CIDR, POD_CIDR = "10.96.0.0/16", "172.20.0.0/16", "172.20.3.0/24"
ENDPOINTS = ipaddress.ip_network("172.16.0.0/13")  # the loaded Services' endpoints (pods need not exist)
NEW_ENDPOINTS = ipaddress.ip_network("172.24.0.0/13")  # endpoints added while measuring: unique in the table
NAMESPACE = "bench"
PROXIES = ("kipvs", "kube-proxy", "kube-router")
GUEST_MEM = "3G"


# --- the host side -----------------------------------------------------------------------------------


def built(script: str, *names: str) -> list[str]:
    result = subprocess.run([str(REPO / "scripts" / script), *names], capture_output=True, text=True, timeout=3600)
    if result.returncode:
        sys.exit(f"bench_peers: scripts/{script} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result.stdout.split("\n")


def on_host(args, argv: list[str]) -> int:
    kube = [line for line in built("kube-binaries") if line.strip()][-1]
    peers = []
    wanted = [p for p in args.proxies if p != "kipvs"]
    if wanted:
        for line in built("peer-binaries", *wanted):
            name, _, path = line.strip().partition(" ")
            if name in args.proxies:
                peers += ["--peer", f"{name}={path}"]
    command = [sys.executable, str(Path(__file__).resolve()), "--inside", "--kube-binaries", kube, *peers, *argv]
    lab = [sys.executable, str(REPO / "scripts" / "lab"), "--mem", GUEST_MEM, "--timeout", str(args.guest_timeout),
           "--", *command]
    return subprocess.run(lab, cwd=REPO).returncode


# --- inside the guest: the node, the kernel as /proc shows it, the proxy's processes ------------------


def sh(*argv: str, stdin: str | None = None) -> str:
    proc = subprocess.run(argv, input=stdin, text=True, capture_output=True, timeout=120)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


@contextlib.contextmanager
def prepared_guest():
    """What the peers need of the guest, done to the guest's own mounts and links only, and undone after
    (the kernel tests run more tests in the same guest)."""
    # UML has no nf_tables for inet/ipv4: every iptables*/ip6tables* the peers start must be the legacy one
    sh("mount", "--bind", "/usr/sbin/xtables-legacy-multi", "/usr/sbin/xtables-nft-multi")
    # kube-router appends its routing tables to /etc/iproute2/rt_tables: a writable copy
    copy = tempfile.mkdtemp(prefix="iproute2-")
    shutil.copytree("/etc/iproute2", copy, dirs_exist_ok=True)
    sh("mount", "--bind", copy, "/etc/iproute2")
    # the API server's end of the node's link
    sh("ip", "-batch", "-", stdin=f"link set lo up\nlink add lab-br type bridge\nlink set lab-br up\n"
                                 f"addr add {API_IP}/24 dev lab-br\n")
    try:
        yield
    finally:
        subprocess.run(["ip", "link", "del", "lab-br"], capture_output=True)
        subprocess.run(["umount", "/etc/iproute2"], capture_output=True)
        subprocess.run(["umount", "/usr/sbin/xtables-nft-multi"], capture_output=True)
        shutil.rmtree(copy, ignore_errors=True)


class NodeNamespace:
    """A fresh node for each proxy: its own IPVS table, addresses, netfilter tables and ipsets, all gone
    with the namespace. A sleeping process in it lets us read its kernel through /proc/PID/net."""

    def __init__(self) -> None:
        sh("ip", "netns", "add", NODE)
        sh("ip", "link", "add", "vnode", "type", "veth", "peer", "name", "eth0", "netns", NODE)
        sh("ip", "link", "set", "vnode", "master", "lab-br", "up")
        sh("ip", "-n", NODE, "-batch", "-", stdin=f"link set lo up\nlink set eth0 up\naddr add {NODE_IP}/24 dev eth0\n"
                                                   f"route add default via {API_IP}\n")
        self.anchor = subprocess.Popen(["ip", "netns", "exec", NODE, "sleep", "infinity"])

    def ipvs(self) -> str:
        try:
            return Path(f"/proc/{self.anchor.pid}/net/ip_vs").read_text()
        except FileNotFoundError:  # until a proxy loads ip_vs
            return ""

    def remove(self) -> None:
        self.anchor.kill()
        self.anchor.wait()
        sh("ip", "netns", "del", NODE)


def ipvs_table(text: str) -> dict[str, set[str]]:
    """/proc/net/ip_vs as {virtual server "HEXADDR:HEXPORT": {real server "HEXADDR:HEXPORT"}}."""
    table: dict[str, set[str]] = {}
    current = None
    for line in text.splitlines()[3:]:
        if line.startswith("  -> "):
            if current is not None:
                current.add(line[5:].split(None, 1)[0])
        else:
            parts = line.split()
            current = table.setdefault(parts[1], set()) if len(parts) > 1 and parts[0] in ("TCP", "UDP") else None
    return table


def hex_key(address: str, port: int) -> str:
    return f"{int(ipaddress.IPv4Address(address)):08X}:{port:04X}"


def stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2:].split()


def process_tree(root: int) -> list[int]:
    """root and its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                children.setdefault(int(stat_fields(int(entry))[1]), []).append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def cpu_seconds(root: int) -> float:
    """User + system time of the tree, with every child its members have reaped."""
    ticks = 0
    for pid in process_tree(root):
        try:
            ticks += sum(int(v) for v in stat_fields(pid)[11:15])
        except (OSError, ValueError):
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


def own_memory_mb(root: int, path: str, field_name: str) -> float:
    """A /proc/PID/<path> figure summed over the proxy's own processes: the main one and what it forked
    of itself (kipvs's command helper), not the short-lived tools it runs."""
    exe = os.readlink(f"/proc/{root}/exe")
    total = 0
    for pid in process_tree(root):
        try:
            if os.readlink(f"/proc/{pid}/exe") != exe:
                continue
            text = Path(f"/proc/{pid}/{path}").read_text()
        except OSError:
            continue
        total += next(int(line.split()[1]) for line in text.splitlines() if line.startswith(field_name))
    return total / 1024


def peak_rss_mb(root: int) -> float:
    """The sum of VmHWM: pages a forked helper shares with its parent count twice."""
    return own_memory_mb(root, "status", "VmHWM:")


def pss_mb(root: int) -> float:
    """The sum of Pss now: each shared page counted once, split between the processes sharing it."""
    return own_memory_mb(root, "smaps_rollup", "Pss:")


def wait_for(predicate, timeout: float, poll: float) -> float | None:
    """Seconds until predicate() held, or None after timeout."""
    started = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            return None
        time.sleep(poll)


# --- inside the guest: the cluster -----------------------------------------------------------------


@dataclass
class Service:
    name: str
    ip: str
    endpoints: list[str] = field(default_factory=list)
    real_keys: set[str] = field(default_factory=set)  # kept with endpoints: the guest converts slowly

    def __post_init__(self) -> None:
        self.key = hex_key(self.ip, 80)
        self.real_keys = {hex_key(a, 8080) for a in self.endpoints}

    def set_endpoints(self, endpoints: list[str]) -> None:
        self.endpoints = list(endpoints)
        self.real_keys = {hex_key(a, 8080) for a in endpoints}


class Cluster:
    """Services and their slices written through the official client, as a controller writes them."""

    def __init__(self, api_client) -> None:
        from kubernetes import client

        self.core, self.disc = client.CoreV1Api(api_client), client.DiscoveryV1Api(api_client)
        self.services: dict[str, Service] = {}
        self.next_new = 1

    def new_address(self) -> str:
        self.next_new += 1
        return str(NEW_ENDPOINTS[self.next_new])

    def node(self) -> None:
        self.core.create_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE},
                               "spec": {"podCIDR": POD_CIDR, "podCIDRs": [POD_CIDR]}}, _preload_content=False)
        self.core.patch_node_status(NODE, {"status": {"addresses": [{"type": "InternalIP", "address": NODE_IP},
                                                                    {"type": "Hostname", "address": NODE}]}})
        self.core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
                                   _preload_content=False)

    @staticmethod
    def slice_body(service: Service) -> dict:
        return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": f"{service.name}-1", "namespace": NAMESPACE,
                             "labels": {"kubernetes.io/service-name": service.name,
                                        "endpointslice.kubernetes.io/managed-by": "bench.kipvs.io"}},
                "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in service.endpoints]}

    def add_service(self, name: str, endpoints: list[str]) -> Service:
        # It selects pods, as most Services do; no controller runs here, so the bench writes its slice just
        # after it, as the EndpointSlice controller would.
        body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": {"selector": {"app": name},
                         "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}}
        written = json.loads(self.core.create_namespaced_service(NAMESPACE, body, _preload_content=False).data)
        service = self.services[name] = Service(name, written["spec"]["clusterIP"], list(endpoints))
        self.disc.create_namespaced_endpoint_slice(NAMESPACE, self.slice_body(service), _preload_content=False)
        return service

    def write_slice(self, service: Service) -> None:
        self.disc.replace_namespaced_endpoint_slice(f"{service.name}-1", NAMESPACE, self.slice_body(service),
                                                    _preload_content=False)

    def delete_service(self, name: str) -> None:
        self.disc.delete_namespaced_endpoint_slice(f"{name}-1", NAMESPACE, _preload_content=False)
        self.core.delete_namespaced_service(name, NAMESPACE, _preload_content=False)
        del self.services[name]

    def converged(self, table: dict[str, set[str]]) -> bool:
        for service in self.services.values():
            real = table.get(service.key)
            if real is None or not service.real_keys <= real:
                return False
        return True

    def revert(self, original: dict[str, list[str]]) -> None:
        """Back to the loaded cluster, so that every proxy starts on the same one."""
        for name in [n for n in self.services if n not in original]:
            self.delete_service(name)
        for name, endpoints in original.items():
            if self.services[name].endpoints != endpoints:
                self.services[name].set_endpoints(endpoints)
                self.write_slice(self.services[name])


def real_servers(text: str, key: str) -> set[str]:
    """The real servers of one TCP virtual server in /proc/net/ip_vs text, without parsing the rest."""
    at = text.find(f"\nTCP  {key} ")
    if at < 0:
        return set()
    found = set()
    for line in text[at + 1:].split("\n")[1:]:
        if not line.startswith("  -> "):
            break
        found.add(line[5:].split(None, 1)[0])
    return found


# --- inside the guest: one proxy's run --------------------------------------------------------------


@dataclass
class Run:
    proxy: str
    round: int
    cold: float | None = None
    cpu: float | None = None
    rss: float | None = None
    pss: float | None = None
    endpoint: list[float] = field(default_factory=list)  # inf: not seen within --change-timeout
    new_service: list[float] = field(default_factory=list)
    idle: float | None = None
    error: str = ""


def proxy_command(proxy: str, peers: dict[str, str], kubeconfig: Path, workdir: Path, verbose: bool) -> list[str]:
    """Each proxy as its documentation starts it on a node, defaults otherwise."""
    if proxy == "kipvs":
        return [sys.executable, "-m", "kipvs", *(["-vv"] if verbose else []), "watch", "--kubeconfig", str(kubeconfig), "--node-name", NODE,
                "--iptables-mode", "legacy", "--lock-file", str(workdir / "kipvs.lock"),
                "--drain-record", str(workdir / "draining.json")]
    if proxy == "kube-proxy":  # a namespace's nf_conntrack_max is read-only: kind passes the same flag
        return [peers[proxy], f"--kubeconfig={kubeconfig}", f"--hostname-override={NODE}", "--proxy-mode=ipvs",
                "--conntrack-max-per-core=0", f"--cluster-cidr={CLUSTER_CIDR}"]
    return [peers[proxy], "--run-service-proxy=true", "--run-firewall=false", "--run-router=false",
            f"--kubeconfig={kubeconfig}", f"--hostname-override={NODE}"]


def stop(proc: subprocess.Popen) -> None:
    for sig, grace in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(grace)
            os.killpg(proc.pid, signal.SIGKILL)  # whatever it left of its group
        except (subprocess.TimeoutExpired, ProcessLookupError):
            continue
        break
    proc.wait(10)


def tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def endpoint_changes(args, cluster: Cluster, node: NodeNamespace, original: list[str]) -> list[float]:
    """One endpoint added to one slice at a time, spread over the Services; API write -> real server."""
    latencies = []
    deadline = time.monotonic() + args.phase_budget
    for i in range(args.changes):
        if time.monotonic() > deadline:
            break
        service = cluster.services[original[(i * 7919) % len(original)]]
        address = cluster.new_address()
        wanted = f"-> {hex_key(address, 8080)} "
        started = time.monotonic()
        service.set_endpoints([*service.endpoints, address])
        cluster.write_slice(service)
        seen = wait_for(lambda: wanted in node.ipvs(), args.change_timeout, args.poll)
        latencies.append(float("inf") if seen is None else time.monotonic() - started)
        time.sleep(args.gap)
    return latencies


def new_services(args, cluster: Cluster, node: NodeNamespace, tag: str) -> list[float]:
    """A new Service and its slice; API write -> virtual server with every real server."""
    latencies = []
    deadline = time.monotonic() + args.phase_budget
    for i in range(args.new_services):
        if time.monotonic() > deadline:
            break
        endpoints = [cluster.new_address() for _ in range(args.endpoints)]
        started = time.monotonic()
        service = cluster.add_service(f"new-{tag}-{i}", endpoints)
        seen = wait_for(lambda: service.real_keys <= real_servers(node.ipvs(), service.key), args.change_timeout,
                        args.poll)
        latencies.append(float("inf") if seen is None else time.monotonic() - started)
        time.sleep(args.gap)
    return latencies


def measure(args, proxy: str, round_: int, cluster: Cluster, command: list[str], workdir: Path) -> Run:
    run = Run(proxy, round_)
    original = {name: list(s.endpoints) for name, s in cluster.services.items()}
    node = NodeNamespace()
    log = workdir / f"{proxy}-{round_}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(["ip", "netns", "exec", NODE, *command], stdout=out, stderr=subprocess.STDOUT,
                                cwd=REPO, start_new_session=True)
    try:
        run.cold = wait_for(lambda: proc.poll() is not None or cluster.converged(ipvs_table(node.ipvs())),
                            args.cold_timeout, args.poll_cold)
        if proc.poll() is not None or run.cold is None:
            raise RuntimeError(f"{'exited' if proc.poll() is not None else 'not converged'} after "
                               f"{args.cold_timeout if run.cold is None else run.cold:.0f} s")
        run.cpu = cpu_seconds(proc.pid)
        time.sleep(args.settle)
        run.endpoint = endpoint_changes(args, cluster, node, sorted(original))
        run.new_service = new_services(args, cluster, node, f"{round_}-{proxy}")
        time.sleep(args.settle)
        before = cpu_seconds(proc.pid)
        time.sleep(args.idle)
        run.idle = (cpu_seconds(proc.pid) - before) * 60 / args.idle
        run.rss, run.pss = peak_rss_mb(proc.pid), pss_mb(proc.pid)
    except Exception as exc:  # one proxy's failure is reported in the table; the others still run
        run.error = f"{type(exc).__name__}: {exc}; its log ends:\n{tail(log)}"
    finally:
        stop(proc)
        node.remove()
        cluster.revert(original)
    return run


# --- the report -----------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    """Nearest rank; a change never seen counts as infinitely late."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * q) - 1)]


def seconds(value: float | None, timeout: float) -> str:
    if value is None:
        return "-"
    return f">{timeout:g} s" if value == float("inf") else f"{value:.2f} s"


def latency_cell(values: list[float], timeout: float) -> str:
    if not values:
        return "-"
    late = sum(v == float("inf") for v in values)
    return (f"{seconds(percentile(values, 0.5), timeout)} / {seconds(percentile(values, 0.9), timeout)} / "
            f"{seconds(percentile(values, 0.99), timeout)} (n={len(values)}{f', {late} late' if late else ''})")


# (row title, its cell from one run, the Run attribute, what the ratio line calls it)
ROWS = (
    ("cold start -> every VS and RS in the kernel", lambda r, t: seconds(r.cold, t), "cold", "cold start"),
    ("proxy CPU to converge (process tree)", lambda r, t: seconds(r.cpu, t), "cpu", "CPU to converge"),
    ("peak RSS (its own processes, sum of VmHWM)", lambda r, t: "-" if r.rss is None else f"{r.rss:.0f} MB",
     "rss", "peak RSS"),
    ("PSS at the end (its own processes)", lambda r, t: "-" if r.pss is None else f"{r.pss:.0f} MB", "pss", "PSS"),
    ("one endpoint added -> kernel, p50 / p90 / p99", lambda r, t: latency_cell(r.endpoint, t), "endpoint",
     "endpoint added, p50"),
    ("one new Service (+slice) -> kernel, p50 / p90 / p99", lambda r, t: latency_cell(r.new_service, t),
     "new_service", "new Service, p50"),
    ("idle CPU per 60 s", lambda r, t: seconds(r.idle, t), "idle", "idle CPU"),
)


def figure(run: Run, attribute: str) -> float | None:
    value = getattr(run, attribute)
    return percentile(value, 0.5) if isinstance(value, list) else value


def median_of(runs: list[Run], proxy: str, attribute: str) -> float | None:
    values = [v for r in runs if r.proxy == proxy and not r.error and (v := figure(r, attribute)) is not None]
    return statistics.median(values) if values else None


def report(args, runs: list[Run], versions: dict[str, str]) -> None:
    proxies = [p for p in args.proxies]
    rounds = sorted({r.round for r in runs})
    by = {(r.proxy, r.round): r for r in runs}
    print(f"\npeers side by side, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
          f"{args.services} ClusterIP Services x {args.endpoints} endpoints, {len(rounds)} round(s) interleaved "
          f"(the second in reverse order); guest {os.environ.get('KIPVS_LAB_FLAVOUR', '?')} {platform.release()}, "
          f"{os.cpu_count()} CPU, {GUEST_MEM}; "
          f"kernel polled every {args.poll:g} s (cold start {args.poll_cold:g} s)")
    for name, version in versions.items():
        print(f"  {name}: {version}")
    header = ["", *proxies]
    lines = [header]
    for title, cell, _, _ in ROWS:
        lines.append([title, *(" ; ".join(cell(by[(p, n)], args.change_timeout) if (p, n) in by else "-"
                                           for n in rounds) for p in proxies)])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  " + " | ".join(text.ljust(width) for text, width in zip(line, widths)))
    for run in runs:
        if run.error:
            print(f"  {run.proxy} round {run.round} failed: {run.error}")
    print("  (cells: one per round, in round order; latencies: p50 / p90 / p99 of the round)")
    ratios(args, runs)
    print("bench_peers json: " + json.dumps([run.__dict__ for run in runs], default=str))


def ratios(args, runs: list[Run]) -> None:
    """kipvs's medians over rounds against the peers' and the issue's goals."""
    if "kipvs" not in args.proxies:
        return
    kipvs = {attribute: median_of(runs, "kipvs", attribute) for _, _, attribute, _ in ROWS}
    for _, _, attribute, short in ROWS:
        peers = {p: median_of(runs, p, attribute) for p in args.proxies if p != "kipvs"}
        peers = {p: v for p, v in peers.items() if v is not None}
        if kipvs[attribute] is None or not peers:
            continue
        best = min(peers, key=peers.get)
        ratio = kipvs[attribute] / peers[best] if peers[best] else float("inf")
        print(f"  kipvs / best peer ({best}), {short}: {ratio:.2f}x")
    endpoint_p99 = statistics.median([percentile(r.endpoint, 0.99) for r in runs
                                      if r.proxy == "kipvs" and r.endpoint and not r.error] or [float("nan")])
    # (goal, kipvs's figure, the figure it is divided by or None for an absolute limit, limit)
    kube_proxy = {attribute: median_of(runs, "kube-proxy", attribute) for attribute in ("rss", "pss", "cold")}
    goals = [("new Service p50 <= 1.5x endpoint add p50", kipvs["new_service"], kipvs["endpoint"], 1.5),
             ("new Service p50 <= 1 s", kipvs["new_service"], None, 1.0),
             ("endpoint add p50 <= 0.35 s", kipvs["endpoint"], None, 0.35),
             ("endpoint add p99 <= 1 s", endpoint_p99, None, 1.0)]
    if "kube-proxy" in args.proxies:
        goals += [("peak RSS <= 1.25x kube-proxy's", kipvs["rss"], kube_proxy["rss"], 1.25),
                  ("PSS <= 1.25x kube-proxy's", kipvs["pss"], kube_proxy["pss"], 1.25),
                  ("cold start <= 0.6x kube-proxy's", kipvs["cold"], kube_proxy["cold"], 0.6)]
    for title, value, base, limit in goals:
        if value is None or math.isnan(value) or base == 0 or (base is None and title.endswith("kube-proxy's")):
            continue  # not measured in this run
        ratio = value if base is None else value / base
        shown = f"{value:.2f}" if base is None else f"{value:.2f} / {base:.2f} = {ratio:.2f}x"
        print(f"  goal: {title}: {shown}, {'met' if ratio <= limit else 'NOT met'}")


# --- entry points -----------------------------------------------------------------------------------------


def versions_of(peers: dict[str, str], kube_binaries: str) -> dict[str, str]:
    def first_line(argv):
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=REPO)
        return (proc.stdout or proc.stderr).strip().splitlines()[0] if (proc.stdout or proc.stderr).strip() else "?"
    found = {"kipvs": first_line([sys.executable, "-m", "kipvs", "--version"])}
    found.update({name: first_line([path, "--version"]) for name, path in peers.items()})
    found["kube-apiserver"] = first_line([str(Path(kube_binaries) / "kube-apiserver"), "--version"])
    return found


def inside(args) -> int:
    peers = dict(item.split("=", 1) for item in args.peer)
    missing = [p for p in args.proxies if p != "kipvs" and p not in peers]
    if missing:
        sys.exit(f"bench_peers: no binary for {', '.join(missing)}")
    with prepared_guest():
        return measure_all(args, peers)


def measure_all(args, peers: dict[str, str]) -> int:
    from tests.kube.kubepair import KubePair, api_client_from

    workdir = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    pair = KubePair(workdir / "pair", Path(args.kube_binaries), API_IP, PORT, SERVICE_CIDR)
    started = time.monotonic()
    pair.start()
    try:
        kubeconfig = pair.kubeconfig(workdir / "admin.kubeconfig")
        cluster = Cluster(api_client_from(kubeconfig))
        cluster.node()
        print(f"bench_peers: API server up in {time.monotonic() - started:.0f} s", flush=True)
        started = time.monotonic()
        for i in range(args.services):
            first = 256 + i * args.endpoints
            cluster.add_service(f"svc-{i:05d}", [str(ENDPOINTS[first + j]) for j in range(args.endpoints)])
        print(f"bench_peers: {args.services} Services and slices written in {time.monotonic() - started:.0f} s",
              flush=True)
        versions = versions_of(peers, args.kube_binaries)
        runs = []
        for round_ in range(1, args.rounds + 1):
            for proxy in (args.proxies if round_ % 2 else args.proxies[::-1]):
                command = proxy_command(proxy, peers, Path(kubeconfig), workdir, args.log_lines > 0)
                runs.append(measure(args, proxy, round_, cluster, command, workdir))
                run = runs[-1]
                if args.log_lines:
                    print(tail(workdir / f"{proxy}-{round_}.log", args.log_lines))
                print(f"bench_peers: round {round_} {proxy}: "
                      + (f"failed: {run.error}" if run.error else
                         f"cold {run.cold:.1f} s, endpoint p50 {seconds(figure(run, 'endpoint'), args.change_timeout)}, "
                         f"new Service p50 {seconds(figure(run, 'new_service'), args.change_timeout)}, "
                         f"RSS {run.rss:.0f} MB"), flush=True)
        report(args, runs, versions)
        return 1 if any(run.error for run in runs) else 0
    finally:
        pair.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--proxies", type=lambda s: [p for p in s.split(",") if p], default=list(PROXIES))
    parser.add_argument("--changes", type=int, default=50, help="endpoint additions per run")
    parser.add_argument("--new-services", type=int, default=10, help="Services created per run")
    parser.add_argument("--idle", type=float, default=60, help="seconds of idle CPU measured per run")
    parser.add_argument("--phase-budget", type=float, default=180,
                        help="seconds after which a run stops starting changes of one kind")
    parser.add_argument("--change-timeout", type=float, default=60)
    parser.add_argument("--cold-timeout", type=float, default=900)
    parser.add_argument("--settle", type=float, default=5, help="seconds between phases")
    parser.add_argument("--gap", type=float, default=0.5, help="seconds between two changes")
    parser.add_argument("--poll", type=float, default=0.1)
    parser.add_argument("--poll-cold", type=float, default=0.5)
    parser.add_argument("--log-lines", type=int, default=0,
                        help="print the end of each proxy's log after its run (kipvs then logs with -vv)")
    parser.add_argument("--guest-timeout", type=float, default=3 * 3600)
    parser.add_argument("--smoke", action="store_true", help="kipvs and kube-proxy, 20 x 3, one round, short phases")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--kube-binaries", help=argparse.SUPPRESS)
    parser.add_argument("--peer", action="append", default=[], help=argparse.SUPPRESS)
    argv = sys.argv[1:]
    args = parser.parse_args(argv)
    unknown = [p for p in args.proxies if p not in PROXIES]
    if unknown:
        parser.error(f"unknown proxy {', '.join(unknown)} (known: {', '.join(PROXIES)})")
    if args.smoke:
        args.services, args.endpoints, args.rounds, args.changes, args.new_services = 20, 3, 1, 5, 3
        args.idle, args.settle, args.phase_budget, args.change_timeout = 10, 2, 60, 30
        if "--proxies" not in " ".join(argv):
            args.proxies = ["kipvs", "kube-proxy"]
    return inside(args) if args.inside else on_host(args, argv)


if __name__ == "__main__":
    sys.exit(main())
