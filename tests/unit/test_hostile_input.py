"""Hostile cluster input, through the whole CLI (in-process, the runner seam answering for an empty node).

Every case asserts the contract: an object-level problem is one line naming kind, namespace/name and
field, the canary Service is still programmed and the exit status is 0; a whole-input problem is one
line with exit status 2 and nothing planned. Never a traceback; every stdout line a well-formed command.
"""
from __future__ import annotations

import copy
import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kipvs.desired import build_desired
from kipvs.facts.kernel import KernelFacts
from kipvs.plan import plan_sync
from kipvs.config import ProxyOptions
from kipvs.sources import snapshot_from_objects
from tests.unit.fakes import RecordingRunner, invoke
from tests.unit.kernel_states import node_state

NODE_IP = "192.168.123.249"
CANARY_LINE = "ipvsadm -A -t 10.96.0.10:80 -s rr"
COMMAND = re.compile(
    r"^(ip (link (add|set|del) kube-dummy-if( type dummy| up)?|addr (add|del) [0-9a-f.:]+/\d+ dev kube-dummy-if( nodad)?"
    r"|route (replace|append|del) local [0-9a-f.:]+ dev kube-dummy-if .*table local.*)"
    r"|ipvsadm -[AEaedD] (-t|-u|--sctp-service) [0-9a-f.:\[\]]+:\d+( -s [a-z]+( -b [a-z-]+(,[a-z-]+)*)?( -p \d+)?)?"
    r"( -r [0-9a-f.:\[\]]+:\d+( -m -w \d+)?)?"
    r"|sysctl -w net\.ipv4\.(vs|conf\.all)\.[a-z_]+=\d)$")


def cluster() -> dict:
    """A canary Service that must always be programmed, and a victim Service (with its slice) to break."""
    def service(namespace, name, ip, **spec):
        return {"kind": "Service", "apiVersion": "v1",
                "metadata": {"name": name, "namespace": namespace, "labels": {"app": name},
                             "annotations": {"kube-router.io/service.scheduler": "rr"}},
                "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip],
                         "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}], **spec},
                "status": {"loadBalancer": {}}}

    def endpoint_slice(namespace, name, ip):
        return {"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1", "addressType": "IPv4",
                "metadata": {"name": f"{name}-abc", "namespace": namespace,
                             "labels": {"kubernetes.io/service-name": name}},
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                "endpoints": [{"addresses": [ip], "conditions": {"ready": True, "serving": True, "terminating": False},
                               "nodeName": "node3", "targetRef": {"kind": "Pod", "name": f"{name}-pod"}}]}

    victim = service("hostile", "victim", "10.96.0.20", type="LoadBalancer", externalIPs=["10.50.0.1"],
                     sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}},
                     externalTrafficPolicy="Cluster")
    victim["spec"]["ports"][0]["nodePort"] = 30080
    victim["status"] = {"loadBalancer": {"ingress": [{"ip": "10.60.0.1"}]}}
    return {"apiVersion": "v1", "kind": "List", "items": [
        service("default", "canary", "10.96.0.10"), endpoint_slice("default", "canary", "10.1.0.5"),
        victim, endpoint_slice("hostile", "victim", "10.1.0.6"),
        {"kind": "Node", "apiVersion": "v1", "metadata": {"name": "node3"},
         "status": {"addresses": [{"type": "InternalIP", "address": NODE_IP}]}}]}


VICTIM, VICTIM_SLICE, NODE = 2, 3, 4


def sync(path, *extra, env=None, stdin=None):
    def factory(dry_run, timeout, out=None):
        return RecordingRunner(node_state(), dry_run=dry_run, out=out)
    args = ["sync", "--dry-run", "-f", str(path), "--node-name", "node3",
            "--service-external-ip-range", "10.50.0.0/16", "--loadbalancer-ip-range", "10.60.0.0/16", *extra]
    return invoke(args, factory, env=env, input=stdin)


def assert_no_crash(result):
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


