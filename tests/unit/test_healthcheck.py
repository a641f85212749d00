"""healthCheckNodePort and the node /healthz: which checks, what they answer, servers following the Services."""
import json
import socket
import urllib.error
import urllib.request

from kipvs.healthcheck import HealthCheck, HealthServers, node_answer, node_eligible, service_answer, wanted_checks
from tests.unit.k8s import ep, eps, node, snapshot, svc


def local_lb(name="web", port=32100, **spec):
    return svc(name, type="LoadBalancer", externalTrafficPolicy="Local", healthCheckNodePort=port, **spec)


def test_only_local_policy_load_balancers_with_a_port_get_a_check_counting_ready_local_endpoints():
    snap = snapshot(local_lb(), eps("web", [ep("10.1.0.1", node="n1"), ep("10.1.0.2", node="n1", ready=False),
                                            ep("10.1.0.3", node="n2")]),
                    eps("web", [ep("10.1.0.1", node="n1"), ep("10.1.0.4", node="n1")], name="web-2"),
                    local_lb("empty", 32101),
                    svc("cluster", type="LoadBalancer", healthCheckNodePort=32102),
                    svc("nodeport", type="NodePort", externalTrafficPolicy="Local", healthCheckNodePort=32103),
                    eps("other", [ep("10.1.0.9", node="n1")]))
    assert wanted_checks(snap, "n1") == {("default", "web"): HealthCheck("default", "web", 32100, 2),
                                         ("default", "empty"): HealthCheck("default", "empty", 32101, 0)}
    assert wanted_checks(snap, "n2")[("default", "web")].local_endpoints == 1


def test_watch_cache_slices_parsed_early_count_the_same_as_raw_ones():
    """watch keeps EndpointSlices parsed (kipvs.incremental): the checks must read that form too."""
    from kipvs.cluster import parse_endpoint_slice_early
    from kipvs.sources import Snapshot

    raw = snapshot(local_lb(), eps("web", [ep("10.1.0.1", node="n1"), ep("10.1.0.3", node="n2")]),
                   eps("other", [ep("10.1.0.9", node="n1")]))
    parsed = Snapshot(raw.services, [parse_endpoint_slice_early(obj) for obj in raw.endpoint_slices], raw.nodes)
    assert wanted_checks(parsed, "n1") == wanted_checks(raw, "n1") == {
        ("default", "web"): HealthCheck("default", "web", 32100, 1)}


def test_hostile_health_check_ports_give_no_check_and_a_problem():
    from kipvs.cluster import parse_service

    for value, text in ((-1, "-1"), (70000, "70000"), ("32100", "'32100'"), (True, "'bool True'"),
                        (1.5, "'float 1.5'")):
        problems = []
        parsed = parse_service(local_lb(port=value), problems)
        assert parsed.health_check_node_port is None and not parsed.malformed
        assert [str(p) for p in problems] == [
            f"Service default/web: spec.healthCheckNodePort: {text} is not a port (1-65535); no health check"]
        assert wanted_checks(snapshot(local_lb(port=value)), "n1") == {}


def test_service_answer_is_kube_proxys_json_and_status():
    code, body = service_answer(HealthCheck("ns", "web", 32100, 1), True)
    assert code == 200 and json.loads(body) == {"service": {"namespace": "ns", "name": "web"},
                                                 "localEndpoints": 1, "serviceProxyHealthy": True}
    assert body.startswith('{\n\t"service": {\n\t\t"namespace": "ns",')  # kube-proxy's layout
    assert service_answer(HealthCheck("ns", "web", 32100, 0), True)[0] == 503
    code, body = service_answer(HealthCheck("ns", "web", 32100, 3), False)
    assert code == 503 and json.loads(body)["serviceProxyHealthy"] is False


def test_node_answer_healthz_and_livez():
    code, body = node_answer("/healthz", True, True, 100.0, 200.0)
    assert code == 200 and json.loads(body) == {"lastUpdated": "1970-01-01T00:03:20+00:00",
                                                "currentTime": "1970-01-01T00:03:20+00:00", "nodeEligible": True}
    code, body = node_answer("/healthz", False, True, 100.0, 200.0)
    assert code == 503 and json.loads(body)["lastUpdated"] == "1970-01-01T00:01:40+00:00"
    assert node_answer("/healthz", True, False, 100.0, 200.0)[0] == 503
    code, body = node_answer("/livez", True, False, 100.0, 200.0)
    assert code == 200 and "nodeEligible" not in json.loads(body)
    assert node_answer("/other", True, True, None, 1.0)[0] == 404


