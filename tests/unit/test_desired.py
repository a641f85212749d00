"""Each Service semantic rule, as a pure function of API objects."""
import ipaddress

from kipvs.config import ProxyOptions
from kipvs.desired import build_desired, node_ips_from_objects
from kipvs.model import RealServer
from tests.unit.k8s import ep, eps, node, snapshot, svc

NODE_IPS = {4: "192.168.1.10", 6: "fd00:1::10"}
OPTS = ProxyOptions()


def desired(*objects, options=OPTS, node_ips=NODE_IPS, local_ips=None):
    return build_desired(snapshot(*objects), "node-a", node_ips, options, local_ips)


def servers(d):
    return {vs.key: vs for vs in d.virtual_servers}


def test_cluster_ip_virtual_server_with_ready_endpoints():
    d = desired(svc("web"), eps("web", [ep("10.1.0.5"), ep("10.1.0.6", node="node-b")]))
    vs = servers(d)[("tcp", "10.96.0.10", 80)]
    assert vs.scheduler == "rr" and vs.persistent is None and vs.flags == ()
    assert vs.real_servers == (RealServer("10.1.0.5", 8080, 1, "masq"), RealServer("10.1.0.6", 8080, 1, "masq"))
    assert d.addresses == ("10.96.0.10",)
    assert d.backends == {} and d.local_backends == {("10.1.0.5", 8080)}  # node-a's own; pods only for show
    shown = build_desired(snapshot(svc("web"), eps("web", [ep("10.1.0.5"), ep("10.1.0.6", node="node-b")])),
                          "node-a", NODE_IPS, OPTS, backends=True)
    assert shown.backends[("10.1.0.6", 8080)].pod == "pod-10.1.0.6" and shown.backends[("10.1.0.6", 8080)].node == "node-b"
    assert shown.local_backends == d.local_backends


def test_protocols_udp_and_sctp_and_unknown():
    ports = [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "s", "port": 9, "protocol": "SCTP"},
             {"name": "x", "port": 10, "protocol": "QUIC"}]
    d = desired(svc("multi", ports=ports))
    assert set(servers(d)) == {("udp", "10.96.0.10", 53), ("sctp", "10.96.0.10", 9)}
    assert [str(p) for p in d.problems] == ["Service default/multi: spec.ports[2].protocol: unknown protocol 'QUIC'; "
                                            "port skipped"]


def test_dual_stack_gives_one_virtual_server_per_family_with_matching_endpoints():
    d = desired(svc("dual", cluster_ips=("10.96.0.10", "fd00:96::10")),
                eps("dual", [ep("10.1.0.5")]), eps("dual", [ep("fd00:1::5")], address_type="IPv6", name="dual-6"))
    s = servers(d)
    assert s[("tcp", "10.96.0.10", 80)].real_servers == (RealServer("10.1.0.5", 8080),)
    assert s[("tcp", "fd00:96::10", 80)].real_servers == (RealServer("fd00:1::5", 8080),)
    assert d.addresses == ("10.96.0.10", "fd00:96::10")


def test_port_matched_by_name_across_several_slices_and_null_endpoints():
    ports = [{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "metrics", "port": 9100, "protocol": "TCP"}]
    d = desired(svc("web", ports=ports),
                eps("web", [ep("10.1.0.5")], ports=[{"name": "http", "port": 8080, "protocol": "TCP"},
                                                    {"name": "metrics", "port": 9999, "protocol": "TCP"}], name="a"),
                eps("web", [ep("10.1.0.7")], name="b"),
                eps("web", None, name="c"))
    s = servers(d)
    assert [rs.key for rs in s[("tcp", "10.96.0.10", 80)].real_servers] == [("10.1.0.5", 8080), ("10.1.0.7", 8080)]
    assert [rs.key for rs in s[("tcp", "10.96.0.10", 9100)].real_servers] == [("10.1.0.5", 9999)]


