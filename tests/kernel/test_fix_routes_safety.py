"""fix-routes on nodes laid out the ways issue 10 measured: it changes only the interface's own routes,
never leaves a VIP with fewer working routes, converges, and leaves nothing behind."""
import json
import subprocess
import threading
import time

import pytest

from tests.kernel.lab import PYTHON, REPO
from tests.kernel.scenario import WEB_ONE_VIP, WEB_ONE_VIP6, build_issue_376

NODE3_IP, NODE3_IP6 = "192.168.123.249", "fd00:123::249"


@pytest.fixture
def nodes(cluster):
    build_issue_376(cluster)
    return cluster.nodes


def fix_routes(node, *args, status=0):
    proc = node.kipvs("fix-routes", "--output", "json", *args)
    assert proc.returncode == status, proc.stderr
    return json.loads(proc.stdout) if status != 2 else proc


def own_routes(node) -> list[str]:
    """The node's routes that are not the dummy interface's: fix-routes must never change them."""
    lines = node.local_routes(4).splitlines() + node.local_routes(6).splitlines()
    return sorted(line for line in lines if " dev kube-dummy-if " not in line and " dev kube-ipvs0 " not in line)


def vip_routes(node, vip: str) -> list[str]:
    family = 6 if ":" in vip else 4
    return [line for line in node.local_routes(family).splitlines() if line.startswith(f"local {vip} ")]


def converged(node, *args) -> bool:
    again = fix_routes(node, *args)
    return again["commands"] == [] and again["fixed"] == 0 and again["ok"]


def test_node_address_as_a_vip_keeps_the_node_routes(nodes):
    node3 = nodes["node3"]
    node3.run("ip", "addr", "add", f"{NODE3_IP6}/128", "dev", "kube-dummy-if", "nodad")
    node3.run("ip", "addr", "add", f"{NODE3_IP}/32", "dev", "kube-dummy-if")
    before = own_routes(node3)
    report = fix_routes(node3)
    assert report["ok"] and not any(f"local {NODE3_IP6} " in c or f"local {NODE3_IP} " in c
                                    for c in report["commands"])
    assert own_routes(node3) == before
    assert any(" dev eth0 " in line for line in vip_routes(node3, NODE3_IP6))
    assert converged(node3)
    assert node3.curl(f"http://{WEB_ONE_VIP}/").startswith("1-web")


def test_vip_also_on_lo_keeps_los_routes_and_converges(nodes):
    node3 = nodes["node3"]
    node3.run("ip", "addr", "add", f"{WEB_ONE_VIP}/32", "dev", "lo")
    node3.run("ip", "addr", "add", f"{WEB_ONE_VIP6}/128", "dev", "lo")
    before = own_routes(node3)
    proc = node3.kipvs("fix-routes", "--output", "json")
    assert proc.returncode == 0, proc.stderr
    assert f"{WEB_ONE_VIP} is also on lo" in proc.stderr
    assert own_routes(node3) == before  # lo's routes, IPv4 and IPv6, exactly as they were
    mine = [line for line in vip_routes(node3, WEB_ONE_VIP) if " dev kube-dummy-if " in line]
    assert len(mine) == 1 and f"src {NODE3_IP}" in mine[0], vip_routes(node3, WEB_ONE_VIP)
    assert converged(node3)


def test_interface_down_up_is_repaired_again_and_converges(nodes):
    node3 = nodes["node3"]
    fix_routes(node3)
    before = own_routes(node3)
    node3.run("ip", "link", "set", "kube-dummy-if", "down")
    node3.run("ip", "link", "set", "kube-dummy-if", "up")
    time.sleep(0.5)  # IPv6 re-adds its routes from a work queue
    report = fix_routes(node3)
    assert report["ok"] and report["failed"] == []
    assert [line for line in vip_routes(node3, WEB_ONE_VIP6) if "kube-dummy-if" in line] == \
        [line for line in vip_routes(node3, WEB_ONE_VIP6) if f"src {NODE3_IP6}" in line]
    assert own_routes(node3) == before and converged(node3)
    assert node3.curl(f"http://{WEB_ONE_VIP}/").startswith("1-web")
    assert node3.curl(f"http://[{WEB_ONE_VIP6}]/").startswith("1-web")