def set_path(obj, path, value):
    *parents, last = path
    for key in parents:
        obj = obj[key]
    obj[last] = value


# (description, item index, path inside it, hostile value, the text the problem line must name)
OBJECT_CASES = [
    ("clusterIPs as a string", VICTIM, ("spec", "clusterIPs"), "10.96.0.34", "Service hostile/victim: spec.clusterIPs"),
    ("externalIPs as a string", VICTIM, ("spec", "externalIPs"), "1.2.3.4", "Service hostile/victim: spec.externalIPs"),
    ("labels as a list", VICTIM, ("metadata", "labels"), ["a"], "Service hostile/victim: metadata.labels"),
    ("annotations as a list", VICTIM, ("metadata", "annotations"), ["a"],
     "Service hostile/victim: metadata.annotations"),
    ("spec as a list", VICTIM, ("spec",), [], "Service hostile/victim: spec"),
    ("metadata as a string", VICTIM, ("metadata",), "x", ": metadata: expected a map"),
    ("ports: [null]", VICTIM, ("spec", "ports"), [None], "Service hostile/victim: spec.ports[0]"),
    ("ports as a map", VICTIM, ("spec", "ports"), {"port": 80}, "Service hostile/victim: spec.ports"),
    ("ingress: [null]", VICTIM, ("status", "loadBalancer", "ingress"), [None],
     "Service hostile/victim: status.loadBalancer.ingress[0]"),
    ("ingress ip as a number", VICTIM, ("status", "loadBalancer", "ingress"), [{"ip": 5}],
     "Service hostile/victim: status.loadBalancer.ingress[0].ip"),
    ("name as a number", VICTIM, ("metadata", "name"), 123, "Service hostile/123: metadata.name"),
    ("namespace as a number", VICTIM, ("metadata", "namespace"), 7, "metadata.namespace"),
    ("kind as a number", VICTIM, ("kind",), 5, ": kind: 5 is not a kind"),
    ("port: true", VICTIM, ("spec", "ports", 0, "port"), True, "Service hostile/victim: spec.ports[0].port"),
    ("port as a string", VICTIM, ("spec", "ports", 0, "port"), "80", "Service hostile/victim: spec.ports[0].port"),
    ("nodePort as a string", VICTIM, ("spec", "ports", 0, "nodePort"), "30080",
     "Service hostile/victim: spec.ports[0].nodePort"),
    ("protocol as a number", VICTIM, ("spec", "ports", 0, "protocol"), 6,
     "Service hostile/victim: spec.ports[0].protocol"),
    ("timeoutSeconds: true", VICTIM, ("spec", "sessionAffinityConfig", "clientIP", "timeoutSeconds"), True,
     "Service hostile/victim: spec.sessionAffinityConfig.clientIP.timeoutSeconds"),
    ("sessionAffinityConfig as a string", VICTIM, ("spec", "sessionAffinityConfig"), "x",
     "Service hostile/victim: spec.sessionAffinityConfig"),
    ("type as a number", VICTIM, ("spec", "type"), 5, "Service hostile/victim: spec.type"),
    ("unknown type", VICTIM, ("spec", "type"), "Magic", "Service hostile/victim: spec.type"),
    ("externalTrafficPolicy as a list", VICTIM, ("spec", "externalTrafficPolicy"), [],
     "Service hostile/victim: spec.externalTrafficPolicy"),
    ("clusterIPs: [null]", VICTIM, ("spec", "clusterIPs"), [None], "Service hostile/victim: spec.clusterIPs[0]"),
    ("clusterIP garbage", VICTIM, ("spec", "clusterIPs"), ["10.96.0.999"], "Service hostile/victim: spec.clusterIPs[0]"),
    ("annotation value as a number", VICTIM, ("metadata", "annotations"), {"kipvs.io/scheduler": 5},
     "Service hostile/victim: metadata.annotations[kipvs.io/scheduler]"),
    ("endpoints: [null]", VICTIM_SLICE, ("endpoints",), [None], "EndpointSlice hostile/victim-abc: endpoints[0]"),
    ("endpoints as a map", VICTIM_SLICE, ("endpoints",), {"a": 1}, "EndpointSlice hostile/victim-abc: endpoints"),
    ("conditions as a list", VICTIM_SLICE, ("endpoints", 0, "conditions"), ["ready"],
     "EndpointSlice hostile/victim-abc: endpoints[0].conditions"),
    ("ready as a string", VICTIM_SLICE, ("endpoints", 0, "conditions", "ready"), "yes",
     "EndpointSlice hostile/victim-abc: endpoints[0].conditions.ready"),
    ("targetRef.name as a number", VICTIM_SLICE, ("endpoints", 0, "targetRef", "name"), 5,
     "EndpointSlice hostile/victim-abc: endpoints[0].targetRef.name"),
    ("slice port: true", VICTIM_SLICE, ("ports", 0, "port"), True, "EndpointSlice hostile/victim-abc: ports[0].port"),
    ("slice ports: [null]", VICTIM_SLICE, ("ports",), [None], "EndpointSlice hostile/victim-abc: ports[0]"),
    ("endpoint address not an IP", VICTIM_SLICE, ("endpoints", 0, "addresses"), ["pod.local"],
     "EndpointSlice hostile/victim-abc: endpoints[0].addresses[0]"),
    ("endpoint of the wrong family", VICTIM_SLICE, ("endpoints", 0, "addresses"), ["fd00::6"],
     "EndpointSlice hostile/victim-abc: endpoints[0].addresses[0]"),
    ("addressType as a number", VICTIM_SLICE, ("addressType",), 4, "EndpointSlice hostile/victim-abc: addressType"),
    ("service-name label as a number", VICTIM_SLICE, ("metadata", "labels"), {"kubernetes.io/service-name": 5},
     "EndpointSlice hostile/victim-abc: metadata.labels[kubernetes.io/service-name]"),
    ("node addresses as a string", NODE, ("status", "addresses"), "x", "Node default/node3: status.addresses"),
    ("node address not an IP", NODE, ("status", "addresses"), [{"type": "InternalIP", "address": "x"}],
     "Node default/node3: status.addresses[0].address"),
    # Special addresses (issue 21): refused with a line, whatever the field.
    *[(f"node address {ip}", NODE, ("status", "addresses"), [{"type": "InternalIP", "address": ip}],
       "Node default/node3: status.addresses[0].address: " + ip) for ip in
      ("127.0.0.1", "0.0.0.0", "::ffff:127.0.0.1", "169.254.169.254", "fe80::1", "224.0.0.1")],
    *[(f"endpoint {ip}", VICTIM_SLICE, ("endpoints", 0, "addresses"), [ip],
       f"EndpointSlice hostile/victim-abc: endpoints[0].addresses[0]: {ip} is") for ip in
      ("127.0.0.1", "0.0.0.0", "169.254.169.254", "169.254.1.1", "224.0.0.1")],
    *[(f"external IP {ip}", VICTIM, ("spec", "externalIPs"), [ip], f"Service hostile/victim: spec.externalIPs[0]: {ip}")
      for ip in ("::ffff:127.0.0.1", "::127.0.0.1", "169.254.169.254", "fd00:ec2::254")],
    ("cluster IP with a scope id", VICTIM, ("spec", "clusterIPs"), ["fe80::1%eth0"],
     "Service hostile/victim: spec.clusterIPs[0]: 'fe80::1%eth0' is not an IP address (it has an IPv6 scope id)"),
    ("cluster IP mapped loopback", VICTIM, ("spec", "clusterIPs"), ["::ffff:127.0.0.1"],
     "Service hostile/victim: spec.clusterIPs[0]: ::ffff:127.0.0.1 is a loopback address (IPv4-mapped form)"),
    ("LB ingress IP metadata", VICTIM, ("status", "loadBalancer", "ingress"), [{"ip": "169.254.169.254"}],
     "Service hostile/victim: status.loadBalancer.ingress[0].ip: 169.254.169.254 is the cloud metadata address"),
    ("healthCheckNodePort 22", VICTIM, ("spec", "healthCheckNodePort"), 22,
     "Service hostile/victim: spec.healthCheckNodePort: 22 is outside --service-node-port-range"),
    ("source range with a scope id", VICTIM, ("spec", "loadBalancerSourceRanges"),
     ["fd00::%x\nCOMMIT\n*filter\n-I INPUT 1 -j ACCEPT\nCOMMIT\n/64"],
     "Service hostile/victim: spec.loadBalancerSourceRanges[0]: 'fd00::%x\\nCOMMIT"),
    ("pod CIDR with a scope id", NODE, ("spec",), {"podCIDRs": ["fd00:1::%eth0/64", "172.20.3.0/24"]},
     "Node default/node3: spec.podCIDRs[0]: 'fd00:1::%eth0/64' is not a CIDR (it has an IPv6 scope id"),
]


