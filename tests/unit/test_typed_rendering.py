"""Every token of every line kipvs writes comes from a typed value (issue 21).

The property: any string (line breaks, `%`, NUL, `EOF`, `COMMIT`, restore directives, shell) put into
any string field of any cluster object, or into any option, yields a `--dry-run` script that reads back
into exactly the planned rules: one command per line outside here-documents, restore input that holds
only KIPVS-* chains and single jumps from the built-in chains, and addresses that parse as scope-free
networks. The cluster is the lab's netfilter capture (dual stack, LoadBalancer with source ranges, local
endpoints for hairpin), so every renderer runs.
"""
from __future__ import annotations

import copy
import io
import ipaddress
import json
import re
import shlex
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kipvs.cli_options import PROXY, SOURCE
from kipvs.cluster import node_ips_of, find_node
from kipvs.config import NetfilterOptions, ProxyOptions
from kipvs.desired import build_desired
from kipvs.errors import ConfigError
from kipvs.facts.kernel import KernelFacts
from kipvs.netfilter.backend import NetfilterFacts
from kipvs.netfilter.rules import build_netfilter
from kipvs.netfilter.sync import plan_batches
from kipvs.plan import plan_sync
from kipvs.runner import Batch, BatchRefused, DryRunRunner, here_document_marker
from kipvs.sources import snapshot_from_objects
from tests.unit.fakes import FIXTURES
from tests.unit.test_hostile_input import paths, set_path

CAPTURE = json.loads((FIXTURES / "netfilter-node3.json").read_text())
NODE_IPS = {4: "192.168.123.249", 6: "fd00:123::249"}
LB_RANGES = ["192.168.201.0/24", "fd00:201::/64"]


def base_items() -> list[dict]:
    """The capture's cluster, with an IPv6 load-balancer IP and source range (the issue's first attack)."""
    items = copy.deepcopy(CAPTURE["cluster"]["items"])
    for item in items:
        if item["kind"] == "Service" and item["metadata"]["name"] == "ranged":
            item["spec"]["loadBalancerSourceRanges"].append("fd00:123::/64")
            item["spec"]["clusterIPs"].append("fd00:254::1:4")
            item["status"]["loadBalancer"]["ingress"].append({"ip": "fd00:201::30"})
    return items


