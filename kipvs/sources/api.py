"""The live source: paged lists of Services, EndpointSlices and Nodes with the official client."""
from __future__ import annotations

import json
import logging
import os
import re
import time
from typing import Callable

from kipvs.errors import ClusterUnavailable, ToolMissing
from kipvs.sources import Snapshot

log = logging.getLogger("kipvs.api")
PAGE_SIZE = 500


_CONNECTION_REPR = re.compile(r"<?\b\w*HTTPS?Connection(Pool)?\b[^:]*?(\)>?|object at 0x[0-9a-f]+>):\s*")


def connection_error(exc: BaseException) -> str:
    """urllib3's error without its `HTTPSConnection(host=…, port=…)` reprs: the cause an operator acts on
    (`Failed to establish a new connection: [Errno 111] Connection refused`)."""
    reason = getattr(exc, "reason", None)  # MaxRetryError wraps the real cause
    text = str(reason if isinstance(reason, BaseException) else exc).splitlines()[0] if str(exc) else type(exc).__name__
    text = _CONNECTION_REPR.sub("", text)
    return re.sub(r"\(Caused by \w+\((.*)\)\)$", r"(\1)", text)[:200]


# A kubeconfig with its certificates inlined is a few hundred KB; beyond this it is not one.
KUBECONFIG_MAX_BYTES = 16 << 20


def check_kubeconfig(kubeconfig: str | None) -> None:
    """Each file the client would read (KUBECONFIG may list several, ':'-separated; ~/.kube/config by
    default) is a regular file within the bound: the client reads them whole and would block on a FIFO.
    Missing files are the client's to report (it skips them in a list)."""
    from kipvs.bounded_read import NotReadable, read_regular

    paths = kubeconfig.split(os.pathsep) if kubeconfig else [os.path.expanduser("~/.kube/config")]
    for path in filter(None, paths):
        try:
            read_regular(os.path.expanduser(path), KUBECONFIG_MAX_BYTES)
        except FileNotFoundError:
            continue
        except NotReadable as exc:
            raise ClusterUnavailable(f"kubeconfig {path}: {exc}") from None
        except OSError as exc:
            raise ClusterUnavailable(f"kubeconfig {path}: {exc.strerror or exc}") from None


def load_client_config(kubeconfig: str | None, master: str | None = None):
    """In-cluster config when running in a pod (and no kubeconfig given), else kubeconfig.

    `master` (--master) replaces the server address either names, as kube-proxy's flag does: in a
    pod of a cluster without kube-proxy, the service account's token and CA with the real address."""
    from kubernetes import client, config
    from kubernetes.config.incluster_config import (SERVICE_CERT_FILENAME, SERVICE_HOST_ENV_NAME,
                                                    SERVICE_PORT_ENV_NAME, SERVICE_TOKEN_FILENAME,
                                                    InClusterConfigLoader)
    from yaml import YAMLError

    configuration = client.Configuration()
    # urllib3 would retry a silent server 3 more times per request; kipvs's own deadline and the
    # reflector's backoff decide instead.
    configuration.retries = False
    missing = [path for path in (kubeconfig or "").split(os.pathsep) if path and not os.path.exists(path)]
    if missing:
        raise ClusterUnavailable(f"kubeconfig {missing[0]} (--kubeconfig or KUBECONFIG) does not exist: check the "
                                 "path, or leave it unset to use the in-cluster config or ~/.kube/config")
    try:
        if kubeconfig is None:
            # With --master the loader must not need KUBERNETES_SERVICE_HOST: the address is replaced below.
            environ = os.environ if master is None else \
                {**os.environ, SERVICE_HOST_ENV_NAME: "master", SERVICE_PORT_ENV_NAME: "443"}
            try:
                InClusterConfigLoader(token_filename=SERVICE_TOKEN_FILENAME, cert_filename=SERVICE_CERT_FILENAME,
                                      environ=environ).load_and_set(configuration)
                return client.ApiClient(_at(configuration, master))
            except config.ConfigException:
                pass
            default = os.path.expanduser(config.KUBE_CONFIG_DEFAULT_LOCATION)
            if not os.path.exists(default):
                raise ClusterUnavailable(
                    f"no Kubernetes client configuration: not in a pod (no in-cluster service account) and no "
                    f"{default}; pass --kubeconfig FILE, or --cluster-file for a `kubectl get` dump")
        check_kubeconfig(kubeconfig)
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        return client.ApiClient(_at(configuration, master))
    except (config.ConfigException, OSError, TypeError, ValueError, YAMLError, RecursionError) as exc:
        # ValueError: YAML the client's loader cannot build (a 5,000-digit number, 2023-02-30)
        why = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
        where = kubeconfig or config.KUBE_CONFIG_DEFAULT_LOCATION
        raise ClusterUnavailable(f"no usable Kubernetes client configuration in {where}: {why}") from None


def _at(configuration, master: str | None):
    if master:
        configuration.host = master.rstrip("/")
    return configuration


# The query parameters of the official client's list_* calls that kipvs passes, in the order it sends them.
_QUERY = (("allow_watch_bookmarks", "allowWatchBookmarks"), ("_continue", "continue"),
          ("field_selector", "fieldSelector"), ("label_selector", "labelSelector"), ("limit", "limit"),
          ("resource_version", "resourceVersion"), ("resource_version_match", "resourceVersionMatch"),
          ("timeout_seconds", "timeoutSeconds"), ("watch", "watch"))


