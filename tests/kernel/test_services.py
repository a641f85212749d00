"""Per-Service features on a real kernel: healthCheckNodePort and per-Service traffic metrics from
`kipvs watch` (against a real kube-apiserver), topology hints and kube-router.io/service.skiplbips."""
import json
import subprocess

import yaml

from tests.kernel.lab import PYTHON, REPO, wait_until
from tests.kernel.metrics_text import sample
from tests.kernel.scenario import answering_pods
from tests.kernel.test_watch import RANGES, start_api_server
from tests.kube.pairctl import control

EXAMPLE = REPO / "examples" / "cluster.yaml"
HC_PORT = 32100


def http(node, url, seconds=3):
    """(status, body) of a GET from inside `node`, or (None, "") when nothing answered."""
    proc = node.run("curl", "-s", "-g", "-m", str(seconds), "-w", "\n%{http_code}", url, check=False,
                    timeout=seconds + 30)
    if proc.returncode != 0:
        return None, ""
    body, _, code = proc.stdout.rpartition("\n")
    return int(code), body


def start_watch(cluster, node, kubeconfig, tmp_path):
    log = open(tmp_path / f"watch-{node.name}.log", "w")
    watch = subprocess.Popen(["ip", "netns", "exec", node.name, PYTHON, "-m", "kipvs", "-v", "watch",
                              "--kubeconfig", str(kubeconfig), "--node-name", node.name, *RANGES,
                              "--min-sync-period", "50ms", "--metrics-addr", "127.0.0.1:9254",
                              "--lock-file", str(tmp_path / f"kipvs-{node.name}.lock")], stderr=log, cwd=REPO)
    cluster.processes.append(watch)
    return watch


def health_checked_service():
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "web-hc", "namespace": "default"},
               "spec": {"type": "LoadBalancer", "clusterIP": "10.254.0.80", "externalTrafficPolicy": "Local",
                        "healthCheckNodePort": HC_PORT,
                        "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080,
                                   "nodePort": 30082}]},
               "status": {"loadBalancer": {"ingress": [{"ip": "192.168.201.30"}]}}}
    endpoints = [{"addresses": [ip], "conditions": {"ready": True}, "nodeName": node}
                 for ip, node in (("172.20.1.2", "node1"), ("172.20.3.2", "node3"))]
    slice_ = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
              "metadata": {"name": "web-hc-abcde", "namespace": "default",
                           "labels": {"kubernetes.io/service-name": "web-hc"}},
              "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}], "endpoints": endpoints}
    return service, slice_


def service_connections(node, vip):
    value = sample(node.curl("http://127.0.0.1:9254/metrics"), "kipvs_service_total_connections",
                   namespace="default", service="web", vip=vip, protocol="TCP", port="80")
    return None if value is None else int(value)


def test_health_check_node_port_node_healthz_and_service_metrics(cluster, tmp_path):
    for name in ("node1", "node2", "node3"):
        cluster.add_pod(cluster.add_node(name), f"{name[-1]}-web")
    api, sock, kubeconfig = start_api_server(tmp_path)
    cluster.processes.append(api)
    node1, node2, node3 = (cluster.nodes[n] for n in ("node1", "node2", "node3"))
    for node in (node2, node3):
        start_watch(cluster, node, kubeconfig, tmp_path)
    logs = lambda: "\n".join(p.read_text() for p in tmp_path.glob("watch-*.log"))  # noqa: E731
    for node in (node2, node3):
        assert wait_until(lambda: "-A -t 10.254.0.20:80 -s rr" in node.ipvs_rules(), 60), logs()
    service, slice_ = health_checked_service()
    control(sock, op="apply", object=service)
    control(sock, op="apply", object=slice_)

    # node3 has one ready endpoint of web-hc: 200; node2 has none: 503. Asked from node1, on the node IPs.
    assert wait_until(lambda: http(node1, f"http://{node3.ip}:{HC_PORT}/")[0] == 200, 60), logs()
    code, body = http(node1, f"http://{node3.ip}:{HC_PORT}/any/path")
    assert code == 200 and json.loads(body) == {"service": {"namespace": "default", "name": "web-hc"},
                                                "localEndpoints": 1, "serviceProxyHealthy": True}
    assert wait_until(lambda: http(node1, f"http://{node2.ip}:{HC_PORT}/")[0] == 503, 30), logs()
    assert json.loads(http(node1, f"http://{node2.ip}:{HC_PORT}/")[1])["localEndpoints"] == 0
    headers = node1.run("curl", "-s", "-D", "-", "-o", "/dev/null", f"http://{node3.ip}:{HC_PORT}/").stdout
    assert "Content-Type: application/json" in headers and "X-Content-Type-Options: nosniff" in headers
    # The node-level check on kube-proxy's port.
    code, body = http(node1, f"http://{node3.ip}:10256/healthz")
    assert code == 200 and json.loads(body)["nodeEligible"] is True
    # node3's endpoint leaves: its check turns 503; the Service goes: the port closes.
    control(sock, op="apply", object=dict(slice_, endpoints=slice_["endpoints"][:1]))
    assert wait_until(lambda: http(node1, f"http://{node3.ip}:{HC_PORT}/")[0] == 503, 30), logs()
    control(sock, op="delete", kind="Service", name="web-hc", namespace="default")
    assert wait_until(lambda: http(node1, f"http://{node3.ip}:{HC_PORT}/", seconds=1)[0] is None, 30), logs()

    # Per-Service traffic: the counters of 10.254.0.20 move when connections go through it.
    assert wait_until(lambda: service_connections(node3, "10.254.0.20") is not None, 20), \
        node3.curl("http://127.0.0.1:9254/metrics")
    before = service_connections(node3, "10.254.0.20")
    assert len(answering_pods(node3, "http://10.254.0.20/", tries=6)) >= 2
    # Listings are reused for 5 s: the next read shows the new connections.
    assert wait_until(lambda: (service_connections(node3, "10.254.0.20") or 0) >= before + 6, 20), \
        (before, node3.curl("http://127.0.0.1:9254/metrics"))
    text = node3.curl("http://127.0.0.1:9254/metrics")
    assert sample(text, "kipvs_service_bytes_in", namespace="default", service="web", vip="10.254.0.20",
                  protocol="TCP", port="80") > 0
    print("metrics after 6 connections:", [line for line in text.splitlines() if 'vip="10.254.0.20"' in line][:5])


