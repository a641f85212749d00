"""A JSON dump's Services and EndpointSlices are parsed as each item is decoded (kipvs.sources.file), so
their raw objects are never all kept; everything built from them must be what the raw objects give
(parsed late, as the API and YAML sources do): desired state, netfilter rules, health checks, the
incremental state, and every problem, same text, same order. Hostile shapes included."""
from __future__ import annotations

import copy
import sys
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
    """...and read by the fast decoder (kipvs.sources.fast_json) or by the json path."""
    index, path = where
    data = lb_cluster()
    set_path(data["items"][index], path, value)
    assert_early_is_late(data)
    assert_fast_is_json(json.dumps(data).encode())


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
    twice as much: file mode at 50,000 Services costs the same whatever wrote the dump. Maps, and the structs
    kipvs.sources.fast_json decodes them into."""
    import kipvs.cluster

    raws, family = raws
    expected = _one_by_one(raws, family)
    decoded = _decoded(raws)
    assert decoded is not None
    general = kipvs.cluster._endpoint
    kipvs.cluster._endpoint = lambda _r, raw, *_: pytest.fail(f"general reader for {raw!r}")
    try:
        found = _fast(raws, family)
        found_structs = _fast_structs(decoded, family)
    finally:
        kipvs.cluster._endpoint = general
    assert found == expected and found[1] == [] and len(found[0]) == len(raws)
    assert found_structs == expected


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


# --- the fast decoder (kipvs.sources.fast_json: msgspec, only the fields kipvs reads) against the json path ---

def _read(path: str) -> tuple:
    from kipvs.errors import ClusterUnavailable
    from kipvs.sources.file import read_cluster_file
    try:
        return "read", outcomes(read_cluster_file(path))
    except ClusterUnavailable as exc:
        return "refused", str(exc)


def read_both(data: bytes) -> tuple[tuple, tuple, bool]:
    """(what read_cluster_file gives, what it gives without msgspec, whether the fast decoder took the dump)."""
    import tempfile

    import kipvs.sources.fast_json as fast_json
    pytest.importorskip("msgspec")
    with tempfile.TemporaryDirectory() as directory:
        path = f"{directory}/dump.json"
        with open(path, "wb") as out:
            out.write(data)
        with pytest.MonkeyPatch.context() as patch:
            taken = []
            patch.setattr(fast_json, "_load_list", lambda data, load=fast_json._load_list: taken.append(
                load(data)) or taken[-1])
            fast = _read(path)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(fast_json, "msgspec", None)
            slow = _read(path)
    return fast, slow, bool(taken) and taken[-1] is not None


def assert_fast_is_json(data: bytes, taken: bool | None = None) -> None:
    fast, slow, was_taken = read_both(data)
    assert fast == slow
    if taken is not None:
        assert was_taken == taken


def test_the_fast_decoder_reads_every_generated_shape_as_json_does():
    from benchmarks import bare_cluster, controller_cluster, synthetic
    from functools import partial
    for generate in (synthetic.objects, bare_cluster.objects, controller_cluster.objects,
                     partial(controller_cluster.objects, hints=True), partial(controller_cluster.objects,
                                                                             dual_stack=True)):
        items = generate(40, 4)
        items[3]["metadata"]["annotations"] = {"note": "caf\u00e9 \u2603"}  # non-ASCII text is fine too
        assert_fast_is_json(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}).encode(), taken=True)
    for data in (cluster(), lb_cluster(), {"items": cluster()["items"]}, {"kind": "ServiceList", "items": None}):
        assert_fast_is_json(json.dumps(data).encode(), taken=True)


_EDIT_BYTES = st.sampled_from([*b'{}[]",:0123456789.eE+-\\ntuflsa \t\r\n', 0x00, 0x01, 0x7f, 0x80, 0xc3, 0xe9, 0xff])


@settings(max_examples=300, deadline=None, suppress_health_check=[Slow.too_slow])
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(["insert", "replace", "delete"]), _EDIT_BYTES),
                      min_size=1, max_size=3))
def test_any_byte_edit_of_a_dump_reads_the_same_with_the_fast_decoder_or_without(edits):
    """A dump's bytes edited at random (a token broken, a digit more, a quote less, a byte that is not UTF-8):
    whatever json makes of it (an error, other values, other keys), the fast decoder gives the same or leaves
    it to json."""
    data = bytearray(json.dumps(lb_cluster()).encode())
    for at, how, byte in edits:
        at %= len(data)
        if how == "insert":
            data[at:at] = bytes([byte])
        elif how == "replace":
            data[at] = byte
        else:
            del data[at]
    assert_fast_is_json(bytes(data))


def _dump_with(victim_field: str, text: str) -> bytes:
    """cluster() as JSON with `"<victim_field>": <text>` spliced (as raw JSON text) into the victim's slice."""
    data = json.dumps(cluster())
    marker = '"addressType": "IPv4", "metadata": {"name": "victim-abc"'
    assert marker in data
    return data.replace(marker, f'"{victim_field}": {text}, {marker}', 1).encode()


