"""`kipvs sync`, `show` and `cleanup` on a real kernel, proven with curl through every kind of service address."""
import json

import pytest
import yaml

from tests.kernel.lab import PYTHON, REPO
from tests.kernel.scenario import answering_pods

EXAMPLE = REPO / "examples" / "cluster.yaml"
RANGES = ("--service-external-ip-range", "192.168.200.0/24", "--loadbalancer-ip-range", "192.168.201.0/24")
WEB = {f"{i}-web" for i in (1, 2, 3)}

NODE3_TABLE = """
-A -t 10.254.0.1:443 -s rr
-a -t 10.254.0.1:443 -r 192.168.123.250:6443 -m -w 1
-A -t 10.254.0.20:80 -s rr
-a -t 10.254.0.20:80 -r 172.20.1.2:8080 -m -w 1
-a -t 10.254.0.20:80 -r 172.20.2.2:8080 -m -w 1
-a -t 10.254.0.20:80 -r 172.20.3.2:8080 -m -w 1
-A -t 192.168.123.249:30080 -s rr
-a -t 192.168.123.249:30080 -r 172.20.1.2:8080 -m -w 1
-a -t 192.168.123.249:30080 -r 172.20.2.2:8080 -m -w 1
-a -t 192.168.123.249:30080 -r 172.20.3.2:8080 -m -w 1
-A -t 10.254.0.30:80 -s wrr -p 600
-a -t 10.254.0.30:80 -r 172.20.1.2:8080 -m -w 1
-a -t 10.254.0.30:80 -r 172.20.2.2:8080 -m -w 1
-a -t 10.254.0.30:80 -r 172.20.3.2:8080 -m -w 1
-A -t 10.254.0.40:80 -s rr
-a -t 10.254.0.40:80 -r 172.20.3.2:8080 -m -w 1
-A -t 192.168.200.10:80 -s rr
-a -t 192.168.200.10:80 -r 172.20.3.2:8080 -m -w 1
-A -t 192.168.201.10:80 -s rr
-a -t 192.168.201.10:80 -r 172.20.3.2:8080 -m -w 1
-A -t 192.168.123.249:30081 -s rr
-a -t 192.168.123.249:30081 -r 172.20.3.2:8080 -m -w 1
-A -t 10.254.0.50:80 -s rr
-a -t 10.254.0.50:80 -r 172.20.1.2:8080 -m -w 1
-a -t 10.254.0.50:80 -r 172.20.2.2:8080 -m -w 1
-a -t 10.254.0.50:80 -r 172.20.3.2:8080 -m -w 1
-A -t [fd00:254::50]:80 -s rr
-a -t [fd00:254::50]:80 -r [fd00:20:1::2]:8080 -m -w 1
-a -t [fd00:254::50]:80 -r [fd00:20:2::2]:8080 -m -w 1
-a -t [fd00:254::50]:80 -r [fd00:20:3::2]:8080 -m -w 1
-A -t 10.254.0.60:80 -s rr
-a -t 10.254.0.60:80 -r 172.20.1.2:8080 -m -w 1
-a -t 10.254.0.60:80 -r 172.20.2.2:8080 -m -w 1
-a -t 10.254.0.60:80 -r 172.20.3.2:8080 -m -w 1
-A -u 10.254.0.10:53 -s sh -b sh-fallback,sh-port
-a -u 10.254.0.10:53 -r 172.20.1.3:53 -m -w 1
-A -t 10.254.0.10:53 -s sh -b sh-fallback,sh-port
-a -t 10.254.0.10:53 -r 172.20.1.3:53 -m -w 1
"""
ADDRESSES = ["10.254.0.1", "10.254.0.10", "10.254.0.20", "10.254.0.30", "10.254.0.40", "10.254.0.50",
             "10.254.0.60", "192.168.200.10", "192.168.201.10"]
FOREIGN = ["-A -t 10.10.10.10:80 -s wlc", "-a -t 10.10.10.10:80 -r 10.10.10.11:80 -g -w 1",
           "-A -t 192.168.123.249:22 -s rr", "-A -f 7 -s rr"]


