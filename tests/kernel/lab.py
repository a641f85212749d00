"""Namespace topology for kernel tests: nodes on a shared bridge, pods behind nodes.

Only ever runs inside the lab guest (tests/kernel/conftest.py makes sure), so
every address below exists only in namespaces created here.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PYTHON = os.environ.get("PYTHON", sys.executable)
SWITCH = "lab-sw"


def sh(*argv: str, check: bool = True, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def ip_batch(lines: list[str]) -> None:
    """Lines of `ip -batch`; a leading `-n NS` (not valid in a batch) runs that line's run in NS."""
    runs: list[tuple[str | None, list[str]]] = []
    for line in lines:
        ns, rest = (line.split(" ", 2)[1:] if line.startswith("-n ") else (None, line))
        if not runs or runs[-1][0] != ns:
            runs.append((ns, []))
        runs[-1][1].append(rest)
    for ns, batch in runs:
        prefix = ["ip", "-n", ns] if ns else ["ip"]
        sh(*prefix, "-batch", "-", stdin="\n".join(batch) + "\n")


def in_ns(ns: str, *argv: str, **kwargs) -> subprocess.CompletedProcess:
    return sh("ip", "netns", "exec", ns, *argv, **kwargs)


@dataclass
class Pod:
    name: str
    node: "Node"
    ip: str
    ip6: str
    process: subprocess.Popen | None = None