def test_ready_unset_counts_as_ready_and_terminating_serving_is_a_fallback_only():
    d = desired(svc("web"), eps("web", [ep("10.1.0.5", ready=None), ep("10.1.0.6", ready=False, serving=True)]))
    assert [rs.ip for rs in servers(d)[("tcp", "10.96.0.10", 80)].real_servers] == ["10.1.0.5"]
    d = desired(svc("web"), eps("web", [ep("10.1.0.6", ready=False, serving=True, terminating=True),
                                        ep("10.1.0.7", ready=False, serving=False)]))
    assert [rs.ip for rs in servers(d)[("tcp", "10.96.0.10", 80)].real_servers] == ["10.1.0.6"]


def test_node_port_on_node_ip_of_each_family_and_bind_on_all():
    port = [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}]
    d = desired(svc("np", cluster_ips=("10.96.0.10", "fd00:96::10"), ports=port, type="NodePort"))
    assert {("tcp", "192.168.1.10", 30080), ("tcp", "fd00:1::10", 30080)} <= set(servers(d))
    assert "192.168.1.10" not in d.addresses  # node IPs are never bound to the dummy interface
    all_ips = desired(svc("np", ports=port, type="NodePort"), local_ips=["192.168.1.10", "172.17.0.1"],
                      options=ProxyOptions(nodeport_bindon_all_ip=True))
    assert {("tcp", "192.168.1.10", 30080), ("tcp", "172.17.0.1", 30080)} <= set(servers(all_ips))


def test_node_port_outside_range_is_reported():
    port = [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 8080}]
    d = desired(svc("np", ports=port, type="NodePort"))
    assert ("tcp", "192.168.1.10", 8080) not in servers(d)
    assert "spec.ports[0].nodePort: 8080 is outside --service-node-port-range 30000-32767" in str(d.problems[0])


def test_external_and_lb_ips_need_an_allowed_range_by_default():
    s = svc("lb", type="LoadBalancer", externalIPs=["203.0.113.7"],
            status={"loadBalancer": {"ingress": [{"ip": "198.51.100.1"}, {"ip": "198.51.100.2", "ipMode": "Proxy"},
                                                 {"hostname": "lb.example"}]}})
    strict = desired(s)
    assert set(strict.addresses) == {"10.96.0.10"}
    assert len(strict.problems) == 2 and "CVE-2020-8554" in str(strict.problems[0])
    allowed = desired(s, options=ProxyOptions(external_ip_ranges=(ipaddress.ip_network("203.0.113.0/24"),),
                                              loadbalancer_ip_ranges=(ipaddress.ip_network("198.51.100.0/24"),)))
    assert set(allowed.addresses) == {"10.96.0.10", "203.0.113.7", "198.51.100.1"}
    assert allowed.origins[("tcp", "198.51.100.1", 80)].kind == "LoadBalancer"
    lax = desired(s, options=ProxyOptions(strict_external_ip_validation=False))
    assert "198.51.100.2" not in lax.addresses and "203.0.113.7" in lax.addresses  # ipMode Proxy never


def test_skipped_kinds_of_service():
    d = desired(svc("headless", cluster_ips=("None",)), svc("ext", cluster_ips=(), type="ExternalName"),
                svc("other", labels={"service.kubernetes.io/service-proxy-name": "cilium"}),
                svc("ours", cluster_ips=("10.96.0.11",), labels={"service.kubernetes.io/service-proxy-name": "kube-router"}))
    assert list(servers(d)) == [("tcp", "10.96.0.11", 80)]
    assert len(d.skipped) == 3 and not d.problems


def test_client_ip_affinity_becomes_persistence():
    d = desired(svc("a", sessionAffinity="ClientIP"),
                svc("b", cluster_ips=("10.96.0.11",), sessionAffinity="ClientIP",
                    sessionAffinityConfig={"clientIP": {"timeoutSeconds": 600}}))
    assert servers(d)[("tcp", "10.96.0.10", 80)].persistent == 10800
    assert servers(d)[("tcp", "10.96.0.11", 80)].persistent == 600