def test_vip_withdrawn_during_runs_leaves_no_route_behind(nodes):
    """Add/remove cycles of two VIPs against two fix-routes loops in parallel (bounded), then one run."""
    node3 = nodes["node3"]
    before = own_routes(node3)
    vips = ["10.254.0.99", "fd00:254::99"]
    stop = threading.Event()
    statuses: list[int] = []

    def runs():
        while not stop.is_set():
            proc = subprocess.run(["ip", "netns", "exec", "node3", PYTHON, "-m", "kipvs", "-q", "fix-routes"],
                                  capture_output=True, text=True, timeout=120, cwd=REPO)
            statuses.append(proc.returncode)

    loops = [threading.Thread(target=runs) for _ in range(2)]
    for loop in loops:
        loop.start()
    try:
        for _ in range(25):
            for vip in vips:
                node3.run("ip", "addr", "add", f"{vip}/{128 if ':' in vip else 32}", "dev", "kube-dummy-if",
                          *(["nodad"] if ":" in vip else []))
            time.sleep(0.15)
            for vip in vips:
                node3.run("ip", "addr", "del", f"{vip}/{128 if ':' in vip else 32}", "dev", "kube-dummy-if")
            time.sleep(0.1)
    finally:
        stop.set()
        for loop in loops:
            loop.join(timeout=180)
    assert statuses and set(statuses) <= {0, 1}, statuses  # never an error, whatever the timing
    left = {vip: vip_routes(node3, vip) for vip in vips}
    report = fix_routes(node3)  # removes what a run repaired just before its VIP was withdrawn
    assert all(vip_routes(node3, vip) == [] for vip in vips), (left, report)
    assert own_routes(node3) == before and converged(node3)
    print(f"runs: {len(statuses)}, routes left after the cycles: {left}, removed then: {report['stale_removed']}")


def test_bad_node_ip_is_refused_and_changes_nothing(nodes):
    node3 = nodes["node3"]
    before = node3.local_routes(4) + node3.local_routes(6)
    for bad, why in ((WEB_ONE_VIP, "service address on kube-dummy-if"), ("127.0.0.1", "loopback")):
        proc = fix_routes(node3, "--node-ip", bad, status=2)
        assert why in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert node3.local_routes(4) + node3.local_routes(6) == before
    report = fix_routes(node3, "--node-ip", "FD00:123:0::249")
    assert report["node_ips"]["ipv6"] == NODE3_IP6
    assert f"src {NODE3_IP6}" in vip_routes(node3, WEB_ONE_VIP6)[0]
    assert converged(node3, "--node-ip", "FD00:123:0::249")


LOCAL_VIP, LOCAL_VIP6 = "10.254.0.30", "fd00:254::30"


def reachable(node, vips) -> set[str]:
    return {vip for vip in vips if node.curl(f"http://[{vip}]/" if ":" in vip else f"http://{vip}/", 1.5)}


def test_kube_proxy_layout_down_interface_keeps_every_reachable_vip(nodes, cluster):
    """kube-proxy leaves kube-ipvs0 down with its VIPs on it; the kernel refuses IPv6 routes through it."""
    node3 = nodes["node3"]
    pod3 = node3.pods[0]
    node3.run("ip", "link", "del", "kube-dummy-if")
    node3.run("ip", "link", "add", "kube-ipvs0", "type", "dummy")
    vips = [WEB_ONE_VIP, WEB_ONE_VIP6, LOCAL_VIP, LOCAL_VIP6]
    for vip in vips:
        node3.run("ip", "addr", "add", f"{vip}/{128 if ':' in vip else 32}", "dev", "kube-ipvs0",
                  *(["nodad"] if ":" in vip else []))
    for vip, backend in ((LOCAL_VIP, pod3.ip), (LOCAL_VIP6, pod3.ip6)):
        host = f"[{vip}]" if ":" in vip else vip
        rhost = f"[{backend}]" if ":" in backend else backend
        node3.run("ipvsadm", "-A", "-t", f"{host}:80", "-s", "rr")
        node3.run("ipvsadm", "-a", "-t", f"{host}:80", "-r", f"{rhost}:8080", "-m")
    before_routes = {vip: vip_routes(node3, vip) for vip in vips}
    before = reachable(node3, vips)
    own = own_routes(node3)
    proc = node3.kipvs("fix-routes", "--interface", "kube-ipvs0", "--output", "json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    after = reachable(node3, vips)
    assert before <= after, (before, after, before_routes, {vip: vip_routes(node3, vip) for vip in vips})
    for vip in (WEB_ONE_VIP6, LOCAL_VIP6):  # skipped, and exactly as they were
        assert vip in report["skipped"] and vip_routes(node3, vip) == before_routes[vip]
    assert "kube-ipvs0 is down" in proc.stderr
    assert own_routes(node3) == own and converged(node3, "--interface", "kube-ipvs0")
    print(f"reachable before: {sorted(before)}, after: {sorted(after)}")