@pytest.mark.parametrize("what,index,path,value,named", OBJECT_CASES, ids=[c[0] for c in OBJECT_CASES])
def test_one_hostile_field_is_one_line_and_the_canary_is_still_programmed(tmp_path, what, index, path, value,
                                                                          named):
    data = cluster()
    set_path(data["items"][index], path, value)
    cluster_file = tmp_path / "cluster.json"
    cluster_file.write_text(json.dumps(data))
    extra = ["--node-ip", NODE_IP] if index == NODE else []
    result = sync(cluster_file, *extra)
    assert_no_crash(result)
    assert result.exit_code == 0, result.stderr
    problems = [line for line in result.stderr.splitlines() if named in line]
    assert problems, result.stderr
    assert "problem(s) in cluster objects" in result.stderr
    lines = result.stdout.splitlines()
    assert CANARY_LINE in lines
    assert "ipvsadm -a -t 10.96.0.10:80 -r 10.1.0.5:8080 -m -w 1" in lines
    bad = [line for line in lines if not COMMAND.match(line)]
    assert bad == []
    assert "True" not in result.stdout


def test_bools_never_become_numbers_on_a_command_line(tmp_path):
    data = cluster()
    data["items"][VICTIM]["spec"]["ports"].append({"name": "b", "port": True, "protocol": "TCP"})
    data["items"][VICTIM_SLICE]["ports"][0]["port"] = True
    (tmp_path / "c.json").write_text(json.dumps(data))
    result = sync(tmp_path / "c.json")
    assert result.exit_code == 0 and ":True" not in result.stdout and ":1 " not in result.stdout
    # The victim's slice is unusable, so its virtual server has no real server; the canary's is intact.
    assert "ipvsadm -A -t 10.96.0.20:80 -s rr -p 60" in result.stdout.splitlines()


