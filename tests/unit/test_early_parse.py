"""A JSON dump's Services and EndpointSlices are parsed as each item is decoded (kipvs.sources.file), so
their raw objects are never all kept; everything built from them must be what the raw objects give
(parsed late, as the API and YAML sources do): desired state, netfilter rules, health checks, the
incremental state, and every problem, same text, same order. Hostile shapes included."""
from __future__ import annotations

import copy
import ipaddress
import json

import pytest
from hypothesis import HealthCheck as Slow
from hypothesis import given, settings
from hypothesis import strategies as st

from kipvs.cluster import ParsedEndpointSlice, ParsedService
from kipvs.config import NetfilterOptions, ProxyOptions
from kipvs.desired import build_desired
from kipvs.healthcheck import wanted_checks, wants_health_check
from kipvs.incremental import IncrementalDesired
from kipvs.netfilter.rules import build_netfilter
from kipvs.sources import snapshot_from_objects
from kipvs.sources.file import parse_cluster_text
from tests.unit.test_hostile_input import NODE_IP, OBJECT_CASES, VICTIM, VICTIM_PATHS, cluster, junk, set_path

OPTIONS = ProxyOptions(external_ip_ranges=(), strict_external_ip_validation=True, netfilter=NetfilterOptions())


def lb_cluster() -> dict:
    """cluster(), its victim a Local LoadBalancer with a health check port and source ranges (one bad)."""
    data = cluster()
    data["items"][VICTIM]["spec"].update(externalTrafficPolicy="Local", healthCheckNodePort=32000,
                                         loadBalancerSourceRanges=["10.0.0.0/8", "nonsense", " 192.168.0.0/16"])
    return data


def outcomes(snapshot) -> tuple:
    desired = build_desired(snapshot, "node3", {4: NODE_IP}, OPTIONS, backends=True)
    netfilter = build_netfilter(desired, snapshot, "node3", OPTIONS.netfilter)
    state = IncrementalDesired("node3", {4: NODE_IP}, [], OPTIONS)
    state.rebuild(snapshot.services, snapshot.endpoint_slices)
    incremental = state.desired()
    return (desired.virtual_servers, desired.backends, desired.origins, desired.held, desired.addresses,
            desired.protected_addresses, desired.hold_removals, desired.skipped, desired.notes,
            [str(p) for p in desired.problems],
            netfilter.rulesets, netfilter.services, [str(p) for p in netfilter.problems],
            wanted_checks(snapshot, "node3"), [wants_health_check(s) for s in snapshot.services],
            incremental.virtual_servers, sorted(str(p) for p in incremental.problems))


def assert_early_is_late(data: dict) -> None:
    early = parse_cluster_text(json.dumps(data), "dump.json")
    late = snapshot_from_objects(copy.deepcopy(data["items"]), "dump.json")
    assert outcomes(early) == outcomes(late)


def test_a_json_dump_keeps_no_raw_service_or_slice():
    snapshot = parse_cluster_text(json.dumps(lb_cluster()), "dump.json")
    assert snapshot.services and all(isinstance(s, ParsedService) for s in snapshot.services)
    assert snapshot.endpoint_slices and all(isinstance(s, ParsedEndpointSlice) for s in snapshot.endpoint_slices)
    assert_early_is_late(lb_cluster())
    desired = build_desired(snapshot, "node3", {4: NODE_IP}, OPTIONS)
    assert ("tcp", "10.96.0.20", 80) in {vs.key for vs in desired.virtual_servers}
    netfilter = build_netfilter(desired, snapshot, "node3", OPTIONS.netfilter)
    assert [str(p) for p in netfilter.problems] == [
        "Service hostile/victim: spec.loadBalancerSourceRanges[1]: 'nonsense' is not a CIDR; skipped"]
    assert netfilter.services[("hostile", "victim")].source_ranges == ("10.0.0.0/8", "192.168.0.0/16")
    assert list(wanted_checks(snapshot, "node3")) == [("hostile", "victim")]


@pytest.mark.parametrize("what,index,path,value,named", OBJECT_CASES, ids=[c[0] for c in OBJECT_CASES])
def test_each_hostile_field_gives_the_same_result_parsed_early_or_late(what, index, path, value, named):
    for data in (cluster(), lb_cluster()):
        set_path(data["items"][index], path, value)
        assert_early_is_late(data)


def test_objects_nested_inside_an_item_are_not_parsed_as_items():
    """Only a List's own items are parsed early: a Service-shaped map inside an object (an ownerReference,
    a hostile port) stays a map, with the same problems as before."""
    data = cluster()
    data["items"][VICTIM]["spec"]["ports"].append({"kind": "Service", "metadata": {"name": "inner"}})
    data["items"][VICTIM + 1]["metadata"]["ownerReferences"] = [{"kind": "Service", "name": "victim"}]
    data["items"][VICTIM + 1]["endpoints"].append({"kind": "EndpointSlice", "metadata": {"name": "e"}})
    assert_early_is_late(data)
    assert len(parse_cluster_text(json.dumps(data), "x").services) == 2


