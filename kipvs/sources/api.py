"""The live source: paged lists of Services, EndpointSlices and Nodes with the official client."""
from __future__ import annotations

import json
import logging
import os
import re
import time

from kipvs.errors import ClusterUnavailable
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


def list_all(list_call, kind: str, api_version: str, request_timeout: float,
             gone: type[Exception] | None = None, deadline: float | None = None,
             first_page: dict | None = None, **selectors) -> tuple[list[dict], str]:
    """Every item of a paged list (limit/continue), as raw API JSON; returns (items, resourceVersion).

    A continue token can expire mid-list (410); with `gone`, that raises `gone` so the caller re-lists.
    `deadline` (time.monotonic()) bounds the whole list, however many pages; `selectors` go to the call;
    `first_page` too, but only to the first (resourceVersion and its match: the server refuses them
    beside a continue token, which carries the version of the first page)."""
    from kubernetes.client.exceptions import ApiException

    items: list[dict] = []
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
        for item in page.get("items") or []:
            item.setdefault("kind", kind)
            item.setdefault("apiVersion", api_version)
            items.append(item)
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return items, (page.get("metadata") or {}).get("resourceVersion", "")


def read_cluster_api(api_client, timeout: float = 10.0) -> Snapshot:
    """The three lists, all within `timeout` seconds (--api-timeout): a cron sync must not hang."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    core = client.CoreV1Api(api_client)
    discovery = client.DiscoveryV1Api(api_client)
    host = api_client.configuration.host
    try:
        deadline = time.monotonic() + timeout
        services, _ = list_all(core.list_service_for_all_namespaces, "Service", "v1", timeout, deadline=deadline)
        slices, _ = list_all(discovery.list_endpoint_slice_for_all_namespaces, "EndpointSlice",
                             "discovery.k8s.io/v1", timeout, deadline=deadline)
        nodes, _ = list_all(core.list_node, "Node", "v1", timeout, deadline=deadline)
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