def is_network(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
        return True
    except ValueError:
        return False


BASE = base_items()
def value_at(item, path):
    for key in path:
        item = item[key]
    return item


STRING_FIELDS = [(i, path) for i, item in enumerate(BASE) for path in paths(item)
                 if isinstance(value_at(item, path), str)]

# Addresses and networks (cluster IPs, endpoints, node addresses, pod CIDRs, source ranges): where a
# scope id or a line break would have to hide, so they get examples of their own.
NETWORK_FIELDS = [(i, path) for i, path in STRING_FIELDS if is_network(value_at(BASE[i], path))]
EVIL = ["\n", "\nCOMMIT\n*filter\n-I INPUT 1 -j ACCEPT\n-P INPUT ACCEPT\n", "%eth0", "%x\nEOF\ntouch /tmp/pwned\n",
        "\x00", "EOF", "\nEOF\n", "COMMIT", "\r\n-F INPUT", " -j ACCEPT", "'", "$(reboot)", "\n-A KIPVS-INPUT -j ACCEPT",
        "%", "%25", "/64\n-F", "\t"]
evil = st.one_of(st.sampled_from(EVIL), st.text(max_size=24))


def inserted(data, original: str) -> str:
    """`original` with an evil string instead of it, after it, before its prefix length (where a scope id
    goes: `fd00::%x/64`) or anywhere in it."""
    payload = data.draw(evil)
    slash = original.find("/")
    at = data.draw(st.sampled_from(["instead", "after", "before the prefix", "anywhere"]))
    if at == "instead":
        return payload
    if at == "after" or (at == "before the prefix" and slash < 0):
        return original + payload
    if at == "before the prefix":
        return original[:slash] + payload + original[slash:]
    where = data.draw(st.integers(0, len(original)))
    return original[:where] + payload + original[where:]



def options(**netfilter) -> ProxyOptions:
    return ProxyOptions(external_ip_ranges=(ipaddress.ip_network("192.168.200.0/24"),),
                        loadbalancer_ip_ranges=tuple(ipaddress.ip_network(n) for n in LB_RANGES),
                        netfilter=NetfilterOptions(mode="legacy", **netfilter))


def planned(items: list[dict], opts: ProxyOptions, node_ips: dict[int, str] | None = None):
    """(every batch a dry run of an empty node prints, the wanted netfilter rulesets)."""
    snapshot = snapshot_from_objects(items, "test")
    ips = node_ips if node_ips is not None else node_ips_of(find_node(snapshot.nodes, "node3"), []) or NODE_IPS
    desired = build_desired(snapshot, "node3", ips, opts)
    plan = plan_sync(desired, KernelFacts(), opts)
    want = build_netfilter(desired, snapshot, "node3", opts.netfilter)
    batches = plan.batches + plan_batches(want.rulesets, NetfilterFacts("legacy", {4: {}, 6: {}}), Counter())
    return batches, want.rulesets


def dry_run_script(batches) -> list[str]:
    out = io.StringIO()
    DryRunRunner(out=out).apply(batches)
    text = out.getvalue()
    assert text.endswith("\n") or not text
    return text.split("\n")[:-1]


ADDRESS = r"[0-9a-f.:]+"
COMMAND = re.compile(
    rf"ip (link add kube-dummy-if type dummy|link set kube-dummy-if up|addr add {ADDRESS}/(32|128) dev kube-dummy-if"
    rf"( nodad)?|route (replace|append) local {ADDRESS} dev kube-dummy-if proto kernel scope host src {ADDRESS} "
    rf"table local)"
    rf"|ipvsadm -[Aa] (-t|-u|--sctp-service) (\[{ADDRESS}\]|{ADDRESS}):\d+( -s [a-z]+( -b [a-z-]+(,[a-z-]+)*)?"
    rf"( -p \d+)?)?( -r (\[{ADDRESS}\]|{ADDRESS}):\d+ -m -w \d+)?"
    rf"|sysctl -w net\.ipv4\.(vs|conf\.all)\.[a-z_]+=\d")
HERE_DOCUMENT = re.compile(r"(ip6?tables)-legacy-restore -w --noflush <<'(EOF\d*)'")
WORDS = {"-m", "-j", "-p", "-s", "-d", "--dport", "--vdir", "--vmethod", "--vaddr", "--vport", "--comment",
         "--to-source", "--src-type", "--ctstate", "--reject-with", "comment", "ipvs", "addrtype", "conntrack",
         "tcp", "udp", "sctp", "icmp", "ipv6-icmp", "ORIGINAL", "MASQ", "MASQUERADE", "SNAT", "RETURN", "DROP",
         "REJECT", "LOCAL", "NEW", "icmp-port-unreachable", "icmp6-port-unreachable",
         "kipvs: masquerade and hairpin", "kipvs: service address firewall"}
CHAINS = {"nat": "KIPVS-POSTROUTING", "filter": "KIPVS-INPUT"}
BUILT_IN = {"nat": "POSTROUTING", "filter": "INPUT"}


def check_token(token: str) -> None:
    if token in WORDS or token.isdigit() or token in CHAINS.values():
        return
    assert "%" not in token and re.fullmatch(r"[0-9a-f.:]+(/\d+)?", token), token
    network = ipaddress.ip_network(token, strict=False)
    assert network_text(network, token) == token, token


def network_text(network, token: str) -> str:
    return str(network) if "/" in token else str(network.network_address)


def read_restore(body: list[str]) -> tuple[dict, set]:
    """A restore document -> ({(table, chain): rules}, {(table, built-in chain, rule)}), checking every line."""
    chains: dict[tuple[str, str], list[str]] = {}
    jumps = set()
    table = None
    for line in body:
        if line in ("*nat", "*filter"):
            assert table is None, body
            table = line[1:]
        elif line == "COMMIT":
            assert table is not None, body
            table = None
        elif m := re.fullmatch(r":(KIPVS-[A-Z]+) - \[0:0\]", line):
            assert m[1] == CHAINS[table]
            chains.setdefault((table, m[1]), [])
        elif m := re.fullmatch(r"-A (KIPVS-[A-Z]+) (.+)", line):
            assert m[1] == CHAINS[table] and (table, m[1]) in chains, line
            for token in shlex.split(m[2]):
                check_token(token)
            chains[(table, m[1])].append(m[2])
        elif m := re.fullmatch(r"-I ([A-Z]+) 1 (.+)", line):
            tokens = shlex.split(m[2])
            assert m[1] == BUILT_IN[table] and tokens.count("-j") == 1 and tokens[-1] == CHAINS[table], line
            for token in tokens:
                check_token(token)
            jumps.add((table, m[1], m[2]))
        else:
            raise AssertionError(f"not a planned restore line: {line!r}")
    assert table is None, body
    return chains, jumps


def assert_reads_back_exactly(batches, rulesets) -> None:
    lines = dry_run_script(batches)
    commands, documents = [], {}
    it = iter(lines)
    for line in it:
        m = HERE_DOCUMENT.fullmatch(line)
        if not m:
            assert COMMAND.fullmatch(line), line
            commands.append(line)
            continue
        body = []
        for inner in it:
            if inner == m[2]:
                break
            body.append(inner)
        else:
            raise AssertionError("a here-document that never ends")
        documents[6 if m[1] == "ip6tables" else 4] = read_restore(body)
    # One command per planned line: nothing was split, nothing added.
    assert commands == [line for b in batches if not b.tool.endswith("-restore") for line in b.command_lines()]
    for family in (4, 6):
        chains, jumps = documents.get(family, ({}, set()))
        want = rulesets[family]
        assert {key: tuple(rules) for key, rules in chains.items()} == dict(want.chains)
        assert jumps == {(j.table, j.chain, j.rule) for j in want.jumps}


def test_the_unchanged_cluster_reads_back_exactly_with_both_families():
    batches, rulesets = planned(base_items(), options())
    assert_reads_back_exactly(batches, rulesets)
    assert any(rule.startswith("-s fd00:123::/64 ") for rule in rulesets[6].chains[("filter", "KIPVS-INPUT")])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(where=st.sampled_from(STRING_FIELDS), data=st.data())
def test_any_string_in_any_field_reads_back_into_exactly_the_planned_rules(where, data):
    check_field(where, data)


def check_field(where, data):
    index, path = where
    items = base_items()
    set_path(items[index], path, inserted(data, value_at(items[index], path)))
    batches, rulesets = planned(items, options())
    assert_reads_back_exactly(batches, rulesets)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(where=st.sampled_from(NETWORK_FIELDS), data=st.data())
def test_any_string_in_an_address_or_network_field_reads_back_into_exactly_the_planned_rules(where, data):
    check_field(where, data)


# Every string option of sync, its valid value beside it.
OPTION_VALUES = {
    "interface": "kube-dummy-if", "scheduler": "rr", "service_node_port_range": "30000-32767",
    "service_external_ip_range": ["192.168.200.0/24"], "loadbalancer_ip_range": list(LB_RANGES),
    "excluded_cidrs": ["10.99.0.0/16"], "service_cluster_ip_range": ["10.254.0.0/16", "fd00:254::/108"],
    "iptables_mode": "legacy", "cluster_cidr": ["172.20.0.0/16", "fd00:20::/56"], "ipvs_graceful_termination": "true",
    "ipvs_graceful_period": "30s", "drain_record": "/run/kipvs-draining.json", "ipvs_tcp_timeout": "0",
    "ipvs_tcpfin_timeout": "0", "ipvs_udp_timeout": "0", "ipvs_strict_arp": "true",
}
SOURCE_VALUES = {"node_name": "node3", "node_ip": ["192.168.123.249", "fd00:123::249"]}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(OPTION_VALUES) + sorted(SOURCE_VALUES)), data=st.data())
def test_any_string_in_any_option_is_refused_in_one_line_or_reads_back_exactly(name, data):
    proxy, source = copy.deepcopy(OPTION_VALUES), copy.deepcopy(SOURCE_VALUES)
    values = proxy if name in proxy else source
    if isinstance(values[name], list):
        i = data.draw(st.integers(0, len(values[name]) - 1))
        values[name][i] = inserted(data, values[name][i])
    else:
        values[name] = inserted(data, values[name])
    try:
        opts = PROXY.build(proxy)
        node = SOURCE.build(source)
    except ConfigError as exc:
        assert "\n" not in str(exc).replace("\n", " ")  # the CLI prints it on one line
        return
    if opts.interface != "kube-dummy-if" or node.node_name != "node3":
        assert re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", opts.interface) and "\n" not in node.node_name
        return  # another name, equally safe: the line grammar above names kube-dummy-if
    ips = {6 if ":" in ip else 4: ip for ip in node.node_ips}
    batches, rulesets = planned(base_items(), opts, ips)
    assert_reads_back_exactly(batches, rulesets)


