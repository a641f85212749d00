"""Connection lifecycle on a real kernel, with real packets: rolling updates drain instead of resetting,
UDP flows move, IPVS timeouts, strict ARP, and externalTrafficPolicy Local on a node without a local pod."""
import json
import subprocess
import time

import pytest

from kipvs.facts.ipvsadm import parse_connections, parse_listing
from tests.kernel.lab import HERE, PYTHON, SWITCH, ip_batch, wait_until
from tests.unit.k8s import ep, eps, node, svc

VIP = "10.254.0.90"
LB_IP = "192.168.201.10"
OUTSIDE_IP = "192.168.123.50"
SERVICE = (("tcp", VIP, 80), ("udp", VIP, 53))
PORTS = [{"name": "tcp", "port": 80, "protocol": "TCP", "targetPort": 9000},
         {"name": "udp", "port": 53, "protocol": "UDP", "targetPort": 9000}]
SLICE_PORTS = [{"name": "tcp", "port": 9000, "protocol": "TCP"}, {"name": "udp", "port": 9000, "protocol": "UDP"}]
GRACE = 30  # long enough for the syncs, show and close between "left" and the check on a loaded guest


class Held:
    """One client socket in a namespace, kept open across syncs (connclient.py)."""

    def __init__(self, ns: str, kind: str, host: str, port: int, source_port: int | None = None):
        argv = ["ip", "netns", "exec", ns, PYTHON, "-S", str(HERE / "connclient.py"), kind, host, str(port)]
        self.proc = subprocess.Popen(argv + ([str(source_port)] if source_port else []), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "connected"

    def ask(self, line: str = "x") -> str:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)


@pytest.fixture
def pods(cluster):
    """node1..node3; pod A on node1 and pod B on node2 run connserver.py on port 9000."""
    nodes = [cluster.add_node(name) for name in ("node1", "node2", "node3")]
    found = {}
    for name, host in (("A", nodes[0]), ("B", nodes[1])):
        pod = cluster.add_pod(host, f"{host.name[-1]}-web")
        proc = subprocess.Popen(["ip", "netns", "exec", pod.name, PYTHON, "-S", str(HERE / "connserver.py"),
                                 name, "9000"], stdout=subprocess.PIPE, text=True)
        cluster.processes.append(proc)
        assert proc.stdout.readline().strip() == "ready"
        found[name] = pod
    return cluster, found


def write_cluster(path, *objects):
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        *objects, node("node1", "192.168.123.250"), node("node2", "192.168.123.248"),
        node("node3", "192.168.123.249")]}))
    return path


def web(path, *endpoints):
    return write_cluster(path, svc("web", cluster_ips=(VIP,), ports=PORTS), eps("web", list(endpoints), SLICE_PORTS))