WHOLE_FILE_CASES = [
    ("not UTF-8", b"\xff\xfe\x00garbage", "not UTF-8"),
    ("binary garbage", bytes(range(256)) * 4, "not UTF-8"),
    ("NUL bytes", b"apiVersion: v1\x00\x00", "binary data"),
    ("YAML with a tab", b"apiVersion: v1\nkind: List\nitems:\n\t- kind: Service\n", "line 4, column 1"),
    ("deep YAML", b"a: " + b"[" * 100000 + b"]" * 100000, "nested too deeply"),
    ("deep YAML, brackets hidden behind quotes", b"a: " + b'["]",' * 5000 + b"]" * 5000, "nested too deeply"),
    ("deep block YAML", b"a:\n" + b"".join(b" " * (2 * i) + b"b:\n" for i in range(1, 2000)), "nested too deeply"),
    ("deep compact sequences", b"a: \n" + b"- " * 5000 + b"x\n", "nested too deeply"),
    ("deep JSON", b"{\"items\": " + b"[" * 100000 + b"]" * 100000 + b"}", "nested too deeply"),
    ("items: 5", b'{"kind": "List", "items": 5}', "no Service, EndpointSlice or Node"),
    ("empty", b"", "no Service, EndpointSlice or Node"),
    ("a scalar", b"42\n", "no Service, EndpointSlice or Node"),
    ("broken JSON", b'{"kind": "List", "items": [', "not valid JSON at line 1"),
    ("python tag", b"!!python/object/apply:os.system ['true']\n", "not valid YAML"),
    ("alias bomb", b"""a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
kind: List
items: [*i]
""", "alias bomb"),
    ("self-referencing alias", b"kind: List\nitems: &x [*x]\n", "alias"),
    ("services only", json.dumps({"kind": "List", "items": [cluster()["items"][0]]}).encode(),
     "no EndpointSlices, no Nodes"),
    ("no Node for this node", json.dumps({"kind": "List", "items": cluster()["items"][:4]}).encode(),
     "no Nodes"),
]