def sync(node, *args, cluster_file=EXAMPLE):
    proc = node.kipvs("sync", "-f", str(cluster_file), "--node-name", node.name, *RANGES, "--output", "json", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def edited_example(tmp_path, edit):
    doc = yaml.safe_load(EXAMPLE.read_text())
    edit({(o["kind"], o["metadata"]["name"]): o for o in doc["items"]}, doc)
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_sync_programs_exactly_the_expected_table_addresses_and_routes(lab):
    node3 = lab.nodes["node3"]
    report = sync(node3)
    assert report["converged"] and report["counts"]["virtual servers added"] == 13
    assert set(node3.ipvs_rules()) == set(NODE3_TABLE.split("\n")[1:-1])
    assert len(node3.ipvs_rules()) == len(NODE3_TABLE.split("\n")[1:-1])
    routes4 = node3.local_routes(4)
    for vip in ADDRESSES:
        assert f"local {vip} dev kube-dummy-if proto kernel scope host src 192.168.123.249" in routes4
    v6 = [line for line in node3.local_routes(6).splitlines() if line.startswith("local fd00:254::50 ")]
    assert len(v6) == 1 and "src fd00:123::249" in v6[0]
    sysctls = node3.run("sysctl", "-n", "net.ipv4.vs.conntrack", "net.ipv4.vs.expire_nodest_conn",
                        "net.ipv4.vs.expire_quiescent_template").stdout.split()
    assert sysctls == ["1", "1", "1"]


def test_first_sync_repairs_new_routes_in_one_batch_and_leaves_a_vip_on_lo_alone(lab):
    node3 = lab.nodes["node3"]
    # An AnyIP-style local route of lo for a service address (an address on lo would make it a host
    # address, which is refused as a service address).
    node3.run("ip", "route", "add", "local", "10.254.0.20", "dev", "lo", "table", "local")
    lo_before = [line for line in node3.local_routes(4).splitlines() if " dev lo " in line]
    report = sync(node3)
    assert report["converged"]
    ip_lines = [c for c in report["commands"] if c.startswith("ip route")]
    # Fresh addresses: one replace each; the VIP also on lo: append (a replace would take lo's route).
    assert f"ip route append local 10.254.0.20 dev kube-dummy-if proto kernel scope host src 192.168.123.249 " \
           "table local" in ip_lines
    assert f"ip route replace local 10.254.0.30 dev kube-dummy-if proto kernel scope host src 192.168.123.249 " \
           "table local" in ip_lines
    routes4 = node3.local_routes(4).splitlines()
    assert [line for line in routes4 if " dev lo " in line] == lo_before
    for vip in ADDRESSES:
        mine = [line for line in routes4 if line.startswith(f"local {vip} dev kube-dummy-if ")]
        assert len(mine) == 1 and "src 192.168.123.249" in mine[0], mine
    assert sync(node3)["commands"] == []
    node3.run("ip", "route", "del", "local", "10.254.0.20", "dev", "lo", "table", "local")


def test_traffic_through_every_kind_of_service_address(lab):
    for node in lab.nodes.values():
        sync(node)
    node1, node3 = lab.nodes["node1"], lab.nodes["node3"]
    # ClusterIP, round robin over pods on all three nodes: the #376 hang never appears.
    assert answering_pods(node3, "http://10.254.0.20/", tries=6) == WEB
    assert node3.curl("http://10.254.0.1:443/").startswith("apiserver 192.168.123.250 from 192.168.123.249")
    assert answering_pods(node3, "http://[fd00:254::50]/", tries=6) == WEB
    # ClientIP affinity pins one pod.
    assert len(answering_pods(node3, "http://10.254.0.30/", tries=6)) == 1
    # internalTrafficPolicy: Local only reaches the node's own pod.
    assert answering_pods(node3, "http://10.254.0.40/", tries=4) == {"3-web"}
    assert answering_pods(node1, "http://10.254.0.40/", tries=4) == {"1-web"}
    # NodePort on the node IP; with externalTrafficPolicy Local from another node, only node3's pod.
    assert answering_pods(node3, "http://192.168.123.249:30080/", tries=6) == WEB
    assert answering_pods(node1, "http://192.168.123.249:30081/", tries=3) == {"3-web"}
    # External IP and load-balancer IP reached from a client that routes them to node3.
    client = lab.add_node("client", "192.168.123.100")
    client.run("ip", "route", "add", "192.168.200.0/23", "via", "192.168.123.249")
    assert answering_pods(client, "http://192.168.200.10/", tries=3) == {"3-web"}
    assert answering_pods(client, "http://192.168.201.10/", tries=3) == {"3-web"}


def test_second_sync_plans_nothing_and_changes_give_only_their_commands(lab, tmp_path):
    node3 = lab.nodes["node3"]
    sync(node3)
    again = sync(node3)
    assert again["commands"] == [] and again["converged"]

    def drop_node2_pod(objects, _):
        objects[("EndpointSlice", "web-abcde")]["endpoints"].pop(1)
    changed = sync(node3, cluster_file=edited_example(tmp_path, drop_node2_pod))
    assert changed["commands"] == ["ipvsadm -d -t 10.254.0.20:80 -r 172.20.2.2:8080",
                                   "ipvsadm -d -t 192.168.123.249:30080 -r 172.20.2.2:8080"]

    def scheduler_lc(objects, _):
        drop_node2_pod(objects, _)
        objects[("Service", "web")]["metadata"]["annotations"] = {"kube-router.io/service.scheduler": "lc"}
    edited = sync(node3, cluster_file=edited_example(tmp_path, scheduler_lc))
    assert edited["commands"] == ["ipvsadm -E -t 10.254.0.20:80 -s lc", "ipvsadm -E -t 192.168.123.249:30080 -s lc"]
    assert "-A -t 10.254.0.20:80 -s lc" in node3.ipvs_rules()


def test_deleted_service_loses_its_virtual_server_address_and_route(lab, tmp_path):
    node3 = lab.nodes["node3"]
    sync(node3)

    def delete_sticky(_, doc):
        doc["items"] = [o for o in doc["items"] if o["metadata"]["name"] not in ("web-sticky", "web-sticky-abcde")]
    report = sync(node3, cluster_file=edited_example(tmp_path, delete_sticky))
    commands = report["commands"]
    netfilter = next((i for i, line in enumerate(commands) if line.startswith("ipset ") or line.endswith("<<'EOF'")),
                     len(commands))
    assert commands[:netfilter] == [
        "ip route del local 10.254.0.30 dev kube-dummy-if table local proto kernel src 192.168.123.249 metric 0",
        "ip addr del 10.254.0.30/32 dev kube-dummy-if",
        "ipvsadm -D -t 10.254.0.30:80"]
    # Netfilter: no rule is written; the deleted address and its ports leave kipvs's sets.
    assert commands[netfilter:] and all(line.startswith("ipset del KIPVS-") for line in commands[netfilter:])
    assert "ipset del KIPVS-SERVICE-IPS 10.254.0.30" in commands[netfilter:]
    assert not any("10.254.0.30" in line for line in node3.ipvs_rules())
    assert "10.254.0.30" not in node3.local_routes(4)


def test_foreign_ipvs_services_survive_sync_and_cleanup_which_leaves_no_trace(lab):
    node3 = lab.nodes["node3"]
    node3.run("ipvsadm", "-A", "-t", "10.10.10.10:80", "-s", "wlc")
    node3.run("ipvsadm", "-a", "-t", "10.10.10.10:80", "-r", "10.10.10.11:80", "-g")
    node3.run("ipvsadm", "-A", "-t", "192.168.123.249:22", "-s", "rr")
    node3.run("ipvsadm", "-A", "-f", "7", "-s", "rr")
    sync(node3)
    assert set(FOREIGN) <= set(node3.ipvs_rules())
    assert sync(node3)["commands"] == []
    proc = node3.kipvs("cleanup")
    assert proc.returncode == 0, proc.stderr
    # Silent on success: the summary line only, no red (no "RTNETLINK answers: No such process").
    assert proc.stderr.startswith("cleanup: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert sorted(node3.ipvs_rules()) == sorted(FOREIGN)
    assert node3.run("ip", "link", "show", "kube-dummy-if", check=False).returncode != 0
    assert "10.254." not in node3.local_routes(4) and "fd00:254" not in node3.local_routes(6)
    again = node3.kipvs("cleanup")
    assert again.returncode == 0 and "nothing to change" in again.stderr


def test_dry_run_changes_nothing(lab):
    node3 = lab.nodes["node3"]
    proc = node3.kipvs("sync", "-f", str(EXAMPLE), "--node-name", "node3", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "ip link add kube-dummy-if type dummy"
    assert node3.ipvs_rules() == [] and node3.run("ip", "link", "show", "kube-dummy-if", check=False).returncode != 0


def test_show_check_detects_drift_and_sync_repairs_it(lab):
    node3 = lab.nodes["node3"]
    sync(node3)
    show = ["show", "-f", str(EXAMPLE), "--node-name", "node3", *RANGES]
    assert node3.kipvs(*show, "--check").returncode == 0
    node3.run("ipvsadm", "-D", "-t", "10.254.0.20:80")
    node3.run("ip", "route", "replace", "local", "10.254.0.30", "dev", "kube-dummy-if", "proto", "kernel",
              "scope", "host", "src", "10.254.0.30", "table", "local")
    assert node3.kipvs(*show, "--check").returncode == 1
    report = json.loads(node3.kipvs(*show, "--output", "json").stdout)
    assert report["drift"]["missing_virtual_servers"] == ["TCP 10.254.0.20:80"]
    assert report["drift"]["wrong_routes"] == ["10.254.0.30"] and not report["in_sync"]
    web = next(s for s in report["services"] if s["name"] == "web")
    assert {rs["pod"] for vs in web["virtual_servers"] for rs in vs["real_servers"]} == \
        {"web-7d4b9c-x1a", "web-7d4b9c-x2b", "web-7d4b9c-x3c"}
    # Piped, show renders COLUMNS wide (200 when unset); the test's own terminal may set COLUMNS=80.
    text = node3.run("env", "COLUMNS=200", PYTHON, "-m", "kipvs", *show, check=False).stdout
    assert "default/web" in text and "web-7d4b9c-x2b" in text and "drift" in text
    sync(node3)
    assert node3.kipvs(*show, "--check").returncode == 0


def test_kube_router_2_persistence_netmask_is_drift_that_sync_repairs(lab):
    """kube-router 2.x leaves `-p N -M 32.0.0.0` (the mask 32 in host byte order): one template for all clients."""
    node3 = lab.nodes["node3"]
    sync(node3)
    routes4 = node3.local_routes(4).splitlines()
    for vip in ADDRESSES:  # the kernel's own route (src VIP) went once ours was read back: one route each
        assert [line.strip() for line in routes4 if line.startswith(f"local {vip} ")] == \
            [f"local {vip} dev kube-dummy-if proto kernel scope host src 192.168.123.249"], routes4
    node3.run("ipvsadm", "-E", "-t", "10.254.0.30:80", "-s", "wrr", "-p", "600", "-M", "32.0.0.0")
    assert "-A -t 10.254.0.30:80 -s wrr -p 600 -M 32.0.0.0" in node3.ipvs_rules()
    show = ["show", "-f", str(EXAMPLE), "--node-name", "node3", *RANGES]
    assert node3.kipvs(*show, "--check").returncode == 1
    drift = json.loads(node3.kipvs(*show, "--output", "json").stdout)["drift"]
    assert drift["different_virtual_servers"] == ["TCP 10.254.0.30:80"]
    report = sync(node3)
    assert report["commands"] == ["ipvsadm -E -t 10.254.0.30:80 -s wrr -p 600"] and report["converged"]
    assert "-A -t 10.254.0.30:80 -s wrr -p 600" in node3.ipvs_rules()
    assert node3.kipvs(*show, "--check").returncode == 0 and sync(node3)["commands"] == []
