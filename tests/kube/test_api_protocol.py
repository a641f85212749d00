"""What kipvs's sources rely on, asked of the real kube-apiserver: typed lists, paging, watch replay,
bookmarks, 410 after compaction, the node field selector."""
import json
import threading

import pytest
from kubernetes import client

from kipvs.sources import api as api_source
from kipvs.sources.api import list_all, read_cluster_api
from kipvs.sources.reflector import Reflector, Resource
from tests.kube.conftest import NAMESPACE
from tests.unit.k8s import ep, eps, node, svc


def services(kube, count):
    for i in range(count):
        kube.apply(svc(f"s{i:03}", cluster_ips=(), namespace=NAMESPACE))


def test_typed_lists_through_the_api_client(kube):
    created = kube.apply(svc("web", cluster_ips=(), namespace=NAMESPACE))
    kube.apply(eps("web", [ep("10.1.0.5")], namespace=NAMESPACE))
    services_ = kube.core.list_namespaced_service(NAMESPACE)
    assert [s.metadata.name for s in services_.items] == ["web"]
    assert services_.items[0].spec.cluster_ip == created["spec"]["clusterIP"]  # allocated by the server
    slices = kube.discovery.list_endpoint_slice_for_all_namespaces(label_selector="kubernetes.io/service-name=web")
    assert slices.items[0].endpoints[0].addresses == ["10.1.0.5"]
    snapshot = read_cluster_api(kube.admin)
    assert snapshot.origin == kube.url
    assert {s["kind"] for s in snapshot.services} == {"Service"}  # typed lists leave kind out; kipvs puts it back


def test_paged_list_is_one_snapshot(kube, monkeypatch):
    services(kube, 25)
    first = kube.core.list_namespaced_service(NAMESPACE, limit=10)
    kube.apply(svc("zzz-late", cluster_ips=(), namespace=NAMESPACE))  # written mid-list: not in that snapshot
    rest = []
    token = first.metadata._continue
    while token:
        page = kube.core.list_namespaced_service(NAMESPACE, limit=10, _continue=token)
        rest += page.items
        token = page.metadata._continue
    names = [s.metadata.name for s in first.items + rest]
    assert len(names) == 25 and "zzz-late" not in names
    monkeypatch.setattr(api_source, "PAGE_SIZE", 7)
    items, rv = list_all(kube.core.list_service_for_all_namespaces, "Service", "v1", 10)
    assert {"zzz-late", "s000", "s024"} <= {i["metadata"]["name"] for i in items} and int(rv) > 0


def test_continue_token_across_compaction_and_failover_is_410(kube, pair):
    """An API server's watch cache serves a continue token from its own snapshot; one that does not have it
    (restarted, or another replica) reads etcd, and etcd compacted that revision: 410 Expired."""
    services(kube, 5)
    first = kube.core.list_namespaced_service(NAMESPACE, limit=2)
    kube.apply(svc("late", cluster_ips=(), namespace=NAMESPACE))  # etcd keeps the revision it compacts at
    pair.compact()
    pair.kill_apiserver()
    pair.start_apiserver()
    with pytest.raises(client.ApiException) as info:
        kube.core.list_namespaced_service(NAMESPACE, limit=2, _continue=first.metadata._continue)
    assert info.value.status == 410 and json.loads(info.value.body)["reason"] == "Expired"


def test_paged_list_across_compaction_recovers(kube, pair, monkeypatch):
    """The reflector's first page, then compaction and a fresh API server: the continue token is gone
    (410), and the reflector lists again from the start instead of giving up or keeping half a list."""
    services(kube, 25)
    monkeypatch.setattr(api_source, "PAGE_SIZE", 10)
    pages = []

    def list_call(**kwargs):
        if not kwargs.get("watch"):
            pages.append(kwargs.get("_continue"))
            if len(pages) == 2:  # between the first and second page, once
                kube.apply(svc("late", cluster_ips=(), namespace=NAMESPACE))
                pair.compact()
                pair.kill_apiserver()
                pair.start_apiserver()
        return kube.core.list_namespaced_service(NAMESPACE, **kwargs)

    stop = threading.Event()
    reflector = Reflector(Resource("Service", "v1", list_call), lambda kind: None, stop,
                          watch_timeout=5, read_grace=1, request_timeout=5)
    # A list at resourceVersion "0" comes whole from the watch cache (one page, whatever the limit);
    # the consistent list a reflector makes after a failed one is the paged one.
    reflector.consistent_list = True
    reflector.start()
    try:
        assert reflector.synced.wait(60)
        assert len(pages) >= 4 and pages[0] is None and pages[2] is None  # page 1, page 2 (410), then from the start
        assert reflector.stats.relists_410 == 1 and reflector.stats.lists == 1
        assert len(reflector.items()) == 26  # never half a list
    finally:
        stop.set()
        reflector.thread.join(10)


def test_watch_replays_deletions_with_their_last_state(kube):
    rv = kube.apply(svc("a", cluster_ips=(), namespace=NAMESPACE))["metadata"]["resourceVersion"]
    kube.apply(svc("b", cluster_ips=(), namespace=NAMESPACE))
    kube.delete("Service", "a")
    resp = kube.core.list_namespaced_service(NAMESPACE, watch=True, resource_version=rv, allow_watch_bookmarks=True,
                                             timeout_seconds=2, _preload_content=False)
    events = [json.loads(line) for line in resp.data.decode().splitlines() if line]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events if e["type"] != "BOOKMARK"] == \
        [("ADDED", "b"), ("DELETED", "a")]
    assert events[1]["object"]["spec"]["ports"]  # the deleted object's last state, not a stub


def test_watch_from_before_compaction_on_a_fresh_server_is_410_expired(kube, pair):
    rv = kube.apply(svc("a", cluster_ips=(), namespace=NAMESPACE))["metadata"]["resourceVersion"]
    kube.apply(svc("b", cluster_ips=(), namespace=NAMESPACE))
    pair.compact()
    pair.kill_apiserver()
    pair.start_apiserver()
    resp = kube.core.list_namespaced_service(NAMESPACE, watch=True, resource_version=rv, timeout_seconds=2,
                                             _preload_content=False)
    event = json.loads(resp.data.decode().splitlines()[0])
    assert event["type"] == "ERROR" and event["object"]["code"] == 410
    assert "too old resource version" in event["object"]["message"]


def test_node_field_selector_lists_and_watches_one_node(kube, pair):
    for name, ip in (("node-a", "192.168.1.10"), ("node-b", "192.168.1.11")):
        kube.apply(node(name, ip))
    nodes = kube.core.list_node(field_selector="metadata.name=node-a")
    assert [n.metadata.name for n in nodes.items] == ["node-a"]
    rv = nodes.metadata.resource_version
    kube.core.patch_node("node-b", {"metadata": {"labels": {"beat": "1"}}})
    kube.core.patch_node("node-a", {"metadata": {"labels": {"beat": "1"}}})
    resp = kube.core.list_node(field_selector="metadata.name=node-a", watch=True, resource_version=rv,
                               timeout_seconds=2, _preload_content=False)
    events = [json.loads(line) for line in resp.data.decode().splitlines() if line]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("MODIFIED", "node-a")]
