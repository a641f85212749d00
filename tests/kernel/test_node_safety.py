"""kipvs never harms the node it runs on, proven on a real kernel with the node's own addresses and routes."""
from tests.kernel.test_rejections import kipvs_sync
from tests.kernel.test_sync import EXAMPLE, RANGES, edited_example, sync

NODE3_IP = "192.168.123.249"
FOREIGN_SSH = [f"-A -t {NODE3_IP}:22 -s wlc", f"-a -t {NODE3_IP}:22 -r 172.20.3.2:8080 -m -w 1"]


def node_state(node):
    """The node's own side: eth0's global addresses and every local route not on kipvs's interface
    (IPv6 link-local ones come and go as interfaces finish DAD, whatever kipvs does)."""
    addresses = node.run("ip", "-o", "addr", "show", "dev", "eth0", "scope", "global").stdout
    routes = [line for line in (node.local_routes(4) + node.local_routes(6)).splitlines()
              if "kube-dummy-if" not in line and "fe80:" not in line]
    return addresses, sorted(routes)


def test_an_external_ip_equal_to_the_node_ip_leaves_the_node_and_a_foreign_service_alone(lab, tmp_path):
    node3 = lab.nodes["node3"]
    node3.run("ipvsadm", "-A", "-t", f"{NODE3_IP}:22", "-s", "wlc")
    node3.run("ipvsadm", "-a", "-t", f"{NODE3_IP}:22", "-r", "172.20.3.2:8080", "-m")
    before = node_state(node3)

    def node_ip_as_external(objects, _):
        spec = objects[("Service", "web")]["spec"]
        spec["externalIPs"] = [NODE3_IP]
        spec["ports"].append({"name": "ssh", "port": 22, "protocol": "TCP", "targetPort": 8080})
    proc, report = kipvs_sync(node3, edited_example(tmp_path, node_ip_as_external),
                              "--service-external-ip-range", "192.168.123.0/24")
    assert proc.returncode == 0, proc.stderr
    assert f"spec.externalIPs[0]: {NODE3_IP} is one of this host's own addresses; skipped" in proc.stderr
    rules = node3.ipvs_rules()
    assert all(line in rules for line in FOREIGN_SSH) and f"-A -t {NODE3_IP}:22 -s rr" not in rules
    assert NODE3_IP not in node3.run("ip", "-o", "addr", "show", "dev", "kube-dummy-if").stdout
    assert node_state(node3) == before


def test_interface_eth0_is_refused_and_eth0_is_untouched(lab):
    node3 = lab.nodes["node3"]
    before = node_state(node3)
    for command in (["sync", "-f", str(EXAMPLE), "--node-name", "node3", *RANGES], ["cleanup"]):
        proc = node3.kipvs(*command, "--interface", "eth0")
        assert proc.returncode == 2 and "exists and is not a dummy interface" in proc.stderr, proc.stderr
    assert node_state(node3) == before and node3.ipvs_rules() == []


def test_an_excluded_address_on_the_dummy_interface_survives_sync_and_cleanup(lab):
    node3 = lab.nodes["node3"]
    sync(node3)
    node3.run("ip", "addr", "add", "10.254.9.9/32", "dev", "kube-dummy-if")
    excluded = ("--excluded-cidrs", "10.254.9.9/32")
    proc, report = kipvs_sync(node3, EXAMPLE, *RANGES, *excluded)
    assert proc.returncode == 0 and report["commands"] == [], proc.stderr
    proc = node3.kipvs("cleanup", *excluded)
    assert proc.returncode == 0, proc.stderr
    addresses = node3.run("ip", "-o", "addr", "show", "dev", "kube-dummy-if").stdout
    assert "10.254.9.9/32" in addresses and "10.254.0.10/32" not in addresses


def test_an_external_ip_inside_the_cluster_ip_range_never_shadows_a_cluster_ip(lab, tmp_path):
    node3 = lab.nodes["node3"]

    def shadow_kubernetes(objects, _):
        objects[("Service", "web")]["spec"]["externalIPs"] = ["10.254.0.1"]
        objects[("Service", "web")]["spec"]["ports"][0]["port"] = 443
    proc, report = kipvs_sync(node3, edited_example(tmp_path, shadow_kubernetes), "--service-external-ip-range",
                              "10.254.0.0/16", "--service-cluster-ip-range", "10.254.0.0/16")
    assert proc.returncode == 0, proc.stderr
    assert "10.254.0.1 is inside --service-cluster-ip-range; skipped" in proc.stderr
    assert "-a -t 10.254.0.1:443 -r 192.168.123.250:6443 -m -w 1" in node3.ipvs_rules()
    assert (node3.curl("http://10.254.0.1:443/", 5) or "").startswith("apiserver")
