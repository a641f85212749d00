"""Small builders of API objects (the JSON the API serves) for unit tests."""
from __future__ import annotations

from kipvs.sources import Snapshot


def svc(name, cluster_ips=("10.96.0.10",), ports=None, namespace="default", annotations=None, labels=None, **spec):
    meta = {"name": name, "namespace": namespace}
    if annotations is not None:
        meta["annotations"] = annotations
    if labels is not None:
        meta["labels"] = labels
    status = spec.pop("status", {})
    body = {"type": "ClusterIP", "clusterIP": cluster_ips[0] if cluster_ips else None,
            "clusterIPs": list(cluster_ips), "ports": ports if ports is not None else
            [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]}
    body.update(spec)
    return {"kind": "Service", "apiVersion": "v1", "metadata": meta, "spec": body, "status": status}


def ep(ip, node="node-a", pod=None, ready=True, serving=None, terminating=False):
    conditions = {}
    if ready is not None:
        conditions["ready"] = ready
    if serving is not None:
        conditions["serving"] = serving
    conditions["terminating"] = terminating
    return {"addresses": [ip], "conditions": conditions, "nodeName": node,
            "targetRef": {"kind": "Pod", "name": pod or f"pod-{ip}"}}


def eps(service, endpoints, ports=None, address_type="IPv4", namespace="default", name=None):
    return {"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1", "addressType": address_type,
            "metadata": {"name": name or f"{service}-x", "namespace": namespace,
                         "labels": {"kubernetes.io/service-name": service}},
            "ports": ports if ports is not None else [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": endpoints}


def node(name, *ips):
    return {"kind": "Node", "apiVersion": "v1", "metadata": {"name": name},
            "status": {"addresses": [{"type": "InternalIP", "address": ip} for ip in ips]}}


def snapshot(*objects):
    return Snapshot(tuple(o for o in objects if o["kind"] == "Service"),
                    tuple(o for o in objects if o["kind"] == "EndpointSlice"),
                    tuple(o for o in objects if o["kind"] == "Node"), "test")