@dataclass
class Node:
    name: str
    index: int
    ip: str
    ip6: str
    pods: list[Pod] = field(default_factory=list)
    has_dummy: bool = False

    @property
    def pod_cidr(self) -> str:
        return f"172.20.{self.index}.0/24"

    @property
    def pod_cidr6(self) -> str:
        return f"fd00:20:{self.index}::/64"

    def run(self, *argv: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        return in_ns(self.name, *argv, check=check, timeout=timeout)

    def kipvs(self, *args: str, check: bool = False, timeout: float = 120) -> subprocess.CompletedProcess:
        return self.run(PYTHON, "-m", "kipvs", *args, check=check, timeout=timeout)

    def curl(self, url: str, seconds: float = 2.0) -> str | None:
        """The body, or None when the connection failed or timed out."""
        proc = self.run("curl", "-s", "-g", "-m", str(seconds), url, check=False, timeout=seconds + 30)
        return proc.stdout.strip() if proc.returncode == 0 else None

    def local_routes(self, family: int = 4) -> str:
        return self.run("ip", f"-{family}", "route", "show", "table", "local").stdout

    def ipvs_rules(self) -> list[str]:
        return self.run("ipvsadm", "-S", "-n").stdout.splitlines()


class Cluster:
    """Nodes 192.168.123.0/24 (and fd00:123::/64) on one bridge; pods 172.20.N.0/24 behind node N."""

    NODE_IPS = {"node1": "192.168.123.250", "node2": "192.168.123.248", "node3": "192.168.123.249"}

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self.namespaces: list[str] = []
        self.processes: list[subprocess.Popen] = []
        self._add_ns(SWITCH)
        ip_batch([f"-n {SWITCH} link add br0 type bridge", f"-n {SWITCH} link set br0 up"])

    def _add_ns(self, name: str) -> None:
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")

    def add_node(self, name: str, ip: str | None = None) -> Node:
        index = len(self.nodes) + 1
        ip = ip or self.NODE_IPS.get(name) or f"192.168.123.{10 + index}"
        node = Node(name, index, ip, f"fd00:123::{ip.rsplit('.', 1)[1]}")
        self._add_ns(name)
        ip_batch([
            f"link add {name}-eth0 type veth peer name sw-{name}",
            f"link set {name}-eth0 netns {name}",
            f"link set sw-{name} netns {SWITCH}",
            f"-n {SWITCH} link set sw-{name} master br0",
            f"-n {SWITCH} link set sw-{name} up",
            f"-n {name} link set {name}-eth0 name eth0",
            f"-n {name} link set eth0 up",
            f"-n {name} addr add {ip}/24 dev eth0",
            f"-n {name} addr add {node.ip6}/64 dev eth0 nodad",
            f"-n {name} route add default via 192.168.123.1 dev eth0 onlink",
            f"-n {name} route add ::/0 via fd00:123::1 dev eth0 onlink",
            f"-n {name} link add kube-bridge type bridge",
            f"-n {name} link set kube-bridge up",
            f"-n {name} addr add 172.20.{index}.1/24 dev kube-bridge",
            f"-n {name} addr add fd00:20:{index}::1/64 dev kube-bridge nodad",
        ])
        for key in ("net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"):
            node.run("sysctl", "-qw", key)
        routes = []
        for other in self.nodes.values():
            routes += [f"-n {name} route add {other.pod_cidr} via {other.ip}",
                       f"-n {name} route add {other.pod_cidr6} via {other.ip6}",
                       f"-n {other.name} route add {node.pod_cidr} via {node.ip}",
                       f"-n {other.name} route add {node.pod_cidr6} via {node.ip6}"]
        if routes:
            ip_batch(routes)
        self.nodes[name] = node
        return node

    def add_pod(self, node: Node, name: str) -> Pod:
        n = len(node.pods) + 2
        pod = Pod(name, node, f"172.20.{node.index}.{n}", f"fd00:20:{node.index}::{n}")
        self._add_ns(name)
        host_if = f"v{node.index}{name[-6:]}"[:15]
        ip_batch([
            f"link add {host_if} type veth peer name {name[:10]}-e",
            f"link set {host_if} netns {node.name}",
            f"link set {name[:10]}-e netns {name}",
            f"-n {node.name} link set {host_if} master kube-bridge",
            f"-n {node.name} link set {host_if} up",
            f"-n {name} link set {name[:10]}-e name eth0",
            f"-n {name} link set eth0 up",
            f"-n {name} addr add {pod.ip}/24 dev eth0",
            f"-n {name} addr add {pod.ip6}/64 dev eth0 nodad",
            f"-n {name} route add default via 172.20.{node.index}.1",
            f"-n {name} route add ::/0 via fd00:20:{node.index}::1",
        ])
        pod.process = self.serve(name, name, 8080)
        node.pods.append(pod)
        return pod

    def serve(self, ns: str, name: str, port: int) -> subprocess.Popen:
        """An HTTP server in `ns` answering with `name`; returns once it listens."""
        proc = subprocess.Popen(["ip", "netns", "exec", ns, PYTHON, "-S", str(HERE / "podserver.py"), name, str(port)],
                                stdout=subprocess.PIPE, text=True)
        self.processes.append(proc)
        line = proc.stdout.readline()
        assert line.strip() == "ready", f"pod server {name} did not start"
        return proc

    def bind_vip(self, vip: str, nodes: list[Node] | None = None) -> None:
        """Like kube-router: every node holds every VIP on kube-dummy-if."""
        lines = []
        for node in nodes or self.nodes.values():
            if not node.has_dummy:
                lines += [f"-n {node.name} link add kube-dummy-if type dummy",
                          f"-n {node.name} link set kube-dummy-if up"]
                node.has_dummy = True
            lines.append(f"-n {node.name} addr add {vip}/{128 if ':' in vip else 32} dev kube-dummy-if"
                         + (" nodad" if ":" in vip else ""))
        ip_batch(lines)

    def ipvs_service(self, vip: str, port: int, backends: list[tuple[str, int]], scheduler: str = "rr") -> None:
        """A NAT virtual server with these backends on every node (kube-router's shape)."""
        host = f"[{vip}]" if ":" in vip else vip
        lines = [f"-A -t {host}:{port} -s {scheduler}"]
        for ip, bport in backends:
            rhost = f"[{ip}]" if ":" in ip else ip
            lines.append(f"-a -t {host}:{port} -r {rhost}:{bport} -m -w 1")
        for node in self.nodes.values():
            in_ns(node.name, "ipvsadm", "-R", stdin="\n".join(lines) + "\n")

    def close(self) -> None:
        for proc in self.processes:
            proc.terminate()
        for proc in self.processes:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
        for ns in reversed(self.namespaces):
            sh("ip", "netns", "del", ns, check=False)


def wait_until(predicate, seconds: float, interval: float = 0.1):
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