def test_scheduler_and_flags_annotations():
    d = desired(svc("a", annotations={"kube-router.io/service.scheduler": "sh",
                                      "kube-router.io/service.schedflags": "flag-1,flag-2,flag-3"}),
                svc("b", cluster_ips=("10.96.0.11",), annotations={"kipvs.io/scheduler": "mh",
                                                                    "kube-router.io/service.schedflags": "flag-2"}))
    assert servers(d)[("tcp", "10.96.0.10", 80)].flags == ("sh-fallback", "sh-port")
    assert servers(d)[("tcp", "10.96.0.11", 80)].scheduler == "mh"
    assert servers(d)[("tcp", "10.96.0.11", 80)].flags == ("mh-port",)


def test_bad_scheduler_is_reported_and_default_used():
    d = desired(svc("a", annotations={"kube-router.io/service.scheduler": "fastest",
                                      "kube-router.io/service.schedflags": "flag-9"}),
                options=ProxyOptions(scheduler="wlc"))
    assert servers(d)[("tcp", "10.96.0.10", 80)].scheduler == "wlc"
    assert [p.field for p in d.problems] == ["metadata.annotations[kube-router.io/service.scheduler]",
                                             "metadata.annotations[kube-router.io/service.schedflags]"]
    assert "Service default/a" in str(d.problems[0]) and "'fastest'" in str(d.problems[0])


def test_external_traffic_policy_local_keeps_cluster_ip_global():
    port = [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}]
    d = desired(svc("l", ports=port, type="NodePort", externalTrafficPolicy="Local"),
                eps("l", [ep("10.1.0.5", node="node-a"), ep("10.1.0.6", node="node-b")]))
    assert [rs.ip for rs in servers(d)[("tcp", "192.168.1.10", 30080)].real_servers] == ["10.1.0.5"]
    assert len(servers(d)[("tcp", "10.96.0.10", 80)].real_servers) == 2
    annotated = desired(svc("l", ports=port, type="NodePort", annotations={"kube-router.io/service.local": "true"}),
                        eps("l", [ep("10.1.0.6", node="node-b")]))
    assert servers(annotated)[("tcp", "192.168.1.10", 30080)].real_servers == ()  # exists, refuses locally


def test_internal_traffic_policy_local_filters_cluster_ip():
    d = desired(svc("l", internalTrafficPolicy="Local"), eps("l", [ep("10.1.0.5"), ep("10.1.0.6", node="node-b")]))
    assert [rs.ip for rs in servers(d)[("tcp", "10.96.0.10", 80)].real_servers] == ["10.1.0.5"]


def test_broken_service_is_reported_others_programmed_and_its_addresses_protected():
    bad = svc("bad", cluster_ips=("10.96.0.99",), ports=[{"name": "http", "port": "eighty", "protocol": "TCP"}])
    worse = svc("worse", cluster_ips=("10.96.0.300",))
    d = desired(bad, worse, svc("good"))
    assert list(servers(d)) == [("tcp", "10.96.0.10", 80)]
    assert {str(p).split(":")[0] for p in d.problems} == {"Service default/bad", "Service default/worse"}
    assert "10.96.0.99" in d.protected_addresses


def test_duplicate_virtual_server_first_service_wins_and_is_reported():
    d = desired(svc("a", externalIPs=["10.96.0.10"]), svc("b"),
                options=ProxyOptions(strict_external_ip_validation=False))
    assert d.origins[("tcp", "10.96.0.10", 80)].name == "a"
    assert "already served by default/a" in str(d.problems[0])


def test_excluded_cidrs_are_never_programmed():
    d = desired(svc("a"), options=ProxyOptions(excluded_cidrs=(ipaddress.ip_network("10.96.0.0/24"),)))
    assert d.virtual_servers == () and d.addresses == ()


def test_node_ips_from_node_object():
    nodes = (node("node-a", "192.168.1.10", "fd00:1::10"), node("node-b", "192.168.1.11"))
    assert node_ips_from_objects(nodes, "node-a") == {4: "192.168.1.10", 6: "fd00:1::10"}
    assert node_ips_from_objects(nodes, "node-z") == {}
