import json

import pytest
import yaml

from kipvs.errors import ClusterUnavailable
from kipvs.sources.file import parse_cluster_text, read_cluster_file
from tests.unit.k8s import ep, eps, node, svc

OBJECTS = [svc("web"), eps("web", [ep("10.1.0.5")]), node("node-a", "192.168.1.10"),
           {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p"}}]


def test_kubectl_yaml_list():
    text = yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": OBJECTS})
    snap = parse_cluster_text(text, "dump.yaml")
    assert (len(snap.services), len(snap.endpoint_slices), len(snap.nodes)) == (1, 1, 1)


def test_kubectl_json_list_and_multi_document_yaml():
    assert len(parse_cluster_text(json.dumps({"kind": "List", "items": OBJECTS}), "x").services) == 1
    text = yaml.safe_dump_all([{"kind": "ServiceList", "items": [svc("a"), svc("b")]}, node("n", "10.0.0.1")])
    snap = parse_cluster_text(text, "x")
    assert [s["metadata"]["name"] for s in snap.services] == ["a", "b"] and len(snap.nodes) == 1


def test_bundled_example_parses():
    snap = read_cluster_file("examples/cluster.yaml")
    assert len(snap.services) >= 8 and len(snap.nodes) == 3


def test_unreadable_or_wrong_files_are_clear_errors(tmp_path):
    with pytest.raises(ClusterUnavailable, match="cannot read cluster file .*missing.yaml"):
        read_cluster_file(str(tmp_path / "missing.yaml"))
    (tmp_path / "bad.yaml").write_text("items: [\n")
    with pytest.raises(ClusterUnavailable, match="not valid YAML at line 2, column 1"):
        read_cluster_file(str(tmp_path / "bad.yaml"))
    (tmp_path / "empty.yaml").write_text("kind: ConfigMap\n")
    with pytest.raises(ClusterUnavailable, match="no Service, EndpointSlice or Node"):
        read_cluster_file(str(tmp_path / "empty.yaml"))


def test_a_json_dump_parses_endpoint_slices_while_decoding_with_the_same_result_as_yaml():
    """JSON slices become their compact parsed form during decoding (memory); the desired state and
    its problems, in order, are what the same dump as YAML gives."""
    from kipvs.cluster import ParsedEndpointSlice
    from kipvs.config import ProxyOptions
    from kipvs.desired import build_desired

    items = [svc("web"), eps("web", [ep("10.1.0.5"), {"addresses": ["bad"]}, ep("10.1.0.6", ready=False)]),
             svc("api", cluster_ips=("10.96.0.11",), ports=[{"port": 70000}]), eps("nobody", [ep("10.1.0.7")]),
             {"kind": "EndpointSlice", "metadata": {"name": "unlabelled"}}, node("node-a", "192.168.1.10")]
    document = {"kind": "List", "apiVersion": "v1", "items": items}
    from_json = parse_cluster_text(json.dumps(document), "dump.json")
    from_yaml = parse_cluster_text(yaml.safe_dump(document), "dump.yaml")
    assert all(isinstance(s, ParsedEndpointSlice) for s in from_json.endpoint_slices)
    assert len(from_json.endpoint_slices) == len(from_yaml.endpoint_slices) == 3
    one, other = (build_desired(s, "node-a", {4: "192.168.1.10"}, ProxyOptions(), backends=True)
                  for s in (from_json, from_yaml))
    assert one.virtual_servers == other.virtual_servers and one.backends == other.backends and one.backends
    assert [str(p) for p in one.problems] == [str(p) for p in other.problems]
    assert any("EndpointSlice default/web-x: endpoints[1]" in str(p) for p in one.problems)


YAML_SHAPES = [
    "a: 1\nb: [x, 'y', 2.5, .inf, null, ~, true, no, on, 2001-12-14t21:59:43.10-05:00, 2002-12-14]\n",
    "base: &b {x: 1}\nderived:\n  <<: *b\n  y: 2\n",
    "? [complex, key]\n: value\n",
    "1: int key\nyes: bool key\nnull: null key\n",
    "bin: !!binary aGVsbG8=\nset: !!set {a, b}\nomap: !!omap [a: 1, b: 2]\npairs: !!pairs [a: 1]\n",
    "a: !!str 5\nb: !!int '7'\nc: !!float '1'\n",
    "--- a\n--- [1, 2]\n---\n...\n--- {k: v}\n",
    "= : default value key\n",
    "k: 'it''s *not* an alias'\nlist:\n- - nested\n  - {a: [1, {b: c}]}\n",
    "",
]


def _outcome(load, text) -> str:
    try:
        return repr(load(text))
    except yaml.YAMLError as exc:
        return f"{type(exc).__name__}: {exc}"


def _same_as_pyyaml(text) -> None:
    from kipvs.sources.file import _yaml_documents, yaml_loader

    assert _outcome(_yaml_documents, text) == _outcome(lambda t: list(yaml.load_all(t, Loader=yaml_loader())), text)


@pytest.mark.parametrize("text", YAML_SHAPES)
def test_plain_yaml_documents_are_what_pyyaml_builds(text):
    """`_yaml_documents` builds plain documents itself (speed) and leaves the rest to PyYAML: either way
    the same data (or the same error) as yaml.load_all."""
    _same_as_pyyaml(text)


def test_a_yaml_error_is_reported_as_before_when_documents_are_built_plainly():
    with pytest.raises(ClusterUnavailable, match="not valid YAML at line 3, column 1: did not find expected ','"):
        parse_cluster_text("a: [1, 2]\nb: {c: d\n", "x.yaml")
    with pytest.raises(ClusterUnavailable, match="not valid YAML"):
        parse_cluster_text("a: !!python/name:os.system x\n", "x.yaml")


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_yaml_data = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=12),
              st.sampled_from(["yes", "on", "0x1F", "1e3", "2001-12-14", "~", "*x", "&y", "<<", "=", "!!str"])),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.one_of(st.text(max_size=6), st.integers(), st.booleans()),
                                               children, max_size=4)),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(data=_yaml_data, flow=st.booleans())
def test_any_safe_dumped_data_loads_as_pyyaml_loads_it(data, flow):
    _same_as_pyyaml(yaml.safe_dump(data, default_flow_style=flow))


@pytest.mark.parametrize("text", YAML_SHAPES)
def test_plain_yaml_documents_with_the_pure_python_loader_too(text, monkeypatch):
    monkeypatch.setattr("kipvs.sources.file.yaml_loader", lambda: yaml.SafeLoader)
    _same_as_pyyaml(text)


_pieces = st.one_of(st.integers(0, 450).map(lambda n: " " * n + "x\n"),
                    st.integers(0, 210).map(lambda n: "- " * n), st.integers(0, 210).map(lambda n: "?  -   " * (n // 2)),
                    st.sampled_from(["\n", "x", "-", "?", " ", "-x", "a: b\n"]))


@settings(max_examples=200, deadline=None)
@given(text=st.lists(_pieces, max_size=6).map("".join))
def test_the_deep_block_check_finds_what_the_plain_regex_found(text):
    import re

    from kipvs.sources.file import _DEEP_BLOCK, MAX_NESTING
    plain = re.compile(r"^ {%d,}\S|(?:[-?] +){%d,}" % (MAX_NESTING * 2, MAX_NESTING), re.M)
    assert any(find(text) for find in _DEEP_BLOCK) == bool(plain.search(text))
