"""Rejected input on a real kernel: a policy rejection removes what it had allowed, a partial dump changes nothing."""
import json

from tests.kernel.test_sync import EXAMPLE, edited_example, sync

NARROW = ("--service-external-ip-range", "192.168.250.0/24", "--loadbalancer-ip-range", "192.168.201.0/24")


def kipvs_sync(node, cluster_file, *ranges):
    proc = node.kipvs("sync", "-f", str(cluster_file), "--node-name", node.name, "--output", "json", *ranges)
    return proc, (json.loads(proc.stdout) if proc.stdout.strip() else None)


def test_narrowing_the_external_ip_range_removes_the_forbidden_virtual_server_and_address(lab):
    node3 = lab.nodes["node3"]
    sync(node3)
    assert "-A -t 192.168.200.10:80 -s rr" in node3.ipvs_rules()
    proc, report = kipvs_sync(node3, EXAMPLE, *NARROW)
    assert proc.returncode == 0, proc.stderr
    assert "192.168.200.10 is outside --service-external-ip-range" in proc.stderr
    assert "ipvsadm -D -t 192.168.200.10:80" in report["commands"]
    assert not any("192.168.200.10" in line for line in node3.ipvs_rules())
    assert "192.168.200.10" not in node3.run("ip", "-o", "addr", "show", "dev", "kube-dummy-if").stdout
    assert "192.168.200.10" not in node3.local_routes(4)
    again_proc, again = kipvs_sync(node3, EXAMPLE, *NARROW)
    assert again_proc.returncode == 0 and again["commands"] == []


def test_a_port_change_beside_a_rejected_external_ip_removes_the_old_port(lab, tmp_path):
    node3 = lab.nodes["node3"]
    sync(node3)

    def port_81(objects, _):
        objects[("Service", "web-local")]["spec"]["ports"][0]["port"] = 81
    proc, report = kipvs_sync(node3, edited_example(tmp_path, port_81), *NARROW)
    assert proc.returncode == 0, proc.stderr
    rules = node3.ipvs_rules()
    assert "-A -t 10.254.0.40:81 -s rr" in rules and "-A -t 10.254.0.40:80 -s rr" not in rules
    assert not any(line.startswith("-A -t 192.168.200.10:") for line in rules)
    assert report["converged"]


def test_a_services_only_dump_is_refused_and_changes_nothing(lab, tmp_path):
    node3 = lab.nodes["node3"]
    sync(node3)
    before = (sorted(node3.ipvs_rules()), node3.local_routes(4))

    def services_only(_, doc):
        doc["items"] = [o for o in doc["items"] if o["kind"] == "Service"]
    proc, report = kipvs_sync(node3, edited_example(tmp_path, services_only), *NARROW)
    assert proc.returncode == 2 and report is None
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "no EndpointSlices, no Nodes" in proc.stderr
    assert (sorted(node3.ipvs_rules()), node3.local_routes(4)) == before