def _endpoint_with(text: str) -> bytes:
    """cluster() with the victim's endpoint's conditions replaced by raw JSON text."""
    data = json.dumps(cluster())
    marker = '"10.1.0.6"], "conditions": {"ready": true, "serving": true, "terminating": false}'
    assert marker in data
    return data.replace(marker, f'"10.1.0.6"], {text}', 1).encode()


_DIGITS = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else 4300
HOSTILE_BYTES = {
    # duplicate keys: the last wins, in a field read or not, an item's kind, the List's items
    "duplicate endpoint keys": _endpoint_with('"conditions": {"ready": false}, "conditions": {"ready": true, '
                                              '"ready": false}, "addresses": ["10.1.0.7"], "nodeName": "a", '
                                              '"nodeName": "node3"'),
    "duplicate kind": _dump_with("kind", '"Node"'),
    "duplicate items": b'{"kind": "List", "items": [], "items": ' + json.dumps(cluster()["items"]).encode() + b'}',
    "items then not a list": b'{"kind": "List", "items": ' + json.dumps(cluster()["items"]).encode() + b', "items": 5}',
    # numbers: too long for int() (json refuses the dump), just short enough, beyond 64 bits, floats
    "huge number read": _endpoint_with('"conditions": {"ready": ' + "9" * (_DIGITS + 1) + '}'),
    "huge number skipped": _dump_with("uid", "9" * (_DIGITS + 1)),
    "huge negative number skipped": _dump_with("uid", "-" + "9" * (_DIGITS + 5)),
    "long number skipped": _dump_with("uid", "9" * _DIGITS),
    "long number read": _endpoint_with('"conditions": {"ready": ' + "9" * _DIGITS + '}'),
    "long float skipped": _dump_with("uid", "9" * (_DIGITS + 10) + ".5"),
    "long float read": _endpoint_with('"conditions": {"ready": ' + "9" * (_DIGITS + 10) + '.5e-3}'),
    "2**64 read": _endpoint_with('"conditions": {"ready": 18446744073709551616}'),
    "1e400 read": _endpoint_with('"conditions": {"serving": 1e400}'),
    "1e400 skipped": _dump_with("uid", "1e400"),
    "-0 and exponents": _endpoint_with('"conditions": {"ready": -0, "serving": -0.0, "terminating": 1E2}'),
    "NaN read": _endpoint_with('"conditions": {"ready": NaN}'),
    "NaN skipped": _dump_with("uid", "NaN"),
    "-Infinity skipped": _dump_with("uid", "-Infinity"),
    "leading zero skipped": _dump_with("uid", "01"),
    # text: not UTF-8 where it is read or skipped, surrogates, escapes, control characters, NUL, a BOM
    "latin-1 read": _endpoint_with('"nodeName": "n\xe9"').replace(b"n\xc3\xa9", b"n\xe9"),
    "latin-1 skipped": _dump_with("uid", '"caf\xe9"').replace(b"caf\xc3\xa9", b"caf\xe9"),
    "overlong UTF-8 skipped": _dump_with("uid", '"X"').replace(b'"X"', b'"\xc0\xaf"'),
    "UTF-8 surrogate skipped": _dump_with("uid", '"X"').replace(b'"X"', b'"\xed\xa0\x80"'),
    "truncated UTF-8 at the end": json.dumps(cluster()).encode() + b"\xe2\x82",
    "lone surrogate escape read": _endpoint_with('"nodeName": "\\ud800"'),
    "lone surrogate escape skipped": _dump_with("uid", '"\\udc00x"'),
    "surrogate pair read": _endpoint_with('"nodeName": "\\ud83d\\ude00"'),
    "bad escape skipped": _dump_with("uid", '"\\x41"'),
    "control character skipped": _dump_with("uid", '"a\x01b"'),
    "NUL escaped read": _endpoint_with('"nodeName": "node3\\u0000"'),
    "NUL byte skipped": _dump_with("uid", '"a\x00b"'),
    "NUL byte between tokens": json.dumps(cluster()).encode().replace(b'"items": [', b'"items":\x00[', 1),
    "BOM": b"\xef\xbb\xbf" + json.dumps(cluster()).encode(),
    "form feed before": b"\x0c" + json.dumps(cluster()).encode(),
    "whitespace around": b" \r\n\t" + json.dumps(cluster()).encode() + b"\n\n ",
    "trailing garbage": json.dumps(cluster()).encode() + b" x",
    "trailing comma skipped": _dump_with("uid", "[1,]"),
    "truncated": json.dumps(cluster()).encode()[:-30],
    # shapes the hot path types (an endpoint, its conditions, targetRef or hints not maps, endpoints not a list):
    # that item alone is decoded whole, the rest of the dump still by the structs (ONE_ITEM_WHOLE)
    "endpoints a map": _dump_with("endpoints", '{"addresses": ["10.1.0.6"]}'),
    "endpoint a string": _endpoint_with('"conditions": {}}, "x", {"addresses": ["10.1.0.8"]'),
    "conditions a list": _endpoint_with('"conditions": [true]'),
    "targetRef a string": _endpoint_with('"targetRef": "pod"'),
    "hints a list": _endpoint_with('"hints": []'),
    "hint entry a string": _endpoint_with('"hints": {"forZones": ["zone-a"]}'),
    "hint entries not a list": _endpoint_with('"hints": {"forNodes": {"name": "n"}}'),
    "item a number": b'{"kind": "List", "items": [5, ' + json.dumps(cluster()["items"]).encode()[1:] + b'}',
    # not a List: json's own reading
    "a single Service": json.dumps(cluster()["items"][0]).encode(),
    "a top-level list": json.dumps(cluster()["items"]).encode(),
    "kind not a string": json.dumps({"kind": 5, "items": cluster()["items"]}).encode(),
    "a List without items": b'{"kind": "List"}',
    "empty": b"{}",
}
# Values of the wrong type where kipvs checks them itself: the fast decoder takes the dump, and the problems
# are the json path's.
TAKEN = {"wrong types": _endpoint_with('"conditions": {"ready": "yes", "serving": 1, "terminating": null}, '
                                       '"nodeName": 5, "targetRef": {"name": 7}, '
                                       '"hints": {"forZones": [{"name": ""}, {}], "forNodes": null}'),
         "addresses not a list": _endpoint_with('"addresses": "10.1.0.9"'),
         "no endpoint fields": _endpoint_with('"zone": "z"').replace(b'"addresses": ["10.1.0.6"], ', b""),
         "a special address": _endpoint_with('"conditions": {}').replace(b'"10.1.0.6"', b'"169.254.169.254"'),
         "nulls": _endpoint_with('"conditions": null, "targetRef": null, "hints": {"forZones": null}'),
         "kind not a string in an item": _dump_with("kind", "[1]"),
         "endpoints null": _dump_with("endpoints", "null"),
         "items null": b'{"kind": "List", "items": null}',
         "deep but fine": _dump_with("uid", "[" * 100 + "]" * 100)}


