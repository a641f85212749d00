"""Topology hints (kube-proxy pkg/proxy/topology.go rules) and the hints' parsing."""
import pytest

from kipvs.cluster import Endpoint, node_zone_of, parse_endpoint_slice
from kipvs.config import ProxyOptions
from kipvs.desired import build_desired
from kipvs.topology import SAME_NODE, SAME_ZONE, closest, mode
from tests.unit.k8s import ep, eps, node, snapshot, svc

VIP = ("tcp", "10.96.0.10", 80)


def hinted(ip, zones=None, nodes=None, **kw):
    raw = ep(ip, **kw)
    hints = {}
    if zones is not None:
        hints["forZones"] = [{"name": z} for z in zones]
    if nodes is not None:
        hints["forNodes"] = [{"name": n} for n in nodes]
    if hints:
        raw["hints"] = hints
    return raw


def zoned_node(name, zone, *ips):
    obj = node(name, *ips)
    if zone is not None:
        obj["metadata"]["labels"] = {"topology.kubernetes.io/zone": zone}
    return obj


def real_ips(*objects, node_name="node-a", zone="zone-a"):
    d = build_desired(snapshot(zoned_node(node_name, zone, "192.168.1.10"), *objects), node_name,
                      {4: "192.168.1.10"}, ProxyOptions())
    vs = {v.key: v for v in d.virtual_servers}[VIP]
    return [rs.ip for rs in vs.real_servers], d


def endpoint(ip, ready=True, zones=(), nodes=()):
    return Endpoint(ip, "", "", ready, ready, False, tuple(zones), tuple(nodes))


def test_complete_zone_hints_keep_this_zones_endpoints():
    ips, d = real_ips(svc("web", trafficDistribution="PreferClose"),
                      eps("web", [hinted("10.1.0.1", ["zone-a"]), hinted("10.1.0.2", ["zone-b"]),
                                  hinted("10.1.0.3", ["zone-a"], node="node-c")]))
    assert ips == ["10.1.0.1", "10.1.0.3"]
    assert d.notes[("default", "web")] == ("topology hints (PreferSameZone): 2 of 3 endpoints, those for zone zone-a",)


def test_one_ready_endpoint_without_a_hint_means_every_endpoint():
    ips, d = real_ips(svc("web"), eps("web", [hinted("10.1.0.1", ["zone-a"]), hinted("10.1.0.2")]))
    assert ips == ["10.1.0.1", "10.1.0.2"] and ("default", "web") not in d.notes


def test_not_ready_endpoints_do_not_count_for_completeness():
    ips, _ = real_ips(svc("web"), eps("web", [hinted("10.1.0.1", ["zone-a"]), hinted("10.1.0.2", ["zone-b"]),
                                              hinted("10.1.0.9", ready=False)]))
    assert ips == ["10.1.0.1"]


def test_no_endpoint_for_this_zone_or_no_zone_label_means_every_endpoint():
    objects = (svc("web"), eps("web", [hinted("10.1.0.1", ["zone-b"]), hinted("10.1.0.2", ["zone-c"])]))
    assert real_ips(*objects)[0] == ["10.1.0.1", "10.1.0.2"]
    both = (svc("web"), eps("web", [hinted("10.1.0.1", ["zone-a"]), hinted("10.1.0.2", ["zone-b"])]))
    assert real_ips(*both, zone=None)[0] == ["10.1.0.1", "10.1.0.2"]


def test_node_hints_win_over_zone_hints_when_complete():
    ips, d = real_ips(svc("web"), eps("web", [hinted("10.1.0.1", ["zone-a"], ["node-b"]),
                                              hinted("10.1.0.2", ["zone-a"], ["node-a"])]))
    assert ips == ["10.1.0.2"]
    assert "those for node node-a" in d.notes[("default", "web")][0]


def test_local_policy_lists_ignore_hints():
    d = build_desired(snapshot(zoned_node("node-a", "zone-a", "192.168.1.10"),
                               svc("web", internalTrafficPolicy="Local"),
                               eps("web", [hinted("10.1.0.1", ["zone-b"], node="node-a"),
                                           hinted("10.1.0.2", ["zone-a"], node="node-b")])),
                      "node-a", {4: "192.168.1.10"}, ProxyOptions())
    assert [rs.ip for rs in d.virtual_servers[0].real_servers] == ["10.1.0.1"]


def test_mode_and_closest_directly():
    a, b = endpoint("10.1.0.1", zones=["z1"]), endpoint("10.1.0.2", zones=["z2"])
    assert mode([a, b], "n", "z1") == SAME_ZONE and mode([a, b], "n", "z3") == "" and mode([], "n", "z1") == ""
    assert mode([endpoint("1.1.1.1", ready=False, zones=["z1"])], "n", "z1") == ""
    assert mode([endpoint("1.1.1.1", nodes=["n"])], "n", "z1") == SAME_NODE
    pairs = [(a, 80), (b, 80)]
    assert closest(pairs, "n", "z2") == ([(b, 80)], SAME_ZONE)
    same, none = closest(pairs, "n", "")
    assert same is pairs and none == ""