def sync(host, path, *args):
    proc = host.kipvs("sync", "-f", str(path), "--node-name", host.name, "--drain-record",
                      f"/run/kipvs-draining-{host.name}.json", "--output", "json", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def real_servers(host, key=SERVICE[0]) -> dict[str, tuple[int, int, int]]:
    """{pod IP: (weight, ActiveConn, InActConn)} of one virtual server, as the kernel has it."""
    text = host.run("ipvsadm", "-L", "-n", "--exact").stdout
    counters = parse_connections(text)
    listed = {vs.key: vs for vs in parse_listing(text)}
    if key not in listed:
        return {}
    return {rs.ip: (rs.weight, counters[(key, rs.key)].active, counters[(key, rs.key)].inactive)
            for rs in listed[key].real_servers}


def one_shot(host, port=80) -> str:
    client = Held(host.name, "tcp", VIP, port)
    try:
        return client.ask()
    finally:
        client.close()


def test_rolling_update_drains_the_open_connection_then_removes_the_idle_server(pods, tmp_path):
    lab, pod = pods
    node3 = lab.nodes["node3"]
    a, b = pod["A"].ip, pod["B"].ip
    sync(node3, web(tmp_path / "v1.json", ep(a, "node1")), "--ipvs-graceful-period", f"{GRACE}s")
    held = Held("node3", "tcp", VIP, 80)
    try:
        assert held.ask() == "A"
        # Rolling update: A terminating (still serving), B ready.
        sync(node3, web(tmp_path / "v2.json", ep(a, "node1", ready=False, serving=True, terminating=True),
                        ep(b, "node2")), "--ipvs-graceful-period", f"{GRACE}s")
        assert real_servers(node3)[a] == (0, 1, 0) and real_servers(node3)[b][0] == 1
        assert held.ask() == "A"
        assert {one_shot(node3) for _ in range(3)} == {"B"}
        # A leaves the slice: still drained, the open connection still answered.
        gone = web(tmp_path / "v3.json", ep(b, "node2"))
        report = sync(node3, gone, "--ipvs-graceful-period", f"{GRACE}s")
        left_at = time.monotonic()
        assert real_servers(node3)[a][:2] == (0, 1) and held.ask() == "A"
        assert report["commands"] == []
        shown = json.loads(node3.kipvs("show", "-f", str(gone), "--node-name", "node3", "--drain-record",
                                       "/run/kipvs-draining-node3.json", "--output", "json").stdout)
        rows = {r["label"]: r for s in shown["services"] for v in s["virtual_servers"] for r in v["real_servers"]
                if v["label"] == f"TCP {VIP}:80"}
        assert rows[f"{a}:9000"]["state"] == "draining" and rows[f"{a}:9000"]["active"] == 1
    finally:
        held.close()
    # Closed: the kernel still counts it (FIN/TIME_WAIT) until the grace period passes, then A goes.
    sync(node3, gone, "--ipvs-graceful-period", f"{GRACE}s")
    assert a in real_servers(node3) and time.monotonic() - left_at < GRACE
    time.sleep(max(0.0, GRACE - (time.monotonic() - left_at)) + 0.5)
    report = sync(node3, gone, "--ipvs-graceful-period", f"{GRACE}s")
    assert report["commands"] == [f"ipvsadm -d -t {VIP}:80 -r {a}:9000"]
    assert set(real_servers(node3)) == {b}


def test_without_graceful_termination_the_open_connection_is_reset(pods, tmp_path):
    lab, pod = pods
    node3 = lab.nodes["node3"]
    a, b = pod["A"].ip, pod["B"].ip
    sync(node3, web(tmp_path / "v1.json", ep(a, "node1")))
    held = Held("node3", "tcp", VIP, 80)
    try:
        assert held.ask() == "A"
        sync(node3, web(tmp_path / "v2.json", ep(a, "node1", ready=False, serving=True, terminating=True),
                        ep(b, "node2")), "--ipvs-graceful-termination=false")
        assert set(real_servers(node3)) == {b}
        answer = held.ask()
        assert answer == "timeout" or answer.startswith("error"), answer
    finally:
        held.close()


def test_udp_flow_with_a_fixed_source_port_moves_to_the_remaining_endpoint_within_a_second(pods, tmp_path):
    lab, pod = pods
    node3 = lab.nodes["node3"]
    both = web(tmp_path / "v1.json", ep(pod["A"].ip, "node1"), ep(pod["B"].ip, "node2"))
    sync(node3, both)
    flow = Held("node3", "udp", VIP, 53, source_port=40053)
    try:
        first = flow.ask("1")
        assert first in ("A", "B") and flow.ask("1") == first  # pinned by the kernel's connection entry
        other = "B" if first == "A" else "A"
        sync(node3, web(tmp_path / "v2.json", ep(pod[other].ip, f"node{'1' if other == 'A' else '2'}")))
        started = time.monotonic()
        answer = flow.ask("1")
        print(f"UDP flow moved to {answer} in {time.monotonic() - started:.3f}s")
        assert answer == other and time.monotonic() - started < 1.0
    finally:
        flow.close()


def test_ipvs_timeouts_are_set_and_a_second_sync_changes_nothing(pods, tmp_path):
    lab, pod = pods
    node3 = lab.nodes["node3"]
    path = web(tmp_path / "v1.json", ep(pod["A"].ip, "node1"))
    before = node3.run("ipvsadm", "-L", "--timeout").stdout.split(":")[1].split()
    args = ("--ipvs-tcp-timeout", "1h", "--service-udp-timeout", "100s")
    first = sync(node3, path, *args)
    assert "ipvsadm --set 3600 0 100" in first["commands"]
    assert node3.run("ipvsadm", "-L", "--timeout").stdout.split(":")[1].split() == ["3600", before[1], "100"]
    assert sync(node3, path, *args)["commands"] == []


def outside(lab, name="outside", ip=OUTSIDE_IP):
    """A client on the node LAN with no route to the pod network (and no kipvs)."""
    lab._add_ns(name)
    ip_batch([f"link add {name}-e type veth peer name sw-{name}", f"link set {name}-e netns {name}",
              f"link set sw-{name} netns {SWITCH}", f"-n {SWITCH} link set sw-{name} master br0",
              f"-n {SWITCH} link set sw-{name} up", f"-n {name} link set {name}-e up",
              f"-n {name} addr add {ip}/24 dev {name}-e"])
    return name


def arping(ns: str, target: str) -> bool:
    proc = subprocess.run(["ip", "netns", "exec", ns, "busybox", "arping", "-c", "2", "-w", "3", "-I", f"{ns}-e",
                           target], capture_output=True, text=True, timeout=30)
    return "reply from" in proc.stdout.lower()


def load_balancer(path, endpoints, policy="Cluster"):
    lb = svc("lb", cluster_ips=("10.254.0.91",), type="LoadBalancer", externalTrafficPolicy=policy,
             ports=[{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080, "nodePort": 30091}],
             status={"loadBalancer": {"ingress": [{"ip": LB_IP}]}})
    return write_cluster(path, lb, eps("lb", endpoints, [{"name": "http", "port": 8080, "protocol": "TCP"}]))


LB_RANGE = ("--loadbalancer-ip-range", "192.168.201.0/24")


def test_strict_arp_by_default_so_only_the_announcing_speaker_answers_for_an_lb_ip(pods, tmp_path):
    lab, pod = pods
    node3 = lab.nodes["node3"]
    client = outside(lab)
    path = load_balancer(tmp_path / "lb.json", [ep(pod["A"].ip, "node1")])
    sync(node3, path, *LB_RANGE, "--ipvs-strict-arp=false")
    assert arping(client, LB_IP)  # the kernel's default: every node answers for its dummy's LB IP
    report = sync(node3, path, *LB_RANGE)
    assert {"sysctl -w net.ipv4.conf.all.arp_ignore=1", "sysctl -w net.ipv4.conf.all.arp_announce=2"} <= \
        set(report["commands"])
    assert not arping(client, LB_IP)
    assert arping(client, node3.ip)  # the node's own address still answers
    assert (node3.curl(f"http://{LB_IP}/") or "").startswith("1-web")  # and the LB IP still serves on the node


def test_local_policy_without_a_local_endpoint_reaches_the_lb_through_the_network_never_a_remote_pod(pods, tmp_path):
    lab, pod = pods
    node1, node3 = lab.nodes["node1"], lab.nodes["node3"]
    pod3 = lab.add_pod(node3, "3-web")
    client = outside(lab)
    # The network's router (the nodes' default gateway), which will route LB_IP to the node announcing it.
    router = outside(lab, "router", "192.168.123.1")
    subprocess.run(["ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True)
    path = load_balancer(tmp_path / "lb.json", [ep(pod["A"].ip, "node1")], policy="Local")
    for host in (node1, node3):
        sync(host, path, *LB_RANGE)
    assert LB_IP in node1.run("ip", "addr", "show", "kube-dummy-if").stdout
    assert LB_IP not in node3.run("ip", "addr", "show", "dev", "kube-dummy-if").stdout
    assert not any(LB_IP in line for line in node3.ipvs_rules())
    # An outside client sent to node3 is never balanced by it to the remote pod (node3 only routes it,
    # and the router has no route for LB_IP yet) ...
    subprocess.run(["ip", "-n", client, "route", "add", f"{LB_IP}/32", "via", node3.ip], check=True)
    assert _curl(client, f"http://{LB_IP}/") is None
    # ... while through node1 (which announces it) the pod sees the client's own address.
    subprocess.run(["ip", "-n", client, "route", "replace", f"{LB_IP}/32", "via", node1.ip], check=True)
    assert _curl(client, f"http://{LB_IP}/") == f"1-web {pod['A'].ip} from {OUTSIDE_IP}"
    # Once the router routes LB_IP to node1, node3's pod and node3 itself reach it through the network.
    subprocess.run(["ip", "-n", router, "route", "add", f"{LB_IP}/32", "via", node1.ip], check=True)
    expected = f"1-web {pod['A'].ip} from {pod3.ip}"
    assert wait_until(lambda: _curl(pod3.name, f"http://{LB_IP}/") == expected, 6), _curl(pod3.name, f"http://{LB_IP}/")
    assert node3.curl(f"http://{LB_IP}/") == f"1-web {pod['A'].ip} from {node3.ip}"


def _curl(ns: str, url: str) -> str | None:
    proc = subprocess.run(["ip", "netns", "exec", ns, "curl", "-s", "-m", "2", url], capture_output=True, text=True,
                          timeout=30)
    return proc.stdout.strip() if proc.returncode == 0 else None


def test_udp_flow_survives_a_scale_to_zero_and_reaches_the_new_endpoint_within_a_second(pods, tmp_path):
    """kube-proxy's other stale-conntrack case: a Service scaled to zero, then a new endpoint."""
    lab, pod = pods
    node3 = lab.nodes["node3"]
    sync(node3, web(tmp_path / "v1.json", ep(pod["A"].ip, "node1")))
    flow = Held("node3", "udp", VIP, 53, source_port=40054)
    try:
        assert flow.ask("1") == "A"
        sync(node3, web(tmp_path / "v2.json"))
        assert flow.ask("1") != "A"  # nothing serves it now
        sync(node3, web(tmp_path / "v3.json", ep(pod["B"].ip, "node2")))
        started = time.monotonic()
        answer = flow.ask("1")
        if answer != "B":  # a refused datagram may have been reported on this one: the next must come
            answer = flow.ask("1")
        print(f"UDP flow after scale to zero reached {answer} in {time.monotonic() - started:.3f}s")
        assert answer == "B" and time.monotonic() - started < 1.0
    finally:
        flow.close()