ONE_ITEM_WHOLE = {"endpoints a map", "endpoint a string", "conditions a list", "targetRef a string", "hints a list",
                  "hint entry a string", "hint entries not a list", "item a number"}


@pytest.mark.parametrize("name", list(HOSTILE_BYTES) + list(TAKEN))
def test_hostile_bytes_read_the_same_with_the_fast_decoder_or_without(name):
    data = HOSTILE_BYTES.get(name) or TAKEN[name]
    assert_fast_is_json(data, taken=True if name in TAKEN or name in ONE_ITEM_WHOLE else None)


@pytest.mark.parametrize("where", ["uid", "spec"])
def test_nesting_near_the_recursion_limit_reads_as_json_reads_it(where):
    """json refuses a dump nested deeper than Python's recursion limit; the fast decoder must never take one
    that json refuses, at any depth (it gives up earlier and json decides)."""
    limit = sys.getrecursionlimit()
    for depth in [*range(limit - 60, limit + 10), 2 * limit, 50 * limit]:
        nested = "[" * depth + "]" * depth
        data = _dump_with(where, nested) if where == "uid" else \
            json.dumps(cluster()).replace('"type": "ClusterIP"', f'"type": "ClusterIP", "x": {nested}', 1).encode()
        assert_fast_is_json(data)


def _decoded(raws: list):
    """raws as fast_json decodes a slice's endpoints, or None where it leaves the dump to json."""
    msgspec = pytest.importorskip("msgspec")
    from kipvs.sources.fast_json import Endpoint
    try:
        return msgspec.json.decode(json.dumps(raws).encode(), type=list[Endpoint])
    except (msgspec.DecodeError, ValueError):
        return None


def _fast_structs(raws: list, family: int) -> tuple[list, list]:
    from kipvs.cluster import Reader, _endpoints
    from kipvs.sources.fast_json import Endpoint
    problems: list = []
    reader = Reader("EndpointSlice default/s", problems)
    found = _endpoints(reader, raws, family, Endpoint)
    reader.finish()
    return found, [str(p) for p in problems]


@settings(max_examples=500, deadline=None)
@given(raws=st.lists(st.one_of(_endpoint_maps, _valid_endpoint(4), _valid_endpoint(6)), max_size=8),
       family=st.sampled_from([4, 6]))
def test_endpoints_decoded_as_structs_give_what_the_general_reader_gives(raws, family):
    decoded = _decoded(raws)
    if decoded is not None:
        assert _fast_structs(decoded, family) == _one_by_one(raws, family)