@pytest.mark.parametrize("text", [
    '{"kind": "Service", "metadata": {"name": "lone"}, "spec": {"clusterIP": "10.96.0.9"}, "items": [1]}',
    ' \n{"items": [5], "items": [{"kind": "Service", "metadata": {"name": "a"}}]}  ',
    '{"apiVersion": "v1", "items": [{"kind": "Service", "metadata": {"name": "a"}}, 5, null, []], "kind": "List"}',
    '{"items":[{"kind":"Service","metadata":{"name":"a"}}],"kind":"ServiceList"}',
])
def test_json_that_is_not_a_plain_list_reads_as_json_loads_reads_it(text):
    snapshot = parse_cluster_text(text, "x")
    document = json.loads(text)
    items = document["items"] if "kind" not in document or document["kind"].endswith("List") else [document]
    late = snapshot_from_objects([i for i in items if isinstance(i, dict)], "x")
    assert outcomes(snapshot) == outcomes(late)


@pytest.mark.parametrize("text", [
    '{"kind": "List", "items": [{"kind": "Service"} {"kind": "Node"}]}',
    '{"kind": "List", "items": []} x',
    '{"kind": "List" "items": []}',
    '{"kind": "List", "items": [{"kind": "Service", "metadata": {"name": "a\x01"}}]}',
    '{"kind": "List", "items": [{"kind": "Service"},]}',
])
def test_broken_json_is_reported_as_json_reports_it(text):
    from kipvs.errors import ClusterUnavailable
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(text)
    error = expected.value
    with pytest.raises(ClusterUnavailable) as got:
        parse_cluster_text(text, "x")
    assert str(got.value) == f"x: not valid JSON at line {error.lineno}, column {error.colno}: {error.msg}"


@settings(max_examples=200, deadline=None, suppress_health_check=[Slow.too_slow])
@given(where=st.sampled_from(VICTIM_PATHS), value=junk)
def test_any_value_at_any_path_gives_the_same_result_parsed_early_or_late(where, value):
    index, path = where
    data = lb_cluster()
    set_path(data["items"][index], path, value)
    assert_early_is_late(data)


def _one_by_one(raws: list, family: int) -> tuple[list, list]:
    """What every endpoint gives through the general reader (`_endpoint`), the fast path's reference."""
    from kipvs.cluster import Reader, _endpoint
    problems: list = []
    reader = Reader("EndpointSlice default/s", problems)
    found = [e for e in (_endpoint(reader, raw, f"endpoints[{i}]", family) for i, raw in enumerate(raws)) if e]
    reader.finish()
    return found, [str(p) for p in problems]


def _fast(raws: list, family: int) -> tuple[list, list]:
    from kipvs.cluster import Reader, _endpoints
    problems: list = []
    reader = Reader("EndpointSlice default/s", problems)
    found = _endpoints(reader, raws, family)
    reader.finish()
    return found, [str(p) for p in problems]


# Valid endpoints in every shape real dumps hold: each optional field present or absent (an endpoint
# written by hand may carry nothing but its address), what the EndpointSlice controller writes (three
# conditions, targetRef, zone, hints for zones or nodes), StatefulSet hostnames, IPv6 in any spelling
# inet_pton takes (written back canonically), the fields kipvs does not read.
_V4 = st.tuples(st.integers(1, 223).filter(lambda b: b not in (127, 169)),
                *[st.integers(0, 255)] * 3).map(lambda parts: ".".join(map(str, parts)))
_V6_RANGES = [(0x2000 << 112, (0x4000 << 112) - 1), (0xFC00 << 112, (0xFE00 << 112) - 1)]  # global, ULA
_V6 = st.tuples(st.one_of([st.integers(low, high) for low, high in _V6_RANGES]),
                st.sampled_from(["compressed", "exploded", "upper"])).map(
    lambda drawn: _spelled(ipaddress.IPv6Address(drawn[0]), drawn[1]))
_ADDRESS = {4: _V4, 6: _V6}
_NAMES = st.sampled_from(["zone-a", "zone-b", "node-a", "ip-10-0-1-5.ec2.internal"])
_HINT_LIST = st.one_of(st.none(), st.lists(st.fixed_dictionaries({"name": _NAMES}), max_size=2))
_VALID_OPTIONAL = {
    "conditions": st.one_of(st.none(), st.fixed_dictionaries({}, optional={
        name: st.one_of(st.none(), st.booleans()) for name in ("ready", "serving", "terminating")})),
    "nodeName": st.one_of(st.none(), _NAMES, st.just("")),
    "targetRef": st.one_of(st.none(), st.fixed_dictionaries({}, optional={
        "kind": st.just("Pod"), "namespace": st.just("default"), "uid": st.uuids().map(str),
        "name": st.one_of(st.none(), st.text(max_size=8))})),
    "hints": st.one_of(st.none(), st.fixed_dictionaries({}, optional={"forZones": _HINT_LIST,
                                                                      "forNodes": _HINT_LIST})),
    "zone": _NAMES, "hostname": st.just("web-0"), "deprecatedTopology": st.just({"kubernetes.io/hostname": "n"})}