@pytest.mark.parametrize("what,content,message", WHOLE_FILE_CASES, ids=[c[0] for c in WHOLE_FILE_CASES])
def test_whole_input_problem_is_one_line_exit_2_and_nothing_planned(tmp_path, what, content, message):
    cluster_file = tmp_path / "cluster"
    cluster_file.write_bytes(content)
    result = sync(cluster_file)
    assert_no_crash(result)
    assert result.exit_code == 2
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("kipvs: error: ") and message in errors[0], result.stderr
    assert result.stdout == ""


def test_a_directory_stdin_and_size_limit(tmp_path, monkeypatch):
    result = sync(tmp_path)
    assert result.exit_code == 2 and "Is a directory" in result.stderr
    result = sync("-", stdin=json.dumps(cluster()))
    assert result.exit_code == 0 and CANARY_LINE in result.stdout.splitlines()
    monkeypatch.setattr("kipvs.sources.file.MAX_BYTES", 100)
    result = sync("-", stdin=json.dumps(cluster()))
    assert result.exit_code == 2 and "larger than 100 bytes" in result.stderr


def test_closed_stdin(monkeypatch):
    import io
    import sys

    from kipvs.errors import ClusterUnavailable
    from kipvs.sources.file import read_cluster_file

    closed = io.TextIOWrapper(io.BytesIO(b""))
    closed.close()
    monkeypatch.setattr(sys, "stdin", closed)
    with pytest.raises(ClusterUnavailable, match="closed"):
        read_cluster_file("-")


def test_allow_partial_lets_a_services_only_dump_through(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"kind": "List", "items": [cluster()["items"][0]]}))
    result = sync(tmp_path / "c.json", "--allow-partial", "--node-ip", NODE_IP)
    assert result.exit_code == 0 and CANARY_LINE in result.stdout.splitlines()


OPTION_CASES = [
    (["--node-ip", "garbage"], {}, "--node-ip 'garbage' is not an IP address"),
    ([], {"KIPVS_NODE_IP": "garbage"}, "--node-ip 'garbage' is not an IP address"),
    (["--command-timeout", "-5"], {}, "--command-timeout -5.0: expected a positive number"),
    (["--command-timeout", "nan"], {}, "--command-timeout nan: expected a positive number"),
    (["--api-timeout", "inf"], {}, "--api-timeout inf"),
    (["--node-ip", "127.0.0.1"], {}, "--node-ip '127.0.0.1' is a loopback address: not a node IP"),
    ([], {"KIPVS_NODE_IP": "::ffff:127.0.0.1"}, "is a loopback address (IPv4-mapped form)"),
    (["--node-ip", "169.254.169.254"], {}, "is the cloud metadata address"),
    (["--cluster-cidr", "fd00::%x\nEOF\ntouch pwned\n/64"], {}, "scope id"),
    ([], {"KIPVS_CLUSTER_CIDR": "fd00:1::%eth0/64"}, "--cluster-cidr 'fd00:1::%eth0/64' is not a CIDR (it has an IPv6"),
    (["--excluded-cidrs", "10.0.0.0/8,fd00::%1/64"], {}, "--excluded-cidrs 'fd00::%1/64'"),
    ([], {"KIPVS_INTERFACE": "eth0\n"}, "--interface 'eth0\\n': expected 1-15 characters"),
    ([], {"KIPVS_SCHEDULER": "rr\n"}, "--scheduler 'rr\\n': not an IPVS scheduler"),
    (["--node-name", "node3\nx"], {}, "not a Kubernetes node name"),
    (["--node-name", "node3,metadata.name!=x"], {}, "not a Kubernetes node name"),
]


