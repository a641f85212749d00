"""`kipvs doctor VIP[:PORT]` through the runner seam: one broken hop is named, and only that one.
(The lab proves each hop against a real kernel: tests/kernel/test_doctor.py.)"""
import json

from tests.unit.fakes import invoke
from tests.unit.test_show import cluster, state
from tests.unit.fakes import RecordingRunner

CONNTRACK = ("tcp      6 431999 ESTABLISHED src=192.168.123.100 dst=10.96.0.10 sport=40000 dport=80 "
             "src=10.1.0.9 dst=192.168.123.249 sport=8080 dport=40000 [ASSURED] mark=0 use=1\n")


def doctor(target, **extra):
    def factory(dry_run, timeout, out=None):
        return RecordingRunner(state(**{"conntrack -L -d 10.96.0.10": "", "conntrack -L -d 10.96.0.11": "",
                                        **extra}))
    dump = json.dumps({"kind": "List", "items": [*cluster().services, *cluster().endpoint_slices,
                                                 *cluster().nodes]})
    return invoke(["doctor", target, "-f", "-", "--node-name", "node3", "--iptables-mode", "legacy"], factory,
                  input=dump), invoke(["doctor", target, "-f", "-", "--node-name", "node3", "--iptables-mode",
                                       "legacy", "-o", "json"], factory, input=dump)


def broken(result) -> list[str]:
    return [h["hop"] for h in json.loads(result.stdout)["targets"][0]["hops"] if h["ok"] is False]


def test_a_weight_set_to_0_by_hand_is_the_real_servers_hop_with_its_fix():
    text, data = doctor("10.96.0.10:80")
    assert text.exit_code == 1 and broken(data) == ["real servers"]
    assert "✘ real servers" in text.stdout and "weight 0, want 1" in text.stdout
    assert "fix: ipvsadm -e -t 10.96.0.10:80 -r 10.1.0.5:8080 -m -w 1" in text.stdout
    assert "✔ address" in text.stdout and "✔ route src" in text.stdout


def test_a_wrong_route_src_is_the_route_hop_with_the_exact_repair():
    text, data = doctor("10.96.0.11")
    assert text.exit_code == 1 and broken(data) == ["route src"]
    assert ("fix: ip route replace local 10.96.0.11 dev kube-dummy-if proto kernel scope host src "
            "192.168.123.249 table local") in text.stdout


def test_a_conntrack_entry_to_a_real_server_that_is_gone_is_stale():
    text, data = doctor("10.96.0.10:80", **{"conntrack -L -d 10.96.0.10": CONNTRACK})
    assert broken(data) == ["real servers", "conntrack"]
    assert "fix: conntrack -D -p tcp -d 10.96.0.10 --dport 80 --reply-src 10.1.0.9" in text.stdout


def test_a_bad_address_is_a_usage_error_naming_it():
    result = invoke(["doctor", "10.96.0.10:http", "-f", "examples/cluster.yaml"])
    assert result.exit_code == 2 and "port 'http' is not a number" in result.stderr


def test_untracked_ipvs_connections_matter_only_where_kipvs_masquerades():
    from tests.unit.kernel_states import node_state
    from tests.unit.test_show import LISTING, RULES

    untracked = {**node_state(rules=RULES, dummy_ips=("10.96.0.10", "10.96.0.11"), sysctl="0\n1\n1\n",
                              routes_src={"10.96.0.10": "192.168.123.249", "10.96.0.11": "192.168.123.249"}),
                 "ipvsadm -L -n --exact": LISTING, "conntrack -L -d 10.96.0.11": "",
                 "iptables-legacy-save": "*nat\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n", "ip6tables-legacy-save": ""}

    def factory(dry_run, timeout, out=None):
        return RecordingRunner(untracked)
    # Another proxy's node (no kipvs rules), no cluster: the setting is that proxy's business.
    alone = invoke(["doctor", "10.96.0.11:53", "--kubeconfig", "/nonexistent", "--node-name", "node3",
                    "--iptables-mode", "legacy", "-o", "json"], factory)
    assert alone.exit_code == 0, alone.stdout + alone.stderr
    assert broken(alone) == [] and "kubeconfig /nonexistent" in alone.stderr
    # With the cluster kipvs masquerades, which needs IPVS connections tracked.
    dump = json.dumps({"kind": "List", "items": [*cluster().services, *cluster().endpoint_slices, *cluster().nodes]})
    ours = invoke(["doctor", "10.96.0.11:53", "-f", "-", "--node-name", "node3", "--iptables-mode", "legacy",
                   "-o", "json"], factory, input=dump)
    assert "conntrack" in broken(ours)
    assert next(h for h in json.loads(ours.stdout)["targets"][0]["hops"] if h["hop"] == "conntrack")["fix"] == \
        "sysctl -w net.ipv4.vs.conntrack=1"
