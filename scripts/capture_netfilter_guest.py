"""Runs inside the lab guest: node3 of tests/kernel/test_netfilter.py after one `kipvs sync` (with a user's
nat rule and filter chain), its iptables saves and `ipset save` written to $KIPVS_LAB_OUT/netfilter-node3.json
for the netfilter unit tests.   scripts/lab --out tests/fixtures -- .venv/bin/python scripts/capture_netfilter_guest.py
"""
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.kernel.lab import Cluster  # noqa: E402
from tests.kernel.netfilter_lab import add_client, iptables  # noqa: E402
from tests.kernel.test_netfilter import RANGES, cluster_file  # noqa: E402


def main() -> None:
    cluster = Cluster()
    try:
        for name in ("node1", "node2", "node3"):
            cluster.add_pod(cluster.add_node(name), f"{name[-1]}-web")
        add_client(cluster)
        path = cluster_file(cluster, Path(tempfile.mkdtemp()) / "cluster.json")
        node3 = cluster.nodes["node3"]
        iptables(node3, "-t", "nat", "-A", "POSTROUTING", "-s", "10.99.0.0/16", "-j", "MASQUERADE")
        iptables(node3, "-t", "filter", "-N", "USER-CHAIN")
        iptables(node3, "-t", "filter", "-A", "INPUT", "-p", "tcp", "--dport", "9999", "-j", "USER-CHAIN")
        proc = node3.kipvs("sync", "-f", str(path), "--node-name", "node3", *RANGES)
        assert proc.returncode == 0, proc.stderr
        outputs = {tool: node3.run(tool, check=False).stdout for tool in (
            "iptables-legacy-save", "ip6tables-legacy-save", "iptables-nft-save", "ip6tables-nft-save")}
        outputs["ipset save"] = node3.run("ipset", "save").stdout
        capture = {"about": "node3 of tests/kernel/test_netfilter.py after one kipvs sync (legacy backend, UML "
                            "lab), with a user's nat rule and filter chain; captured by "
                            "scripts/capture_netfilter_guest.py running the real tools in the lab",
                   "cluster": json.loads(path.read_text()), "outputs": outputs}
        Path(os.environ["KIPVS_LAB_OUT"], "netfilter-node3.json").write_text(json.dumps(capture, indent=1) + "\n")
    finally:
        cluster.close()


if __name__ == "__main__":
    main()