def test_node_eligibility_follows_deletion_and_the_autoscaler_taint():
    plain = node("n1", "192.168.1.10")
    tainted = node("n1", "192.168.1.10")
    tainted["spec"] = {"taints": [{"key": "ToBeDeletedByClusterAutoscaler", "effect": "NoSchedule"}]}
    deleting = node("n1", "192.168.1.10")
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    hostile = node("n1")
    hostile["spec"] = {"taints": "all"}
    assert node_eligible(snapshot(plain), "n1") and node_eligible(snapshot(), "n1")
    assert node_eligible(snapshot(hostile), "n1")
    assert not node_eligible(snapshot(tainted), "n1") and not node_eligible(snapshot(deleting), "n1")


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_servers_open_answer_any_path_move_and_close_with_the_services():
    healthy = [True]
    servers = HealthServers(lambda: healthy[0], lambda: 1.0, lambda: 2.0)
    port, other = free_port(), free_port()
    try:
        key = ("default", "web")
        assert servers.update({key: HealthCheck("default", "web", port, 1)}, ["127.0.0.1"]) == []
        code, headers, body = get(f"http://127.0.0.1:{port}/any/path?x=1")
        assert code == 200 and json.loads(body)["localEndpoints"] == 1
        assert headers["Content-Type"] == "application/json" and headers["X-Content-Type-Options"] == "nosniff"
        # Endpoints leave the node: the same server answers 503; a stale proxy too.
        servers.update({key: HealthCheck("default", "web", port, 0)}, ["127.0.0.1"])
        assert get(f"http://127.0.0.1:{port}/")[0] == 503
        servers.update({key: HealthCheck("default", "web", port, 2)}, ["127.0.0.1"])
        healthy[0] = False
        assert get(f"http://127.0.0.1:{port}/")[0] == 503
        healthy[0] = True
        # The port changes: the old one closes, the new one answers.
        servers.update({key: HealthCheck("default", "web", other, 2)}, ["127.0.0.1"])
        assert servers.ports() == {key: other} and get(f"http://127.0.0.1:{other}/")[0] == 200
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0
        # The Service goes: nothing listens any more.
        servers.update({}, ["127.0.0.1"])
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", other)) != 0
    finally:
        servers.close()


def test_a_port_that_cannot_be_bound_is_a_problem_and_others_still_open():
    servers = HealthServers(lambda: True, lambda: None, lambda: 0.0)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    busy, fine = taken.getsockname()[1], free_port()
    try:
        problems = servers.update({("default", "busy"): HealthCheck("default", "busy", busy, 1),
                                   ("default", "fine"): HealthCheck("default", "fine", fine, 1)}, ["127.0.0.1"])
        assert [str(p) for p in problems] == [
            f"Service default/busy: spec.healthCheckNodePort: cannot listen on 127.0.0.1:{busy}: Address already in "
            "use; no health check on this node"]
        assert get(f"http://127.0.0.1:{fine}/")[0] == 200
        taken.close()  # freed: the next update opens it
        assert servers.update({("default", "busy"): HealthCheck("default", "busy", busy, 1)}, ["127.0.0.1"]) == []
        assert get(f"http://127.0.0.1:{busy}/")[0] == 200
        assert [str(p) for p in servers.update({("default", "x"): HealthCheck("default", "x", fine, 1)}, [])] == [
            "Service default/x: spec.healthCheckNodePort: no node IP to listen on; no health check on this node"]
    finally:
        taken.close()
        servers.close()


def test_node_healthz_server_and_an_unbindable_address_is_logged_not_fatal(caplog):
    state = {"healthy": True}
    servers = HealthServers(lambda: state["healthy"], lambda: 5.0, lambda: 10.0)
    port = free_port()
    try:
        servers.serve_node(("127.0.0.1", port))
        servers.update({}, [], eligible=False)
        code, headers, body = get(f"http://127.0.0.1:{port}/healthz")
        assert code == 503 and json.loads(body)["nodeEligible"] is False
        assert headers["Content-Type"] == "application/json"
        assert get(f"http://127.0.0.1:{port}/livez")[0] == 200
        again = HealthServers(lambda: True, lambda: None, lambda: 0.0)
        again.serve_node(("127.0.0.1", port))
        assert again.node_server is None and "cannot listen" in caplog.text
    finally:
        servers.close()


def test_a_bad_healthz_bind_address_is_a_one_line_error_before_anything_runs(tmp_path):
    from tests.unit.fakes import invoke

    result = invoke(["watch", "--healthz-bind-address", "10256", "--kubeconfig", str(tmp_path / "none"),
                     "--lock-file", str(tmp_path / "lock")])
    assert result.exit_code == 2 and "--healthz-bind-address '10256': expected IP:PORT" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_opening_a_server_never_looks_its_address_up(monkeypatch):
    """HTTPServer's own bind resolves the address's name: seconds per server where DNS does not answer."""
    def no_dns(*_):
        raise AssertionError("name lookup")

    monkeypatch.setattr(socket, "getfqdn", no_dns)
    servers = HealthServers(lambda: True, lambda: None, lambda: 0.0)
    port = free_port()
    try:
        assert servers.update({("default", "web"): HealthCheck("default", "web", port, 1)}, ["127.0.0.1"]) == []
        assert get(f"http://127.0.0.1:{port}/")[0] == 200
    finally:
        servers.close()
