"""`--cluster-file`: what `kubectl get services,endpointslices,nodes -A -o yaml|json` prints."""
from __future__ import annotations

import json
import sys

import yaml

from kipvs.errors import ClusterUnavailable
from kipvs.sources import Snapshot, snapshot_from_objects


def _flatten(document) -> list[dict]:
    """A `List` (kubectl's -o yaml/json of several kinds) or a single object."""
    if not isinstance(document, dict):
        return []
    if document.get("kind", "").endswith("List") or ("items" in document and "kind" not in document):
        return [item for item in document.get("items") or [] if isinstance(item, dict)]
    return [document]


def parse_cluster_text(text: str, origin: str) -> Snapshot:
    try:
        documents = [json.loads(text)] if text.lstrip().startswith("{") else list(yaml.safe_load_all(text))
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ClusterUnavailable(f"{origin}: not a kubectl YAML or JSON dump: {str(exc).splitlines()[0]}") from None
    objects = [obj for doc in documents for obj in _flatten(doc)]
    snapshot = snapshot_from_objects(objects, origin)
    if not (snapshot.services or snapshot.endpoint_slices or snapshot.nodes):
        raise ClusterUnavailable(f"{origin}: no Service, EndpointSlice or Node in it "
                                 "(expected `kubectl get services,endpointslices,nodes -A -o yaml`)")
    return snapshot


def read_cluster_file(path: str) -> Snapshot:
    origin = "stdin" if path == "-" else path
    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    except OSError as exc:
        raise ClusterUnavailable(f"cannot read cluster file {origin}: {exc.strerror}") from None
    return parse_cluster_text(text, origin)
