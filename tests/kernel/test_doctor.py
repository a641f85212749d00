"""`kipvs doctor` on a real kernel: each hop broken on its own service address of node3, and the doctor
names, for each address, that hop and nothing else. One doctor run judges all of them (the faults are
independent), a second the node-wide masquerade: lab time is shared by the whole suite."""
import json

from tests.kernel.netfilter_lab import iptables
from tests.kernel.test_sync import EXAMPLE, RANGES, sync

NODE_IP = "192.168.123.249"
WEB = ("172.20.1.2:8080", "172.20.2.2:8080", "172.20.3.2:8080")
FAULTS = {  # address: the hop broken there
    "192.168.201.10:80": "address", "10.254.0.20:80": "route src", "10.254.0.30:80": "real servers",
    "10.254.0.50:80": "real servers", "10.254.0.40:80": "firewall", "192.168.200.10:80": "conntrack"}
HOPS = ["address", "route src", "virtual server", "real servers", "firewall", "masquerade", "conntrack"]


def diagnosis(node, *targets) -> dict:
    proc = node.kipvs("doctor", *targets, "-f", str(EXAMPLE), "--node-name", "node3", *RANGES, "-o", "json")
    assert proc.returncode in (0, 1), proc.stderr
    report = json.loads(proc.stdout)
    assert report["sound"] == (proc.returncode == 0)
    return {f"{t['address']}:{t['port']}": t for t in report["targets"]}


def broken(target: dict) -> list[str]:
    return [hop["hop"] for hop in target["hops"] if hop["ok"] is False]


def fix(target: dict, name: str) -> str:
    return next(hop["fix"] for hop in target["hops"] if hop["hop"] == name)


def test_doctor_names_each_broken_hop_and_only_it(lab):
    node3 = lab.nodes["node3"]
    sync(node3)
    healthy = diagnosis(node3, "10.254.0.1:443", *FAULTS)
    assert all(t["sound"] and [h["hop"] for h in t["hops"]] == HOPS for t in healthy.values()), healthy

    node3.run("ip", "addr", "del", "192.168.201.10/32", "dev", "kube-dummy-if")
    node3.run("ip", "route", "replace", "local", "10.254.0.20", "dev", "kube-dummy-if", "proto", "kernel",
              "scope", "host", "src", "10.254.0.20", "table", "local")
    for server in WEB:
        node3.run("ipvsadm", "-d", "-t", "10.254.0.30:80", "-r", server)
    node3.run("ipvsadm", "-e", "-t", "10.254.0.50:80", "-r", WEB[0], "-m", "-w", "0")
    iptables(node3, "-I", "INPUT", "-d", "10.254.0.40/32", "-p", "tcp", "-m", "tcp", "--dport", "80", "-j", "DROP")
    # A flow whose reply comes from a real server the virtual server no longer has.
    node3.run("conntrack", "-I", "-p", "tcp", "-s", "192.168.123.100", "-d", "192.168.200.10", "--sport", "40000",
              "--dport", "80", "--reply-src", "172.20.9.9", "--reply-dst", NODE_IP, "--reply-port-src", "8080",
              "--reply-port-dst", "40000", "--state", "ESTABLISHED", "--timeout", "120")
    report = diagnosis(node3, *FAULTS)
    assert {address: broken(target) for address, target in report.items()} == \
        {address: [hop] for address, hop in FAULTS.items()}
    assert fix(report["192.168.201.10:80"], "address") == "ip addr add 192.168.201.10/32 dev kube-dummy-if"
    assert fix(report["10.254.0.20:80"], "route src").startswith(
        f"ip route replace local 10.254.0.20 dev kube-dummy-if proto kernel scope host src {NODE_IP} table local")
    assert fix(report["10.254.0.50:80"], "real servers") == f"ipvsadm -e -t 10.254.0.50:80 -r {WEB[0]} -m -w 1"
    assert fix(report["10.254.0.40:80"], "firewall").endswith(
        "-t filter -D INPUT -d 10.254.0.40/32 -p tcp -m tcp --dport 80 -j DROP")
    assert "--reply-src 172.20.9.9" in fix(report["192.168.200.10:80"], "conntrack")

    # show, with the cluster: both weights side by side; without it (no API here): the kernel's view.
    shown = json.loads(node3.kipvs("show", "-f", str(EXAMPLE), "--node-name", "node3", *RANGES, "--vip",
                                   "10.254.0.50:80", "-o", "json").stdout)
    rows = {rs["label"]: rs for svc in shown["services"] for vs in svc["virtual_servers"] for rs in vs["real_servers"]}
    assert (rows[WEB[0]]["weight"], rows[WEB[0]]["kernel_weight"], rows[WEB[0]]["state"]) == (1, 0, "different")
    alone = node3.kipvs("show", "--kubeconfig", "/nonexistent/kubeconfig", "--node-name", "node3", "-o", "json")
    assert alone.returncode == 0 and "cluster unavailable" in alone.stderr and "/nonexistent/kubeconfig" in alone.stderr
    kernel = json.loads(alone.stdout)
    servers = {vs["label"]: vs for vs in kernel["virtual_servers"]}
    assert servers["TCP 10.254.0.30:80"]["real_servers"] == [] and kernel["mode"] == "kernel"
    assert [rs["kernel_weight"] for rs in servers["TCP 10.254.0.50:80"]["real_servers"]] == [0, 1, 1]
    assert {r["address"]: r["ok"] for r in kernel["routes"]}["10.254.0.20"] is False
    assert any(chain["chain"] == "KIPVS-INPUT" for chain in kernel["netfilter"]["rules"])

    iptables(node3, "-t", "nat", "-F", "KIPVS-POSTROUTING")  # kipvs's SNAT (and hairpin) rules gone
    assert broken(diagnosis(node3, "10.254.0.1:443")["10.254.0.1:443"]) == ["masquerade"]
