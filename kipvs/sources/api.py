"""The live source: paged lists of Services, EndpointSlices and Nodes with the official client."""
from __future__ import annotations

import json
import logging

from kipvs.errors import ClusterUnavailable
from kipvs.sources import Snapshot

log = logging.getLogger("kipvs.api")
PAGE_SIZE = 500


def load_client_config(kubeconfig: str | None):
    """In-cluster config when running in a pod (and no kubeconfig given), else kubeconfig."""
    from kubernetes import client, config

    try:
        if kubeconfig is None:
            try:
                config.load_incluster_config()
                return client.ApiClient()
            except config.ConfigException:
                pass
        configuration = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        return client.ApiClient(configuration)
    except (config.ConfigException, OSError, TypeError) as exc:
        raise ClusterUnavailable(f"no usable Kubernetes client configuration: {exc}") from None


def list_all(list_call, kind: str, api_version: str, request_timeout: float,
             gone: type[Exception] | None = None) -> tuple[list[dict], str]:
    """Every item of a paged list (limit/continue), as raw API JSON; returns (items, resourceVersion).

    A continue token can expire mid-list (410); with `gone`, that raises `gone` so the caller re-lists."""
    from kubernetes.client.exceptions import ApiException

    items: list[dict] = []
    token = None
    while True:
        kwargs = {"limit": PAGE_SIZE, "_preload_content": False, "_request_timeout": request_timeout}
        if token:
            kwargs["_continue"] = token
        try:
            response = list_call(**kwargs)
        except ApiException as exc:
            if gone is not None and exc.status == 410:
                raise gone(f"{kind} list: continue token expired") from None
            raise
        page = json.loads(response.data)
        for item in page.get("items") or []:
            item.setdefault("kind", kind)
            item.setdefault("apiVersion", api_version)
            items.append(item)
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return items, (page.get("metadata") or {}).get("resourceVersion", "")


def read_cluster_api(api_client, request_timeout: float = 30.0) -> Snapshot:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    core = client.CoreV1Api(api_client)
    discovery = client.DiscoveryV1Api(api_client)
    host = api_client.configuration.host
    try:
        services, _ = list_all(core.list_service_for_all_namespaces, "Service", "v1", request_timeout)
        slices, _ = list_all(discovery.list_endpoint_slice_for_all_namespaces, "EndpointSlice",
                             "discovery.k8s.io/v1", request_timeout)
        nodes, _ = list_all(core.list_node, "Node", "v1", request_timeout)
    except ApiException as exc:
        raise ClusterUnavailable(f"API server {host}: {exc.status} {exc.reason}") from None
    except (HTTPError, OSError) as exc:
        raise ClusterUnavailable(f"API server {host} unreachable: {exc}") from None
    log.info("listed %d services, %d endpointslices, %d nodes from %s", len(services), len(slices), len(nodes), host)
    return Snapshot(tuple(services), tuple(slices), tuple(nodes), origin=host)