@pytest.mark.parametrize("hints, problem", [
    ("zone-a", "endpoints[0].hints: expected a map, got 'zone-a'"),
    ({"forZones": "zone-a"}, "endpoints[0].hints.forZones: expected a list, got 'zone-a'"),
    ({"forZones": [{"name": "z\x1b[31m"}] * 9}, None),
    ({"forZones": [None]}, "endpoints[0].hints.forZones[0]: expected a map, got 'NoneType None'; hint ignored"),
    ({"forZones": [{"name": 7}]}, "endpoints[0].hints.forZones[0].name: expected a name, got 7; hint ignored"),
    ({"forNodes": [{"name": ""}]}, "endpoints[0].hints.forNodes[0].name: expected a name, got ''; hint ignored"),
])
def test_hostile_hints_are_one_problem_each_and_the_endpoint_stays(hints, problem):
    raw = ep("10.1.0.1")
    raw["hints"] = hints
    problems = []
    parsed = parse_endpoint_slice(eps("web", [raw]), problems)
    assert [e.ip for e in parsed.endpoints] == ["10.1.0.1"]
    if problem is None:  # a strange but well-typed name is only a name that matches no zone
        assert problems == [] and parsed.endpoints[0].zones == ("z\x1b[31m",) * 9
        return
    assert parsed.endpoints[0].zones == ()
    assert len(problems) == 1 and str(problems[0]) == f"EndpointSlice default/web-x: {problem}"


def test_a_bad_hint_makes_the_slice_fall_back_to_every_endpoint():
    bad = ep("10.1.0.2")
    bad["hints"] = {"forZones": [{"name": None}]}
    ips, d = real_ips(svc("web"), eps("web", [hinted("10.1.0.1", ["zone-a"]), bad]))
    assert ips == ["10.1.0.1", "10.1.0.2"]
    assert any("hints.forZones[0]" in str(p) for p in d.problems)


def test_zone_label_of_the_node():
    problems = []
    assert node_zone_of(zoned_node("n", "zone-a"), problems) == "zone-a"
    assert node_zone_of(zoned_node("n", None), problems) == "" and node_zone_of(None, problems) == ""
    assert problems == []
    hostile = node("n")
    hostile["metadata"]["labels"] = {"topology.kubernetes.io/zone": ["zone-a"]}
    assert node_zone_of(hostile, problems) == ""
    assert [str(p) for p in problems] == \
        ["Node default/n: metadata.labels[topology.kubernetes.io/zone]: expected a string, got \"list ['zone-a']\""]


def test_traffic_distribution_without_usable_hints_is_explained():
    objects = (svc("web", trafficDistribution="PreferClose"),
               eps("web", [hinted("10.1.0.1", ["zone-a"]), hinted("10.1.0.2")]))
    ips, d = real_ips(*objects)
    assert ips == ["10.1.0.1", "10.1.0.2"]
    assert d.notes[("default", "web")] == ("spec.trafficDistribution PreferClose: hints incomplete or none for zone "
                                           "zone-a; every endpoint used",)
    _, d = real_ips(*objects, zone=None)
    assert "this node (no topology.kubernetes.io/zone label)" in d.notes[("default", "web")][0]


def test_hints_never_shorten_a_drain_terminating_and_out_of_zone_endpoints_stay_listed():
    """kubernetes #114215: hints flap. An endpoint the hints leave out (another zone's, or terminating) is
    still in the slice: it is held (drains at weight 0 until idle), never treated as gone (deleted after
    --ipvs-graceful-period with its connections open)."""
    _, d = real_ips(svc("web", trafficDistribution="PreferClose"),
                    eps("web", [hinted("10.1.0.1", ["zone-a"]), hinted("10.1.0.2", ["zone-b"]),
                                hinted("10.1.0.3", ["zone-a"], ready=False, serving=True, terminating=True)]))
    vs = {v.key: v for v in d.virtual_servers}[VIP]
    assert [rs.ip for rs in vs.real_servers] == ["10.1.0.1"]
    assert d.held[VIP] == frozenset({("10.1.0.2", 8080), ("10.1.0.3", 8080)})
    # Without hints the same terminating endpoint is held the same way: the hints change nothing for it.
    _, plain = real_ips(svc("web"), eps("web", [ep("10.1.0.1"), ep("10.1.0.3", ready=False, serving=True,
                                                                  terminating=True)]))
    assert ("10.1.0.3", 8080) in plain.held[VIP]
