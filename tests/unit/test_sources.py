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
