"""Per-packet cost of kipvs's netfilter rules against the number of Services (run inside the lab guest).

A client namespace pings the node's own IP and the last Service's ClusterIP through a veth, at a small
and a large number of ClusterIP Services, with kipvs's rules (a fixed handful plus ipsets), without any
netfilter rule, and with the per-address rule list kipvs wrote before (3 rules per address, jumped to
from INPUT for every packet), so the ratio large/small shows what the number of Services costs a packet.

    scripts/lab -- .venv/bin/python benchmarks/bench_datapath.py [--sizes 10,5000] [--count 200]
    scripts/lab --flavour qemu -- .venv/bin/python benchmarks/bench_datapath.py --backend nft
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.synthetic import NODE_IP, NODE_NAME, cluster_ip, objects  # noqa: E402

NODE, CLIENT = "dp-node", "dp-client"
CLIENT_IP = "192.168.123.100"
GOAL = 1.1
BACKEND = "legacy"


def sh(*argv: str, stdin: str | None = None) -> str:
    proc = subprocess.run(argv, input=stdin, text=True, capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def in_node(*argv: str, stdin: str | None = None) -> str:
    return sh("ip", "netns", "exec", NODE, *argv, stdin=stdin)


def setup() -> None:
    sh("ip", "netns", "add", NODE)
    sh("ip", "netns", "add", CLIENT)
    sh("ip", "-batch", "-", stdin="link add dp-n type veth peer name dp-c\n"
                                  f"link set dp-n netns {NODE}\nlink set dp-c netns {CLIENT}\n")
    sh("ip", "-n", NODE, "-batch", "-", stdin=f"link set lo up\nlink set dp-n up\naddr add {NODE_IP}/24 dev dp-n\n")
    sh("ip", "-n", CLIENT, "-batch", "-", stdin=f"link set lo up\nlink set dp-c up\naddr add {CLIENT_IP}/24 dev dp-c\n"
                                                f"route add 10.96.0.0/12 via {NODE_IP}\n")


def teardown() -> None:
    for ns in (NODE, CLIENT):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def kipvs(*args: str) -> None:
    in_node(sys.executable, "-m", "kipvs", "-q", *args)


def rtt(address: str, count: int) -> tuple[float, float]:
    """(min, avg) ms of `count` pings from the client (busybox ping: the guest's only one)."""
    out = sh("ip", "netns", "exec", CLIENT, "busybox", "ping", "-q", "-c", str(count), "-i", "0.01", address)
    found = re.search(r"min/avg/max = ([\d.]+)/([\d.]+)/", out)
    if not found:
        raise RuntimeError(f"ping {address}: {out.strip()}")
    return float(found[1]), float(found[2])


def path_rules() -> int:
    """Rules an INPUT packet to a service address can meet: the built-in INPUT chain and every kipvs chain."""
    saved = in_node(f"iptables-{BACKEND}-save", "-t", "filter")
    return sum(1 for line in saved.splitlines() if line.startswith(("-A INPUT", "-A KIPVS-")))


def old_rule_list(services: int) -> str:
    """What kipvs wrote before the sets: per service address its port, ICMP, REJECT; jumped to unconditionally."""
    lines = ["*filter", ":KIPVS-OLD - [0:0]", "-I INPUT 1 -j KIPVS-OLD"]
    for i in range(services):
        ip = f"{cluster_ip(i)}/32"
        lines += [f"-A KIPVS-OLD -d {ip} -p tcp -m tcp --dport 80 -j RETURN", f"-A KIPVS-OLD -d {ip} -p icmp -j RETURN",
                  f"-A KIPVS-OLD -d {ip} -m conntrack --ctstate NEW -j REJECT --reject-with icmp-port-unreachable"]
    return "\n".join(lines + ["COMMIT"]) + "\n"


def measure(services: int, count: int, folder: Path) -> dict:
    path = folder / f"cluster-{services}.json"
    path.write_text(json.dumps({"kind": "List", "apiVersion": "v1", "items": objects(services, 1, node_ports=False)}))
    kipvs("sync", "-f", str(path), "--node-name", NODE_NAME, "--iptables-mode", BACKEND)
    vip = cluster_ip(services - 1)
    row = {"kipvs": (rtt(NODE_IP, count), rtt(vip, count), path_rules())}
    in_node(sys.executable, "-c", "from kipvs.netfilter.sync import cleanup_netfilter; from kipvs.runner import "
            f"Runner; cleanup_netfilter(Runner(), {BACKEND!r})")
    row["none"] = (rtt(NODE_IP, count), rtt(vip, count), path_rules())
    in_node(f"iptables-{BACKEND}-restore", "--noflush", stdin=old_rule_list(services))
    row["old list"] = (rtt(NODE_IP, count), rtt(vip, count), path_rules())
    in_node(f"iptables-{BACKEND}-restore", "--noflush", stdin="*filter\n:KIPVS-OLD - [0:0]\n-D INPUT -j KIPVS-OLD\n"
                                                          "-X KIPVS-OLD\nCOMMIT\n")
    kipvs("cleanup")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,5000", help="small,large numbers of ClusterIP Services")
    parser.add_argument("--count", type=int, default=200, help="pings per address and configuration")
    parser.add_argument("--backend", choices=("legacy", "nft"), default="legacy",
                        help="iptables backend (nft needs the QEMU lab flavour)")
    args = parser.parse_args()
    global BACKEND
    BACKEND = args.backend
    if os.environ.get("KIPVS_LAB_GUEST") != "1":
        sys.exit("bench_datapath.py programs a kernel: run it inside the lab guest (scripts/lab)")
    small, large = (int(n) for n in args.sizes.split(","))
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
    try:
        setup()
        with tempfile.TemporaryDirectory() as folder:
            rows = {n: measure(n, args.count, Path(folder)) for n in (small, large)}
    finally:
        teardown()
    print(f"data path ({BACKEND} backend, {os.uname().release}): ping RTT from a client, {args.count} pings each, "
          f"{small} vs {large} ClusterIP Services; goal: large/small <= {GOAL}x with kipvs's rules")
    print(f"{'rules':<10} {'target':<9} {'min ms ' + str(small):>11} {'min ms ' + str(large):>11} {'ratio':>7}   "
          f"{'avg ms ' + str(small):>11} {'avg ms ' + str(large):>11} {'ratio':>7}   rules on the path")
    for config in ("kipvs", "none", "old list"):
        for index, target in ((0, "node IP"), (1, "last VIP")):
            (s_min, s_avg), (l_min, l_avg) = rows[small][config][index], rows[large][config][index]
            verdict = "" if config != "kipvs" else ("  ok" if l_min / s_min <= GOAL else "  OVER GOAL")
            print(f"{config:<10} {target:<9} {s_min:>11.3f} {l_min:>11.3f} {l_min / s_min:>6.2f}x   "
                  f"{s_avg:>11.3f} {l_avg:>11.3f} {l_avg / s_avg:>6.2f}x   "
                  f"{rows[small][config][2]} -> {rows[large][config][2]}{verdict}")


if __name__ == "__main__":
    main()
