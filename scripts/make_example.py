"""Writes examples/cluster.yaml: a small cluster as `kubectl get services,endpointslices,nodes -A -o yaml`
prints it, matching the lab topology (three nodes, one web pod per node). Run it after changing it."""
import copy
from pathlib import Path

import yaml

NODES = {"node1": ("192.168.123.250", "fd00:123::250"), "node2": ("192.168.123.248", "fd00:123::248"),
         "node3": ("192.168.123.249", "fd00:123::249")}
WEB_PODS = [("web-7d4b9c-x1a", "node1", "172.20.1.2", "fd00:20:1::2"),
            ("web-7d4b9c-x2b", "node2", "172.20.2.2", "fd00:20:2::2"),
            ("web-7d4b9c-x3c", "node3", "172.20.3.2", "fd00:20:3::2")]


def node(name, ip4, ip6):
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"addresses": [{"type": "InternalIP", "address": ip4}, {"type": "InternalIP", "address": ip6},
                                     {"type": "Hostname", "address": name}]}}


def service(name, cluster_ips, ports, namespace="default", **spec):
    families = ["IPv6" if ":" in ip else "IPv4" for ip in cluster_ips]
    annotations = spec.pop("annotations", None)
    status = spec.pop("status", {"loadBalancer": {}})
    meta = {"name": name, "namespace": namespace, "uid": f"uid-{name}", "resourceVersion": "1000"}
    if annotations:
        meta["annotations"] = annotations
    body = {"type": "ClusterIP", "clusterIP": cluster_ips[0], "clusterIPs": cluster_ips, "ipFamilies": families,
            "ipFamilyPolicy": "PreferDualStack" if len(cluster_ips) > 1 else "SingleStack",
            "ports": ports, "sessionAffinity": "None", "internalTrafficPolicy": "Cluster"}
    body.update(spec)
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": body, "status": status}


def slice_(service_name, address_type, ports, endpoints, suffix="abcde", namespace="default"):
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": address_type,
            "metadata": {"name": f"{service_name}-{suffix}", "namespace": namespace,
                         "labels": {"kubernetes.io/service-name": service_name,
                                    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
            "ports": copy.deepcopy(ports), "endpoints": copy.deepcopy(endpoints)}  # no YAML anchors, as kubectl


def endpoint(ip, node_name, pod, ready=True):
    return {"addresses": [ip], "conditions": {"ready": ready, "serving": ready, "terminating": False},
            "nodeName": node_name, "targetRef": {"kind": "Pod", "name": pod, "namespace": "default"}}


HTTP = [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]
HTTP_EP = [{"name": "http", "port": 8080, "protocol": "TCP"}]
web4 = [endpoint(ip, n, pod) for pod, n, ip, _ in WEB_PODS]
web6 = [endpoint(ip6, n, pod) for pod, n, _, ip6 in WEB_PODS]

items = [node(n, *ips) for n, ips in NODES.items()] + [
    service("kubernetes", ["10.254.0.1"], [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]),
    slice_("kubernetes", "IPv4", [{"name": "https", "port": 6443, "protocol": "TCP"}],
           [{"addresses": ["192.168.123.250"], "conditions": {"ready": True}}], suffix="api"),
    service("web", ["10.254.0.20"], [dict(HTTP[0], nodePort=30080)], type="NodePort",
            externalTrafficPolicy="Cluster"),
    slice_("web", "IPv4", HTTP_EP, web4),
    service("web-sticky", ["10.254.0.30"], HTTP, sessionAffinity="ClientIP",
            sessionAffinityConfig={"clientIP": {"timeoutSeconds": 600}},
            annotations={"kube-router.io/service.scheduler": "wrr"}),
    slice_("web-sticky", "IPv4", HTTP_EP, web4),
    service("web-local", ["10.254.0.40"], [dict(HTTP[0], nodePort=30081)], type="LoadBalancer",
            externalTrafficPolicy="Local", internalTrafficPolicy="Local", externalIPs=["192.168.200.10"],
            status={"loadBalancer": {"ingress": [{"ip": "192.168.201.10", "ipMode": "VIP"},
                                                 {"ip": "192.168.201.99", "ipMode": "Proxy"}]}}),
    slice_("web-local", "IPv4", HTTP_EP, web4),
    service("web-dual", ["10.254.0.50", "fd00:254::50"], HTTP),
    slice_("web-dual", "IPv4", HTTP_EP, web4, suffix="v4"),
    slice_("web-dual", "IPv6", HTTP_EP, web6, suffix="v6"),
    service("dns", ["10.254.0.10"], [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                                     {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}],
            namespace="kube-system",
            annotations={"kube-router.io/service.scheduler": "sh", "kube-router.io/service.schedflags": "flag-1,flag-2"}),
    slice_("dns", "IPv4", [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}],
           [endpoint("172.20.1.3", "node1", "coredns-5d78c-aaaa")], namespace="kube-system"),
    service("db", "None".split(), [{"name": "pg", "port": 5432, "protocol": "TCP"}], clusterIP="None"),
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "search", "namespace": "default"},
     "spec": {"type": "ExternalName", "externalName": "search.example.org"}},
    service("broken", ["10.254.0.60"], [{"name": "ok", "port": 80, "protocol": "TCP"},
                                        {"name": "bad", "port": 70000, "protocol": "TCP"}],
            annotations={"kube-router.io/service.scheduler": "rr\n-D -t 10.254.0.1:443"}),
    slice_("broken", "IPv4", [{"name": "ok", "port": 8080, "protocol": "TCP"}], web4),
]

class NoAliasDumper(yaml.SafeDumper):
    """kubectl never writes YAML anchors; shared Python objects must not become them."""

    def ignore_aliases(self, data):
        return True


doc = {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items}
out = Path(__file__).resolve().parent.parent / "examples" / "cluster.yaml"
out.write_text("# kubectl get services,endpointslices,nodes -A -o yaml (generated by scripts/make_example.py)\n"
               + yaml.dump(doc, Dumper=NoAliasDumper, sort_keys=False))
