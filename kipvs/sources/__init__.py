"""Where cluster state comes from: the API server or a `kubectl get -o yaml|json` dump."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Snapshot:
    """Services, EndpointSlices and Nodes as the API serves them (JSON dicts, camelCase).

    Every source produces this same shape, so nothing downstream knows where it came from."""

    services: tuple = ()  # dicts, or cluster.ParsedService from a JSON file
    endpoint_slices: tuple = ()  # dicts, or cluster.ParsedEndpointSlice from a JSON file
    nodes: tuple[dict, ...] = ()
    origin: str = ""
    problems: tuple = ()  # objects that could not even be sorted by kind (cluster.Problem)


KIND_FIELD = {"Service": "services", "EndpointSlice": "endpoint_slices", "Node": "nodes"}


def snapshot_from_objects(objects: list[dict], origin: str) -> Snapshot:
    """Sort API objects by kind; other kinds (Endpoints, Pods, …) are ignored, a kind that is not
    a string is reported."""
    from kipvs.cluster import ParsedEndpointSlice, ParsedService, Problem, shown

    buckets: dict[str, list[dict]] = {name: [] for name in KIND_FIELD.values()}
    problems = []
    for i, obj in enumerate(objects):
        kind = "EndpointSlice" if isinstance(obj, ParsedEndpointSlice) else \
            "Service" if isinstance(obj, ParsedService) else obj.get("kind")
        if not isinstance(kind, str):
            problems.append(Problem(f"object {i} of {origin}", "kind", f"{shown(kind)} is not a kind; skipped"))
            continue
        field = KIND_FIELD.get(kind)
        if field:
            buckets[field].append(obj)
    return Snapshot(tuple(buckets["services"]), tuple(buckets["endpoint_slices"]), tuple(buckets["nodes"]), origin,
                    tuple(problems))


def load_snapshot(cluster_file: str | None, kubeconfig: str | None, api_timeout: float,
                  master: str | None = None) -> Snapshot:
    """From a dump when `cluster_file` is given, else from the API (the client is imported only then)."""
    if cluster_file:
        from kipvs.sources.file import read_cluster_file

        return read_cluster_file(cluster_file)
    from kipvs.sources.api import load_client_config, read_cluster_api

    return read_cluster_api(load_client_config(kubeconfig, master), api_timeout)