def _spelled(address: ipaddress.IPv6Address, spelling: str) -> str:
    return {"compressed": address.compressed, "exploded": address.exploded,
            "upper": address.compressed.upper()}[spelling]


def _valid_endpoint(family: int):
    return st.fixed_dictionaries({"addresses": st.lists(_ADDRESS[family], min_size=1, max_size=2)},
                                 optional=_VALID_OPTIONAL)


# Invalid and hostile values in every field, special addresses (issue 21's classes) included.
_SPECIAL = ["127.0.0.1", "0.0.0.0", "169.254.169.254", "169.254.1.1", "224.0.0.1", "0.1.2.3", "::ffff:127.0.0.1",
            "::127.0.0.1", "::1", "::", "fe80::1", "ff02::1", "fd00:ec2::254", "fe80::1%eth0", "10.1.0.5\x00"]
_conditions = st.dictionaries(st.sampled_from(["ready", "serving", "terminating"]),
                              st.one_of(st.none(), st.booleans(), st.sampled_from([0, 1, "true"])))
_hint_entries = st.one_of(st.none(), st.just("zone-a"), st.just([]), st.lists(st.one_of(
    st.fixed_dictionaries({"name": st.one_of(st.sampled_from(["zone-a", ""]), st.none(), st.just(5))}),
    st.just({}), st.just("zone-a"), st.none()), max_size=3))
_endpoint_maps = st.fixed_dictionaries({}, optional={
    "addresses": st.one_of(st.lists(st.sampled_from(["10.1.0.5", "10.1.0.05", "fd00::5", "FD00::5", "fd00:0::5", "x",
                                                     5, None, *_SPECIAL]), max_size=2),
                           st.just("10.1.0.5"), st.none()),
    "conditions": st.one_of(_conditions, st.none(), st.just([])),
    "nodeName": st.one_of(st.sampled_from(["node-a", ""]), st.none(), st.just(5)),
    "targetRef": st.one_of(st.fixed_dictionaries({}, optional={"name": st.one_of(st.text(max_size=4), st.none(),
                                                                                st.just(5))}),
                           st.none(), st.just("pod")),
    "hints": st.one_of(st.none(), st.just([]), st.just("z"), st.fixed_dictionaries(
        {}, optional={"forZones": _hint_entries, "forNodes": _hint_entries}))})


@settings(max_examples=500, deadline=None)
@given(raws=st.lists(st.one_of(_endpoint_maps, _valid_endpoint(4), _valid_endpoint(6), st.none(), st.just("x")),
                     max_size=8), family=st.sampled_from([4, 6]))
def test_the_endpoint_fast_path_gives_what_the_general_reader_gives(raws, family):
    assert _fast(raws, family) == _one_by_one(raws, family)


@settings(max_examples=300, deadline=None)
@given(raws=st.sampled_from([4, 6]).flatmap(lambda family: st.tuples(st.lists(_valid_endpoint(family), max_size=6),
                                                                      st.just(family))))
def test_every_valid_endpoint_shape_takes_the_fast_path(raws):
    """Real dumps' endpoints (any mix of the optional fields) never reach the general reader, which costs
    twice as much: file mode at 50,000 Services costs the same whatever wrote the dump."""
    import kipvs.cluster

    raws, family = raws
    expected = _one_by_one(raws, family)
    general = kipvs.cluster._endpoint
    kipvs.cluster._endpoint = lambda _r, raw, *_: pytest.fail(f"general reader for {raw!r}")
    try:
        found = _fast(raws, family)
    finally:
        kipvs.cluster._endpoint = general
    assert found == expected and found[1] == [] and len(found[0]) == len(raws)


def test_kipvs_sync_lets_go_of_the_endpoint_slices_once_planned(tmp_path, monkeypatch):
    """The EndpointSlices (most of a large dump) are needed only for the desired state: applying IPVS and
    netfilter runs without them in memory."""
    import gc

    import kipvs.reconcile
    from kipvs.cluster import EndpointSliceSpec
    from tests.unit.test_hostile_input import sync

    seen = []
    apply_and_verify = kipvs.reconcile.apply_and_verify

    def counting(runner, desired, *args, **kwargs):
        seen.append((sum(isinstance(o, EndpointSliceSpec) for o in gc.get_objects()),
                     sum(len(vs.real_servers) for vs in desired.virtual_servers)))
        return apply_and_verify(runner, desired, *args, **kwargs)

    monkeypatch.setattr(kipvs.reconcile, "apply_and_verify", counting)
    gc.collect()  # slices an earlier test left in collectable cycles are not this sync's
    (tmp_path / "c.json").write_text(json.dumps(cluster()))
    result = sync(tmp_path / "c.json", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert len(seen) == 1 and seen[0][0] == 0 and seen[0][1] > 0