@pytest.mark.parametrize("value", ["fd00::%x\nCOMMIT\n*filter\n-I INPUT 1 -j ACCEPT\nCOMMIT\n/64", "fd00:1::%eth0/64",
                                   "10.0.0.0%1/8"])
def test_a_scope_id_in_a_cidr_option_is_one_line_naming_it(value):
    with pytest.raises(ConfigError, match="scope id"):
        PROXY.build({**OPTION_VALUES, "cluster_cidr": [value]})


@pytest.mark.parametrize("field", ["podCIDRs", "loadBalancerSourceRanges"])
def test_a_scope_id_in_a_cluster_network_is_a_problem_line_and_the_rest_still_renders(field):
    items = base_items()
    value = "fd00:123::%x\nEOF\ntouch pwned\nCOMMIT/64"
    for item in items:
        if field == "podCIDRs" and item["kind"] == "Node" and item["metadata"]["name"] == "node3":
            item["spec"]["podCIDRs"].append(value)
        if field == "loadBalancerSourceRanges" and item["kind"] == "Service" and item["metadata"]["name"] == "ranged":
            item["spec"]["loadBalancerSourceRanges"].append(value)
    snapshot = snapshot_from_objects(items, "test")
    desired = build_desired(snapshot, "node3", NODE_IPS, options())
    want = build_netfilter(desired, snapshot, "node3", options().netfilter)
    [problem] = [str(p) for p in want.problems]
    assert f"{field}[" in problem and "IPv6 scope id" in problem and "\n" not in problem
    batches, rulesets = planned(items, options())
    assert_reads_back_exactly(batches, rulesets)
    assert rulesets[6].chains[("nat", "KIPVS-POSTROUTING")][-1] == "-j SNAT --to-source fd00:123::249"