def zoned_cluster(tmp_path, unhinted=(), skip_lb=True):
    """The example with zones (node1, node3: zone-a; node2: zone-b), a hinted Service, and an LB Service
    carrying kube-router.io/service.skiplbips."""
    doc = yaml.safe_load(EXAMPLE.read_text())
    for item in doc["items"]:
        if item["kind"] == "Node":
            item["metadata"]["labels"]["topology.kubernetes.io/zone"] = "zone-b" if item["metadata"]["name"] == \
                "node2" else "zone-a"
    endpoints = []
    for ip, node, zone in (("172.20.1.2", "node1", "zone-a"), ("172.20.2.2", "node2", "zone-b"),
                           ("172.20.3.2", "node3", "zone-a")):
        endpoint = {"addresses": [ip], "conditions": {"ready": True}, "nodeName": node}
        if node not in unhinted:
            endpoint["hints"] = {"forZones": [{"name": zone}]}
        endpoints.append(endpoint)
    doc["items"] += [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "zoned", "namespace": "default"},
         "spec": {"type": "ClusterIP", "clusterIP": "10.254.0.70", "trafficDistribution": "PreferClose",
                  "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
         "metadata": {"name": "zoned-abcde", "namespace": "default",
                      "labels": {"kubernetes.io/service-name": "zoned"}},
         "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}], "endpoints": endpoints},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "no-lb", "namespace": "default",
                      "annotations": {"kube-router.io/service.skiplbips": "true"} if skip_lb else {}},
         "spec": {"type": "LoadBalancer", "clusterIP": "10.254.0.71",
                  "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080,
                             "nodePort": 30083}]},
         "status": {"loadBalancer": {"ingress": [{"ip": "192.168.201.71"}]}}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
         "metadata": {"name": "no-lb-abcde", "namespace": "default",
                      "labels": {"kubernetes.io/service-name": "no-lb"}},
         "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
         "endpoints": [{"addresses": ["172.20.2.2"], "conditions": {"ready": True}, "nodeName": "node2"}]},
    ]
    path = tmp_path / "zoned.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def sync(node, path):
    proc = node.kipvs("sync", "-f", str(path), "--node-name", node.name, *RANGES, "--output", "json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def real_servers(node, vip):
    return sorted(line.split()[4] for line in node.ipvs_rules() if line.startswith(f"-a -t {vip}:80 "))


def test_topology_hints_and_skiplbips(lab, tmp_path):
    node3 = lab.nodes["node3"]
    # Complete zone hints: node3 (zone-a) keeps zone-a's endpoints, and curl reaches only them.
    assert sync(node3, zoned_cluster(tmp_path))["converged"]
    assert real_servers(node3, "10.254.0.70") == ["172.20.1.2:8080", "172.20.3.2:8080"]
    assert answering_pods(node3, "http://10.254.0.70/", tries=6) == {"1-web", "3-web"}
    # skiplbips: the cluster IP and NodePort are served, the load-balancer IP is not.
    rules = node3.ipvs_rules()
    assert "-A -t 10.254.0.71:80 -s rr" in rules and "-A -t 192.168.123.249:30083 -s rr" in rules
    assert not any("192.168.201.71" in line for line in rules)
    report = json.loads(node3.kipvs("show", "-f", str(zoned_cluster(tmp_path)), "--node-name", "node3",
                                    *RANGES, "--output", "json").stdout)
    notes = {(s["name"]): s["notes"] for s in report["services"]}
    assert notes["no-lb"] == ["no virtual server for load-balancer IP 192.168.201.71 "
                              "(annotation kube-router.io/service.skiplbips)"]
    assert notes["zoned"] == ["topology hints (PreferSameZone): 2 of 3 endpoints, those for zone zone-a"]
    # One endpoint without a hint: every endpoint again; and without the annotation the LB IP is served.
    assert sync(node3, zoned_cluster(tmp_path, unhinted={"node2"}, skip_lb=False))["converged"]
    assert real_servers(node3, "10.254.0.70") == ["172.20.1.2:8080", "172.20.2.2:8080", "172.20.3.2:8080"]
    assert "-A -t 192.168.201.71:80 -s rr" in node3.ipvs_rules()
