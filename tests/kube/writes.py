"""Create-or-replace and delete of Services, EndpointSlices and Nodes through the official client, as an
admin (or a controller) would write them; objects may come from a kubectl dump (server fields are dropped)."""
from __future__ import annotations

import copy
import json

from kubernetes import client
from kubernetes.client.exceptions import ApiException

SERVER_FIELDS = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields")


def _calls(api_client: client.ApiClient, kind: str):
    core, disc = client.CoreV1Api(api_client), client.DiscoveryV1Api(api_client)
    return {"Service": (core.create_namespaced_service, core.read_namespaced_service,
                        core.replace_namespaced_service, core.delete_namespaced_service),
            "EndpointSlice": (disc.create_namespaced_endpoint_slice, disc.read_namespaced_endpoint_slice,
                              disc.replace_namespaced_endpoint_slice, disc.delete_namespaced_endpoint_slice),
            "Node": (core.create_node, core.read_node, core.replace_node, core.delete_node)}[kind]


def _scope(obj: dict) -> tuple:
    return () if obj["kind"] == "Node" else (obj["metadata"].get("namespace") or "default",)


def apply(api_client: client.ApiClient, obj: dict) -> dict:
    """Create, or replace what is there (keeping a Service's allocated cluster IPs, which are immutable).
    A Service's status (load-balancer ingress) is written through its status subresource, as a cloud
    controller does: the server ignores it on create and replace."""
    create, read, replace, _ = _calls(api_client, obj["kind"])
    obj = copy.deepcopy(obj)
    meta = obj["metadata"]
    for field in SERVER_FIELDS:
        meta.pop(field, None)
    scope = _scope(obj)
    try:
        written = json.loads(create(*scope, obj, _preload_content=False).data)
    except ApiException as exc:
        # An existing Service with an explicit cluster IP fails its IP allocation (422) before its name (409).
        if exc.status not in (409, 422) or not _exists(read, meta["name"], scope):
            raise
        written = _replace(obj, scope, read, replace)
    if obj["kind"] == "Service" and (obj.get("status") or {}).get("loadBalancer", {}).get("ingress"):
        status = dict(written, status=obj["status"])
        written = json.loads(client.CoreV1Api(api_client).replace_namespaced_service_status(
            meta["name"], *scope, status, _preload_content=False).data)
    return written


def _exists(read, name: str, scope: tuple) -> bool:
    try:
        read(name, *scope, _preload_content=False)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def _replace(obj: dict, scope: tuple, read, replace) -> dict:
    meta = obj["metadata"]
    for _ in range(5):
        current = json.loads(read(meta["name"], *scope, _preload_content=False).data)
        meta["resourceVersion"] = current["metadata"]["resourceVersion"]
        if obj["kind"] == "Service":
            obj["spec"]["clusterIP"] = current["spec"].get("clusterIP")
            obj["spec"]["clusterIPs"] = current["spec"].get("clusterIPs")
        try:
            return json.loads(replace(meta["name"], *scope, obj, _preload_content=False).data)
        except ApiException as exc:
            if exc.status != 409:  # 409 here: someone wrote in between, read again
                raise
    raise AssertionError(f"could not replace {obj['kind']} {meta['name']}: conflicts")


def delete(api_client: client.ApiClient, kind: str, name: str, namespace: str = "default") -> None:
    _, _, _, delete_call = _calls(api_client, kind)
    try:
        delete_call(name, *(() if kind == "Node" else (namespace,)))
    except ApiException as exc:
        if exc.status != 404:
            raise