class ListCall:
    """One of the official client's list calls (CoreV1Api.list_service_for_all_namespaces, …) as kipvs makes
    it: the same request through the same ApiClient (its authentication, TLS and timeouts), always with
    `_preload_content=False` (the raw response; JSON is decoded by kipvs), and the same ApiException for
    an answer that is not 2xx. The generated API classes are not loaded: CoreV1Api and DiscoveryV1Api
    import some 250 modules and build a validator for each of their methods (~22 MB in a watch)."""

    def __init__(self, api_client, path: str, **fixed):
        self.api_client, self.path, self.fixed = api_client, path, fixed

    def __call__(self, _preload_content: bool = False, _request_timeout=None, **params):
        from kubernetes.client.exceptions import ApiException

        if _preload_content:
            raise ValueError("ListCall returns the raw response only (_preload_content=False)")
        if not hasattr(self.api_client, "param_serialize"):  # the client's generator before 37.0
            import kubernetes

            raise ToolMissing(f"kipvs needs the kubernetes Python client 37 or later (pip install "
                              f"'kubernetes>=37,<40'); this one is {kubernetes.__version__}")
        params = {**self.fixed, **params}
        unknown = set(params) - {name for name, _ in _QUERY}
        if unknown:
            raise TypeError(f"unexpected list parameter(s): {', '.join(sorted(unknown))}")
        query = [(wire, params[name]) for name, wire in _QUERY if params.get(name) is not None]
        request = self.api_client.param_serialize(
            method="GET", resource_path=self.path, path_params={}, query_params=query,
            header_params={"Accept": "application/json"}, body=None, post_params=[], files={},
            auth_settings=["BearerToken"], collection_formats={})
        response = self.api_client.call_api(*request, _request_timeout=_request_timeout)
        if not 200 <= response.status <= 299:
            response.read()
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        return response.response

    def __repr__(self) -> str:
        return f"ListCall({self.path!r}, {self.fixed!r})"


def list_services(api_client) -> ListCall:
    return ListCall(api_client, "/api/v1/services")


def list_endpoint_slices(api_client) -> ListCall:
    return ListCall(api_client, "/apis/discovery.k8s.io/v1/endpointslices")


def list_nodes(api_client, node_name: str | None = None) -> ListCall:
    """With `node_name`, only that Node (a field selector)."""
    return ListCall(api_client, "/api/v1/nodes", **({"field_selector": f"metadata.name={node_name}"}
                                                     if node_name else {}))


def list_all(list_call, kind: str, api_version: str, request_timeout: float,
             gone: type[Exception] | None = None, deadline: float | None = None,
             first_page: dict | None = None, item: Callable[[dict], object] | None = None,
             **selectors) -> tuple[list, str]:
    """Every item of a paged list (limit/continue), as raw API JSON; returns (items, resourceVersion).
    `item`: what is kept of each, applied as its page is decoded (so no more than a page of raw
    objects is alive at once: watch keeps EndpointSlices and Services parsed).

    A continue token can expire mid-list (410); with `gone`, that raises `gone` so the caller re-lists.
    `deadline` (time.monotonic()) bounds the whole list, however many pages; `selectors` go to the call;
    `first_page` too, but only to the first (resourceVersion and its match: the server refuses them
    beside a continue token, which carries the version of the first page)."""
    from kubernetes.client.exceptions import ApiException

    items: list = []
    token = None
    while True:
        timeout = request_timeout
        if deadline is not None:
            timeout = min(timeout, deadline - time.monotonic())
            if timeout <= 0:
                raise TimeoutError(f"{kind} list took longer than the API timeout")
        kwargs = {"limit": PAGE_SIZE, "_preload_content": False, "_request_timeout": timeout, **selectors}
        if token:
            kwargs["_continue"] = token
        else:
            kwargs.update(first_page or {})
        try:
            response = list_call(**kwargs)
        except ApiException as exc:
            if gone is not None and exc.status == 410:
                raise gone(f"{kind} list: continue token expired") from None
            raise
        page = json.loads(response.data)
        del response
        raws = page.get("items") or []
        for raw in raws:
            raw.setdefault("kind", kind)
            raw.setdefault("apiVersion", api_version)
        items.extend(map(item, raws) if item is not None else raws)
        del raws
        page["items"] = None
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return items, (page.get("metadata") or {}).get("resourceVersion", "")


def read_cluster_api(api_client, timeout: float = 10.0) -> Snapshot:
    """The three lists, all within `timeout` seconds (--api-timeout): a cron sync must not hang."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    host = api_client.configuration.host
    try:
        deadline = time.monotonic() + timeout
        services, _ = list_all(list_services(api_client), "Service", "v1", timeout, deadline=deadline)
        slices, _ = list_all(list_endpoint_slices(api_client), "EndpointSlice", "discovery.k8s.io/v1", timeout,
                             deadline=deadline)
        nodes, _ = list_all(list_nodes(api_client), "Node", "v1", timeout, deadline=deadline)
    except ApiException as exc:
        raise ClusterUnavailable(f"API server {host}: {exc.status} {exc.reason}") from None
    except TimeoutError:
        raise ClusterUnavailable(f"API server {host} did not answer within {timeout:g}s (--api-timeout)") from None
    except (HTTPError, OSError) as exc:
        if "timed out" in str(exc).lower():
            raise ClusterUnavailable(f"API server {host} did not answer within {timeout:g}s "
                                     "(--api-timeout)") from None
        raise ClusterUnavailable(f"API server {host} unreachable: {connection_error(exc)}") from None
    except ValueError as exc:  # a body that is not JSON
        raise ClusterUnavailable(f"API server {host}: unreadable answer: {str(exc)[:200]}") from None
    log.info("listed %d services, %d endpointslices, %d nodes from %s", len(services), len(slices), len(nodes), host)
    return Snapshot(tuple(services), tuple(slices), tuple(nodes), origin=host)