def test_here_document_markers_are_never_a_line_of_their_body():
    assert here_document_marker(["*nat", "COMMIT"]) == "EOF"
    assert here_document_marker(["EOF", "EOF1", "x"]) == "EOF2"
    lines = Batch("iptables-legacy-restore", ("*nat", "EOF", "COMMIT")).command_lines()
    assert lines == ["iptables-legacy-restore -w --noflush <<'EOF1'", "*nat", "EOF", "COMMIT", "EOF1"]


@pytest.mark.parametrize("line", ["addr add 10.0.0.1/32 dev x\nlink del eth0", "a\x00b", "a\rb"])
@pytest.mark.parametrize("tool", ["ip", "ipvsadm", "iptables-legacy-restore"])
def test_a_line_that_would_read_as_two_is_refused_by_every_runner(tool, line):
    batch = Batch(tool, ("link set x up", line))
    with pytest.raises(BatchRefused):
        batch.text()
    out = io.StringIO()
    with pytest.raises(BatchRefused):
        DryRunRunner(out=out).apply([batch])
    assert out.getvalue() == ""


def test_the_dry_run_piped_into_sh_runs_exactly_the_planned_commands_and_nothing_else(tmp_path):
    """`kipvs sync --dry-run | sh` with the issue's payloads in the cluster: the shell (the real one, with
    recording stand-ins for the tools on PATH) runs each printed command once and no other."""
    import subprocess

    from tests.unit.fakes import RecordingRunner, invoke
    from tests.unit.kernel_states import node_state

    payload = "%x\nCOMMIT\nEOF\ntouch pwned\n*filter\n-I INPUT 1 -j ACCEPT\nCOMMIT\n"
    items = base_items()
    for item in items:
        if item["kind"] == "Node" and item["metadata"]["name"] == "node3":
            item["spec"]["podCIDRs"].append(f"fd00:20:3::{payload}/64")
        if item["kind"] == "Service" and item["metadata"]["name"] == "ranged":
            item["spec"]["loadBalancerSourceRanges"].append(f"fd00:123::{payload}/64")
            item["metadata"]["annotations"] = {"kube-router.io/service.scheduler": "rr\nEOF\ntouch pwned"}
    (tmp_path / "c.json").write_text(json.dumps({"kind": "List", "items": items}))

    def factory(dry_run, timeout, out=None):
        state = dict(node_state(), **{"iptables-legacy-save": "", "ip6tables-legacy-save": ""})
        return RecordingRunner(state, dry_run=dry_run, out=out)
    result = invoke(["sync", "--dry-run", "-f", str(tmp_path / "c.json"), "--node-name", "node3", "--iptables-mode",
                     "legacy", "--service-external-ip-range", "192.168.200.0/24",
                     *[arg for cidr in LB_RANGES for arg in ("--loadbalancer-ip-range", cidr)]], factory)
    assert result.exit_code == 0, result.stderr
    assert result.stderr.count("IPv6 scope id") == 2 and "unknown scheduler" in result.stderr
    script = result.stdout
    assert "ip6tables-legacy-restore -w --noflush <<'EOF'" in script

    stubs, log = tmp_path / "bin", tmp_path / "ran"
    stubs.mkdir()
    for tool in ("ip", "ipvsadm", "sysctl", "iptables-legacy-restore", "ip6tables-legacy-restore"):
        body = '/bin/cat >> "$LOG"\n' if tool.endswith("-restore") else ""
        (stubs / tool).write_text(f'#!/bin/sh\nprintf "%s\\n" "{tool} $*" >> "$LOG"\n{body}')
        (stubs / tool).chmod(0o755)
    ran = subprocess.run(["/bin/sh"], input=script, cwd=tmp_path, env={"PATH": str(stubs), "LOG": str(log)},
                         capture_output=True, text=True, timeout=30)
    assert ran.returncode == 0 and ran.stderr == "", ran.stderr
    expected = []
    for line in script.splitlines():
        m = HERE_DOCUMENT.fullmatch(line)
        if m:
            expected.append(line.split(" <<")[0])
        elif not re.fullmatch(r"EOF\d*", line):
            expected.append(line)
    assert log.read_text().splitlines() == expected
    assert not (tmp_path / "pwned").exists()
