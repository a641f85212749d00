"""The protocol fake (tests/kube/apiserver.py) stays faithful to what the official client expects, so the
injected-error tests (test_watch_injected_errors.py) mean something. kipvs itself is proven against the
real kube-apiserver in the other files here."""
import json

import pytest
from kubernetes import client

from kipvs.sources.api import list_all, read_cluster_api
from tests.kube.conftest import fake_api_client as api_client
from tests.unit.k8s import ep, eps, node, svc


def test_typed_lists_through_the_api_client(fake_api, tmp_path):
    fake_api.store.apply(svc("web"))
    fake_api.store.apply(eps("web", [ep("10.1.0.5")]))
    fake_api.store.apply(node("node-a", "192.168.1.10"))
    core = client.CoreV1Api(api_client(fake_api, tmp_path))
    services = core.list_service_for_all_namespaces()
    assert [s.metadata.name for s in services.items] == ["web"]
    assert services.items[0].spec.cluster_ip == "10.96.0.10"
    assert int(services.metadata.resource_version) >= 103
    slices = client.DiscoveryV1Api(core.api_client).list_endpoint_slice_for_all_namespaces(
        label_selector="kubernetes.io/service-name=web")
    assert slices.items[0].endpoints[0].addresses == ["10.1.0.5"]


def test_paged_list_is_one_snapshot_and_read_cluster_api_reads_all(fake_api, tmp_path):
    for i in range(1203):
        fake_api.store.apply(svc(f"s{i:04}", cluster_ips=(f"10.96.{i // 250}.{i % 250 + 1}",)))
    core = client.CoreV1Api(api_client(fake_api, tmp_path))
    first = core.list_service_for_all_namespaces(limit=500)
    fake_api.store.apply(svc("zzz-late"))  # written mid-list: not in this snapshot
    items, rv = list_all(core.list_service_for_all_namespaces, "Service", "v1", 10)
    assert len(items) == 1204 and first.metadata._continue
    snapshot = read_cluster_api(core.api_client)
    assert len(snapshot.services) == 1204 and snapshot.origin == fake_api.url
    rest = core.list_service_for_all_namespaces(limit=500, _continue=first.metadata._continue)
    assert "zzz-late" not in {s.metadata.name for s in rest.items}


def test_watch_replays_then_streams_with_bookmarks(fake_api, tmp_path):
    fake_api.store.bookmark_interval = 0.2
    rv = fake_api.store.apply(svc("a"))["metadata"]["resourceVersion"]
    fake_api.store.apply(svc("b"))
    fake_api.store.delete("Service", "a", "default")
    core = client.CoreV1Api(api_client(fake_api, tmp_path))
    resp = core.list_service_for_all_namespaces(watch=True, resource_version=rv, allow_watch_bookmarks=True,
                                                timeout_seconds=1, _preload_content=False)
    events = [json.loads(line) for line in resp.stream(decode_content=True) for line in line.splitlines() if line]
    types = [e["type"] for e in events]
    assert types[:2] == ["ADDED", "DELETED"] and "BOOKMARK" in types
    assert events[1]["object"]["metadata"]["name"] == "a"  # last state of the deleted object


def test_injected_failures(fake_api, tmp_path):
    fake_api.store.fail_next(2, 429)
    core = client.CoreV1Api(api_client(fake_api, tmp_path))
    for _ in range(2):
        with pytest.raises(client.ApiException) as info:
            core.list_node()
        assert info.value.status == 429
    assert core.list_node().items == []
