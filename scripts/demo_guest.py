"""Runs inside the lab guest (scripts/demo): kipvs sync on the bundled example cluster, kipvs show,
curl through the service VIPs; then kube-router #376 before and after `kipvs fix-routes`."""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402
from rich.markup import escape  # noqa: E402
from rich.table import Table  # noqa: E402

from tests.kernel.lab import Cluster  # noqa: E402
from tests.kernel.scenario import (KUBERNETES_VIP, WEB_ONE_VIP, WEB_ONE_VIP6, WEB_RR_VIP, answering_pods,  # noqa: E402
                                   build_issue_376)

console = Console(highlight=False, width=120)
CHECKS = [
    ("kubernetes", f"http://{KUBERNETES_VIP}:443/", "node1:6443 (API server)"),
    ("web-one", f"http://{WEB_ONE_VIP}/", "1 pod on node1"),
    ("web-one (IPv6)", f"http://[{WEB_ONE_VIP6}]/", "1 pod on node1"),
    ("web-rr", f"http://{WEB_RR_VIP}/", "1 pod on each node, rr"),
]


def vip_routes(node) -> list[str]:
    wanted = (KUBERNETES_VIP, WEB_ONE_VIP, WEB_RR_VIP, WEB_ONE_VIP6)
    return [line for line in (node.local_routes(4) + node.local_routes(6)).splitlines()
            if line.split()[1:2] and line.split()[1] in wanted]


def probe(node, title: str) -> None:
    table = Table(title=title, title_justify="left")
    for column in ("service", "backends", "curl from node3 (1.5 s timeout)"):
        table.add_column(column)
    for name, url, backends in CHECKS:
        pods = answering_pods(node, url, tries=3 if name == "web-rr" else 1)
        result = f"[green]answered by {', '.join(sorted(pods))}[/]" if pods else "[red]timed out[/]"
        table.add_row(escape(f"{name} {url}"), backends, result)
    console.print(table)
    console.print("local routes of the service addresses on node3:")
    for line in vip_routes(node):
        fixed = " src 192.168.123.249" in line or " src fd00:123::249" in line
        console.print(f"  {line}", style="green" if fixed else "yellow", markup=False)
    console.print()


EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "cluster.yaml"
RANGES = ["--service-external-ip-range", "192.168.200.0/24", "--loadbalancer-ip-range", "192.168.201.0/24"]


def run_shown(node, *args: str) -> int:
    console.print(f"[bold]$ kipvs {' '.join(args)}[/]   (in {node.name}'s namespace)")
    proc = node.kipvs(*args)
    if proc.stdout.strip():
        sys.stdout.write(proc.stdout)
        sys.stdout.flush()
    console.print(proc.stderr.rstrip(), markup=False, style="dim")
    console.print()
    return proc.returncode


def sync_demo() -> int:
    cluster = Cluster()
    try:
        console.print("[bold]kipvs sync on the bundled example[/] (examples/cluster.yaml): three empty nodes, "
                      "one web pod on each, no IPVS rules, no service addresses\n")
        for name in ("node1", "node2", "node3"):
            cluster.add_pod(cluster.add_node(name), f"{name[-1]}-web")
        cluster.serve("node1", "apiserver", 6443)
        status = 0
        for name, node in cluster.nodes.items():
            status |= run_shown(node, "sync", "--cluster-file", str(EXAMPLE), "--node-name", name, *RANGES)
        node3 = cluster.nodes["node3"]
        status |= run_shown(node3, "show", "--cluster-file", str(EXAMPLE), "--node-name", "node3", *RANGES)
        table = Table(title="curl from node3 through the service addresses", title_justify="left")
        for column in ("service", "address", "answered by (6 connections)"):
            table.add_column(column)
        for name, url in [("default/web (ClusterIP, rr)", "http://10.254.0.20/"),
                          ("default/web (NodePort)", "http://192.168.123.249:30080/"),
                          ("default/web-sticky (ClientIP affinity)", "http://10.254.0.30/"),
                          ("default/web-local (internalTrafficPolicy Local)", "http://10.254.0.40/"),
                          ("default/web-dual (IPv6)", "http://[fd00:254::50]/"),
                          ("default/kubernetes", "http://10.254.0.1:443/")]:
            pods = answering_pods(node3, url, tries=6)
            table.add_row(name, escape(url), ", ".join(sorted(pods)) or "[red]nothing[/]")
        console.print(table)
        status |= run_shown(node3, "sync", "--cluster-file", str(EXAMPLE), "--node-name", "node3", *RANGES)
        return status
    finally:
        cluster.close()


def issue_376_demo() -> int:
    cluster = Cluster()
    try:
        console.print("[bold]kube-router issue #376 on a real kernel[/]: three nodes (node1 .250, node2 .248, "
                      "node3 .249), every node holds every VIP on kube-dummy-if, IPVS NAT to pods on 172.20.N.0/24\n")
        build_issue_376(cluster)
        node3 = cluster.nodes["node3"]
        probe(node3, "before: node3 sends with the VIP as source; the backend's node drops it as a martian")
        console.print(f"[bold]$ kipvs doctor {KUBERNETES_VIP}:443[/]   (in node3's namespace: why does it time out?)")
        doctor = node3.kipvs("doctor", f"{KUBERNETES_VIP}:443", "--node-name", "node3")
        sys.stdout.write(doctor.stdout)
        sys.stdout.flush()
        console.print(doctor.stderr.rstrip(), markup=False, style="dim")
        console.print()
        console.print("[bold]$ kipvs fix-routes[/]   (in node3's namespace)")
        proc = node3.kipvs("fix-routes")
        console.print(proc.stderr.strip(), markup=False)
        probe(node3, "after: node3 sends with its node IP as source (fix-routes also flushed the ARP entries "
                     "left unresolved by requests that named the VIP as sender)")
        return proc.returncode
    finally:
        cluster.close()


def main() -> int:
    os.environ["COLUMNS"] = "118"  # what kipvs show renders to when piped, as here
    status = sync_demo()
    console.rule()
    return status | issue_376_demo()


if __name__ == "__main__":
    sys.exit(main())