@pytest.mark.parametrize("args,env,message", OPTION_CASES, ids=[" ".join(c[0]) or str(c[1]) for c in OPTION_CASES])
def test_bad_option_values_are_one_line_errors(tmp_path, args, env, message):
    (tmp_path / "c.json").write_text(json.dumps(cluster()))
    result = sync(tmp_path / "c.json", *args, env=env)
    assert_no_crash(result)
    assert result.exit_code == 2 and result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert message in result.stderr


@pytest.mark.parametrize("addr,message", [("garbage", "expected IP:PORT"), ("127.0.0.1:99999", "port 1-65535"),
                                          ("127.0.0.1:" + "9" * 5000, "port 1-65535"),
                                          ("[nope]:1", "not an IPv6 address")])
def test_bad_metrics_addresses(tmp_path, addr, message):
    result = invoke(["watch", "--metrics-addr", addr, "--kubeconfig", str(tmp_path / "none"),
                     "--lock-file", str(tmp_path / "lock")])
    assert_no_crash(result)
    assert result.exit_code == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_lock_file_in_a_missing_directory_and_not_root(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps(cluster()))
    result = invoke(["sync", "-f", str(tmp_path / "c.json"), "--node-name", "node3",
                     "--lock-file", str(tmp_path / "missing" / "lock")])
    assert result.exit_code == 2 and "does not exist" in result.stderr and "Traceback" not in result.stderr
    result = invoke(["sync", "-f", str(tmp_path / "c.json"), "--node-name", "node3"], privileged=False)
    assert result.exit_code == 2
    assert result.stderr.strip() == "kipvs: error: kipvs must run as root (or with CAP_NET_ADMIN)"


# --- property: any value anywhere in the victim never crashes and never costs the canary ---------------

junk = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
              st.text(max_size=20), st.sampled_from(["10.96.0.10", "fd00::1", "None", "[bold]x[/]", "TCP", "Local"])),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(st.text(max_size=8), children,
                                                                              max_size=3)),
    max_leaves=6)


def paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from paths(value, prefix + (key,))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from paths(value, prefix + (i,))


VICTIM_PATHS = [(VICTIM, p) for p in paths(cluster()["items"][VICTIM]) if p] + \
    [(VICTIM_SLICE, p) for p in paths(cluster()["items"][VICTIM_SLICE]) if p]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(where=st.sampled_from(VICTIM_PATHS), value=junk)
def test_any_value_at_any_path_never_crashes_and_keeps_the_canary(where, value):
    index, path = where
    data = copy.deepcopy(cluster())
    set_path(data["items"][index], path, value)
    snapshot = snapshot_from_objects(data["items"], "hypothesis")
    options = ProxyOptions(external_ip_ranges=(), strict_external_ip_validation=True)
    desired = build_desired(snapshot, "node3", {4: NODE_IP}, options)
    assert ("tcp", "10.96.0.10", 80) in {vs.key for vs in desired.virtual_servers}
    for line in plan_sync(desired, KernelFacts(), options).command_lines():
        assert COMMAND.match(line), line
    for problem in desired.problems:
        assert "\n" not in str(problem)


@pytest.mark.parametrize("value", ["9" * 400, "9" * 400 + "s", "1" * 100000 + "s", "inf", "nan"])
def test_a_duration_is_finite_and_short(tmp_path, value):
    (tmp_path / "c.json").write_text(json.dumps(cluster()))
    result = sync(tmp_path / "c.json", "--ipvs-graceful-period", value)
    assert_no_crash(result)
    assert result.exit_code == 2 and "--ipvs-graceful-period" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and len(result.stderr) < 300
