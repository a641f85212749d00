"""Netfilter: save parser, desired rules, restore plan (minimal, owned-only), backend detection,
problems from bad pod CIDRs and source ranges. Facts are the real tools' output captured in the lab."""
import copy
import io
import ipaddress
import json
from collections import Counter
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kipvs.cluster import Problem
from kipvs.commands.show import show
from kipvs.environment import Environment
from kipvs.config import NetfilterOptions, ProxyOptions
from kipvs.desired import build_desired
from kipvs.errors import CommandFailed, ConfigError, ToolMissing
from kipvs.facts.iptables import SaveFormatError, parse_save, rule_count, target_of
from kipvs.facts.ipset import IpsetFormatError, parse_ipset_save
from kipvs.netfilter.backend import NetfilterFacts, NetfilterUnavailable, detect
from kipvs.netfilter.leftovers import kube_router_restore_lines, kube_router_sets, leftovers
from kipvs.netfilter.plan import restore_lines
from kipvs.netfilter.backend import random_fully_supported
from kipvs.netfilter.rules import FILTER_CHAIN, MARK_CHAIN, NAT_CHAIN, build_netfilter
from kipvs.netfilter.sync import plan_batches, remove_kube_router_leftovers
from kipvs.runner import Batch, Runner
from kipvs.sources import snapshot_from_objects
from kipvs.reconcile import NodeIdentity, sync_once
from kipvs.render import print_show
from tests.unit.fakes import FIXTURES, RecordingRunner
from tests.unit.kernel_states import node_state

CAPTURE = json.loads((FIXTURES / "netfilter-node3.json").read_text())
SAVES = CAPTURE["outputs"]
NODE_IPS = {4: "192.168.123.249", 6: "fd00:123::249"}
RANGES = dict(external_ip_ranges=(ipaddress.ip_network("192.168.200.0/24"),),
              loadbalancer_ip_ranges=(ipaddress.ip_network("192.168.201.0/24"),))


def snapshot(items=None):
    return snapshot_from_objects(items if items is not None else copy.deepcopy(CAPTURE["cluster"]["items"]), "test")


def wanted(items=None, **options):
    snap = snapshot(items)
    desired = build_desired(snap, "node3", NODE_IPS, ProxyOptions(**RANGES))
    return build_netfilter(desired, snap, "node3", NetfilterOptions(**options))


def kernel(family):
    return parse_save(SAVES[f"{'ip6' if family == 6 else 'ip'}tables-legacy-save"])


def kernel_sets():
    return parse_ipset_save(SAVES["ipset save"], "KIPVS-")


def facts():
    owned, names = kernel_sets()
    return NetfilterFacts("legacy", {4: kernel(4), 6: kernel(6)}, owned, tuple(names))


# --- the parser --------------------------------------------------------------

def test_parse_save_keeps_every_chain_and_rule_in_order():
    nat, filt = kernel(4)["nat"], kernel(4)["filter"]
    assert nat.policies["POSTROUTING"] == "ACCEPT" and nat.policies[NAT_CHAIN] == "-"
    assert nat.chain("POSTROUTING") == (
        '-m comment --comment "kipvs: masquerade and hairpin" -m ipvs --vdir ORIGINAL --vmethod MASQ '
        '-j KIPVS-POSTROUTING', "-s 10.99.0.0/16 -j MASQUERADE")
    assert filt.chain("USER-CHAIN") == () and "USER-CHAIN" in filt.policies
    assert filt.chain("INPUT")[1] == "-p tcp -m tcp --dport 9999 -j USER-CHAIN"
    assert rule_count(SAVES["iptables-legacy-save"]) == 20  # 2 in INPUT, 5 in KIPVS-INPUT, 3 + 7 in nat, 1 + 2 in mangle
    assert parse_save(SAVES["iptables-nft-save"]) == {}


def test_target_of_reads_quoted_comments_and_goto():
    assert target_of('-m comment --comment "a -j X" -j KIPVS-INPUT') == "KIPVS-INPUT"
    assert target_of("-s 1.2.3.4/32 -g KIPVS-X") == "KIPVS-X"
    assert target_of("-p tcp") is None and target_of('-m comment --comment "open') is None


@pytest.mark.parametrize("text", ["-A INPUT -j ACCEPT\n", "*filter\nbogus line\nCOMMIT\n"])
def test_parse_save_refuses_what_is_not_a_save(text):
    with pytest.raises(SaveFormatError):
        parse_save(text)


# --- desired rules -----------------------------------------------------------

def test_desired_rules_and_set_members_are_exactly_what_the_kernel_printed_back():
    want = wanted()
    owned, _ = kernel_sets()
    for family in (4, 6):
        tables = kernel(family)
        for (table, chain), rules in want.rulesets[family].chains.items():
            assert tables[table].chain(chain) == rules, (family, table, chain)
        for name, base in want.rulesets[family].sets.names().items():
            assert owned[name].members == want.rulesets[family].sets.members[base], name
    assert want.problems == () and want.warnings == ()


def test_ipset_save_parser_reads_kipvs_sets_and_names_every_set():
    text = SAVES["ipset save"] + "create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536\n" \
        "add KUBE-CLUSTER-IP 10.96.0.1,tcp:443\n"
    owned, names = parse_ipset_save(text, "KIPVS-")
    assert "KUBE-CLUSTER-IP" in names and "KUBE-CLUSTER-IP" not in owned and len(owned) == 14
    assert owned["KIPVS-RANGED-SOURCES"].kind == "hash:ip,port,net"
    assert owned["KIPVS-HAIRPIN6"].family == "inet6"
    assert owned["KIPVS-RANGED-SOURCES"].members == {"192.168.201.30,tcp:80,192.168.123.100"}
    with pytest.raises(IpsetFormatError):
        parse_ipset_save("bogus line\n")


def test_the_rules_a_packet_meets_do_not_grow_with_services():
    """1,000 more Services: the same rules, only more set members."""
    items = copy.deepcopy(CAPTURE["cluster"]["items"])
    for i in range(1000):
        items.append({"kind": "Service", "metadata": {"name": f"many{i}", "namespace": "default"},
                      "spec": {"type": "ClusterIP", "clusterIP": f"10.255.{i // 250}.{i % 250 + 1}",
                               "ports": [{"name": "http", "protocol": "TCP", "port": 80}]}})
    small, large = wanted(), wanted(items)
    for family in (4, 6):
        assert small.rulesets[family].chains == large.rulesets[family].chains
    assert len(large.rulesets[4].sets.members["SERVICE-IPS"]) == len(small.rulesets[4].sets.members["SERVICE-IPS"]) + 1000


def test_a_new_service_adds_set_members_and_writes_no_rule():
    items = copy.deepcopy(CAPTURE["cluster"]["items"])
    items.append({"kind": "Service", "metadata": {"name": "new", "namespace": "default"},
                  "spec": {"type": "ClusterIP", "clusterIP": "10.254.9.9", "ports": [{"name": "dns", "protocol": "UDP",
                                                                                     "port": 53}]}})
    counts = Counter()
    batches = plan_batches(wanted(items).rulesets, facts(), counts)
    assert [b.tool for b in batches] == ["ipset"]
    assert batches[0].lines == ("add KIPVS-CLUSTER-IPS 10.254.9.9,udp:53", "add KIPVS-SERVICE-IPS 10.254.9.9",
                                "add KIPVS-SERVICE-PORTS 10.254.9.9,udp:53")
    assert counts == {"ipset members added": 3}


def test_set_members_written_cleanly_are_known_without_a_read_and_the_next_turn_reads_nothing():
    """Watch's event syncs: a new Service's set members, applied by a silent `ipset restore`, give the
    facts of the next turn; that turn plans from them and starts no save process."""
    from kipvs.netfilter.sync import sync_netfilter

    items = copy.deepcopy(CAPTURE["cluster"]["items"])
    items.append({"kind": "Service", "metadata": {"name": "new", "namespace": "default"},
                  "spec": {"type": "ClusterIP", "clusterIP": "10.254.9.9", "ports": [{"protocol": "UDP", "port": 53}]}})
    snap = snapshot(items)
    desired = build_desired(snap, "node3", NODE_IPS, ProxyOptions(**RANGES))
    runner = RecordingRunner(SAVES)
    outcome = sync_netfilter(runner, desired, snap, "node3", NetfilterOptions(mode="legacy"))
    assert [b.tool for b in outcome.batches] == ["ipset"] and outcome.remaining == []
    known = outcome.facts_after
    read_after_write = parse_ipset_save(SAVES["ipset save"] + "".join(f"{line}\n" for line in outcome.batches[0].lines),
                                        "KIPVS-")
    assert {n: (s.kind, s.family, s.members) for n, s in known.sets.items()} == \
        {n: (s.kind, s.family, s.members) for n, s in read_after_write[0].items()}
    assert sorted(known.set_names) == sorted(read_after_write[1]) and known.tables == facts().tables
    runner.reads.clear()
    again = sync_netfilter(runner, desired, snap, "node3", NetfilterOptions(mode="legacy"), known=known)
    assert again.batches == [] and runner.reads == [] and again.facts_after is not None
    # A restore that reported a failure is read back, and what it left is not carried either.
    failed = RecordingRunner(SAVES, stderr={"ipset": "ipset v7.17: Error in line 1: Set cannot be created\n"})
    outcome = sync_netfilter(failed, desired, snap, "node3", NetfilterOptions(mode="legacy"))
    assert outcome.remaining and outcome.facts_after is None and failed.reads.count("ipset save") == 2


def test_rules_restored_cleanly_are_known_as_the_real_save_shows_them():
    """A node with only its user's rules and sets, then kipvs's restores exiting 0 silently: the
    facts carried to the next turn are what the real iptables-save printed after that sync in the lab
    (the capture), user rules and their order included, so the next turn plans nothing and reads nothing."""
    from kipvs.netfilter.plan import tables_after
    from kipvs.netfilter.rules import Ruleset
    from kipvs.netfilter.sync import sync_netfilter

    captured = facts()
    users_only = {family: tables_after(Ruleset(), tables) for family, tables in captured.tables.items()}
    assert not any(name.startswith("KIPVS-") for tables in users_only.values() for t in tables.values()
                   for name in t.policies)
    before = NetfilterFacts("legacy", users_only, {}, tuple(n for n in captured.set_names if not n.startswith("KIPVS-")))
    snap = snapshot()
    desired = build_desired(snap, "node3", NODE_IPS, ProxyOptions(**RANGES))
    runner = RecordingRunner(SAVES)
    outcome = sync_netfilter(runner, desired, snap, "node3", NetfilterOptions(mode="legacy"), known=before)
    assert [b.tool for b in outcome.batches] == ["ipset", "iptables-legacy-restore", "ip6tables-legacy-restore"]
    assert runner.reads == [] and outcome.remaining == []
    assert outcome.facts_after.tables == captured.tables
    assert {n: s.members for n, s in outcome.facts_after.sets.items()} == {n: s.members for n, s in captured.sets.items()}
    again = sync_netfilter(runner, desired, snap, "node3", NetfilterOptions(mode="legacy"), known=outcome.facts_after)
    assert again.batches == [] and runner.reads == []


def test_converged_node_plans_nothing_and_the_empty_node_gets_sets_chains_and_jumps():
    want = wanted()
    assert plan_batches(want.rulesets, facts(), Counter()) == []
    counts = Counter()
    batches = plan_batches(want.rulesets, NetfilterFacts("nft", {4: {}, 6: {}}), counts)
    # One set restore (before the rules that use the sets), one restore per family.
    assert [b.tool for b in batches] == ["ipset", "iptables-nft-restore", "ip6tables-nft-restore"]
    assert batches[0].lines[0] == "create KIPVS-CLUSTER-IPS hash:ip,port family inet maxelem 1048576"
    assert batches[0].command_lines()[0] == "ipset create KIPVS-CLUSTER-IPS hash:ip,port family inet maxelem 1048576"
    lines = batches[1].lines
    assert lines[:3] == ("*filter", ":KIPVS-INPUT - [0:0]",
                         '-I INPUT 1 -m comment --comment "kipvs: service address firewall" -m set --match-set '
                         'KIPVS-SERVICE-IPS dst -j KIPVS-INPUT')
    assert counts["netfilter chains written"] == 8 and counts["netfilter jumps added"] == 8
    assert counts["ipsets created"] == 14
    assert batches[1].command_lines()[0] == "iptables-nft-restore --noflush <<'EOF'"
    assert batches[1].command_lines()[-1] == "EOF"


def test_one_changed_service_changes_set_members_only_and_never_a_users_rule():
    edited = copy.deepcopy(CAPTURE["cluster"]["items"])
    for item in edited:
        if item["kind"] == "Service" and item["metadata"]["name"] == "ext":
            item["spec"]["ports"][0]["port"] = 8081
    batches = plan_batches(wanted(edited).rulesets, facts(), Counter())
    assert [b.tool for b in batches] == ["ipset"]
    assert set(batches[0].lines) == {
        "add KIPVS-CLUSTER-IPS 10.254.1.3,tcp:8081", "del KIPVS-CLUSTER-IPS 10.254.1.3,tcp:80",
        "add KIPVS-EXTERNAL 192.168.200.30,tcp:8081", "del KIPVS-EXTERNAL 192.168.200.30,tcp:80",
        "add KIPVS-SERVICE-PORTS 10.254.1.3,tcp:8081", "del KIPVS-SERVICE-PORTS 10.254.1.3,tcp:80",
        "add KIPVS-SERVICE-PORTS 192.168.200.30,tcp:8081", "del KIPVS-SERVICE-PORTS 192.168.200.30,tcp:80"}


def test_nothing_wanted_removes_chains_and_jumps_then_the_sets():
    counts = Counter()
    lines = restore_lines(wanted([]).rulesets[4], kernel(4), counts)
    assert lines == [
        "*filter", ":KIPVS-INPUT - [0:0]",
        '-D INPUT -m comment --comment "kipvs: service address firewall" -m set --match-set KIPVS-SERVICE-IPS dst '
        '-j KIPVS-INPUT', "-X KIPVS-INPUT", "COMMIT",
        "*mangle", ":KIPVS-OUTPUT - [0:0]",
        '-D OUTPUT -m comment --comment "kipvs: source ranges for the node itself" -m set --match-set '
        'KIPVS-RANGED-PORTS dst,dst -j KIPVS-OUTPUT', "-X KIPVS-OUTPUT", "COMMIT",
        "*nat", ":KIPVS-POSTROUTING - [0:0]", ":KIPVS-SERVICES - [0:0]",
        '-D PREROUTING -m comment --comment "kipvs: service traffic to SNAT" -j KIPVS-SERVICES',
        '-D POSTROUTING -m comment --comment "kipvs: masquerade and hairpin" -m ipvs --vdir ORIGINAL --vmethod MASQ '
        '-j KIPVS-POSTROUTING', "-X KIPVS-POSTROUTING", "-X KIPVS-SERVICES", "COMMIT"]
    assert counts == {"netfilter chains removed": 4, "netfilter jumps removed": 4}
    batches = plan_batches(wanted([]).rulesets, facts(), Counter())
    assert [b.tool for b in batches] == ["iptables-legacy-restore", "ip6tables-legacy-restore", "ipset"]
    assert len(batches[-1].lines) == 14 and all(line.startswith("destroy KIPVS-") for line in batches[-1].lines)


def test_a_duplicated_jump_and_a_stray_kipvs_chain_are_removed():
    text = SAVES["iptables-legacy-save"].replace(
        "-A POSTROUTING -s 10.99.0.0/16", '-A POSTROUTING -m comment --comment "kipvs: masquerade and hairpin" '
        "-m ipvs --vdir ORIGINAL --vmethod MASQ -j KIPVS-POSTROUTING\n-A POSTROUTING -s 10.99.0.0/16").replace(
        ":KIPVS-POSTROUTING - [0:0]", ":KIPVS-POSTROUTING - [0:0]\n:KIPVS-OLD - [0:0]")
    lines = restore_lines(wanted().rulesets[4], parse_save(text), Counter())
    assert lines == ["*nat", ":KIPVS-OLD - [0:0]",
                     '-D POSTROUTING -m comment --comment "kipvs: masquerade and hairpin" -m ipvs --vdir ORIGINAL '
                     '--vmethod MASQ -j KIPVS-POSTROUTING', "-X KIPVS-OLD", "COMMIT"]


def test_masquerade_modes_mark_what_kube_proxy_masquerades():
    mark = lambda **o: wanted(**o).rulesets[4].chains[("nat", MARK_CHAIN)]  # noqa: E731
    external = "-m set --match-set KIPVS-EXTERNAL dst,dst -j MARK --set-xmark 0x4000/0x4000"
    cluster_ip = "-m set --match-set KIPVS-CLUSTER-IPS dst,dst -j MARK --set-xmark 0x4000/0x4000"
    # NodePort/external/LB traffic is marked before any local-traffic exception: a pod of another node too.
    assert mark() == (external, "-s 172.20.3.0/24 -j RETURN", cluster_ip)
    assert mark(masquerade_all=True) == (external, cluster_ip)
    cidrs = (ipaddress.ip_network("172.20.0.0/16"), ipaddress.ip_network("fd00:20::/48"))
    assert mark(cluster_cidrs=cidrs) == (external, "-s 172.20.0.0/16 -j RETURN", cluster_ip)
    assert mark(detect_local_mode="NodeCIDR", cluster_cidrs=cidrs)[1] == "-s 172.20.3.0/24 -j RETURN"
    assert mark(detect_local_mode="BridgeInterface", pod_bridge_interface="cbr0")[1] == "-i cbr0 -j RETURN"
    assert mark(detect_local_mode="InterfaceNamePrefix", pod_interface_name_prefix="cali")[1] == "-i cali+ -j RETURN"
    nat = wanted().rulesets[4].chains[("nat", NAT_CHAIN)]
    assert nat == ("-m set --match-set KIPVS-HAIRPIN dst,dst,src -j MASQUERADE --random-fully",
                   "-m mark ! --mark 0x4000/0x4000 -j RETURN", "-j MARK --set-xmark 0x0/0x4000",
                   "-j SNAT --to-source 192.168.123.249 --random-fully")
    snap = snapshot()
    desired = build_desired(snap, "node3", NODE_IPS, ProxyOptions(**RANGES))
    old_kernel = build_netfilter(desired, snap, "node3", NetfilterOptions(), random_fully=False)
    assert old_kernel.rulesets[4].chains[("nat", NAT_CHAIN)][-1] == "-j SNAT --to-source 192.168.123.249"


def test_the_kernel_release_decides_random_fully():
    assert random_fully_supported("6.1.0-57-amd64") and random_fully_supported("3.13.0")
    assert not random_fully_supported("3.12.74") and not random_fully_supported("unknown")


def test_without_a_detector_cluster_ip_traffic_is_not_snated_and_a_warning_says_why():
    no_pod_cidrs = copy.deepcopy(CAPTURE["cluster"]["items"])
    for item in no_pod_cidrs:
        if item["kind"] == "Node":
            del item["spec"]
    want = wanted(no_pod_cidrs)
    assert want.rulesets[4].chains[("nat", MARK_CHAIN)] == (
        "-m set --match-set KIPVS-EXTERNAL dst,dst -j MARK --set-xmark 0x4000/0x4000",)
    assert want.warnings == (
        "--detect-local-mode NodeCIDR: the Node has no spec.podCIDRs for IPv4/IPv6: pod traffic to ClusterIPs "
        "cannot be told from other traffic and none of it is SNATed (set --cluster-cidr, --detect-local-mode, "
        "or --masquerade-all)",)
    assert wanted(no_pod_cidrs, masquerade_all=True).warnings == ()
    assert "no --pod-bridge-interface" in wanted(detect_local_mode="BridgeInterface").warnings[0]
    assert "ClusterIP no SNAT (no local-traffic detector)" in want.services[("default", "np")].masquerade


def test_firewall_off_keeps_only_source_ranges():
    for family in (4, 6):
        rules = wanted(firewall=False).rulesets[family].chains[("filter", FILTER_CHAIN)]
        six = "6" if family == 6 else ""
        assert rules == (f"-m set --match-set KIPVS-RANGED-SOURCES{six} dst,dst,src -j RETURN",
                         f"-m set --match-set KIPVS-RANGED-PORTS{six} dst,dst -j DROP")


def test_source_ranges_bind_the_node_and_its_pods_too_and_a_whole_space_range_is_two_halves():
    members = wanted().rulesets[4].sets.members
    assert members["RANGED-SOURCES"] == {"192.168.201.30,tcp:80,192.168.123.100"}  # no pod CIDR, no node
    items = copy.deepcopy(CAPTURE["cluster"]["items"])
    for item in items:
        if item["kind"] == "Service" and item["metadata"]["name"] == "ranged":
            item["spec"]["loadBalancerSourceRanges"] = ["0.0.0.0/0", "10.1.0.0/16"]
    assert wanted(items).rulesets[4].sets.members["RANGED-SOURCES"] == {
        "192.168.201.30,tcp:80,0.0.0.0/1", "192.168.201.30,tcp:80,128.0.0.0/1", "192.168.201.30,tcp:80,10.1.0.0/16"}


def test_bad_pod_cidrs_and_source_ranges_are_problems_naming_object_and_field():
    items = copy.deepcopy(CAPTURE["cluster"]["items"])
    for item in items:
        if item["kind"] == "Node" and item["metadata"]["name"] == "node3":
            item["spec"]["podCIDRs"] = ["172.20.3.0/33", 7, "fd00:20:3::/64"]
        if item["kind"] == "Service" and item["metadata"]["name"] == "ranged":
            item["spec"]["loadBalancerSourceRanges"] = ["nonsense\x1b[31m", "192.168.123.100/32"]
    want = wanted(items)
    assert [str(p) for p in want.problems] == [
        "Node default/node3: spec.podCIDRs[0]: '172.20.3.0/33' is not a CIDR; skipped",
        "Node default/node3: spec.podCIDRs[1]: 7 is not a CIDR; skipped",
        "Service default/ranged: spec.loadBalancerSourceRanges[0]: 'nonsense\\x1b[31m' is not a CIDR; skipped"]
    # The rest still works: the good range stays, IPv6 still has its pod CIDR.
    assert want.rulesets[4].sets.members["RANGED-SOURCES"] == {"192.168.201.30,tcp:80,192.168.123.100"}
    assert "-s fd00:20:3::/64 -j RETURN" in want.rulesets[6].chains[("nat", MARK_CHAIN)]


def test_service_states_for_show():
    states = wanted().services
    assert states[("default", "local")].client_ip_kept and not states[("default", "np")].client_ip_kept
    node_wide = "ClusterIP SNAT unless from pods (NodeCIDR), NodePort/external/LB SNAT unless externalTrafficPolicy Local"
    assert {state.masquerade for state in states.values()} == {node_wide}  # node-wide: show prints it once
    assert states[("default", "ranged")].source_ranges == ("192.168.123.100/32",)
    assert wanted(firewall=False).services[("default", "np")].firewall == "off (--ipvs-permit-all)"


# --- backend detection -------------------------------------------------------

class Tools(Runner):
    """Answers saves per backend; a backend in `broken` fails its write probe; `missing` has no tools."""

    def __init__(self, saves, broken=(), missing=()):
        super().__init__()
        self.saves, self.broken, self.missing, self.calls = saves, broken, missing, []

    def run(self, argv, stdin=None):
        self.calls.append(" ".join(argv))
        if argv[0] == "ipset":
            return self.saves.get("ipset save", "")
        backend = argv[0].split("-")[1]
        if backend in self.missing:
            raise ToolMissing(f"{argv[0]} not found")
        if argv[0].endswith("restore"):
            if backend in self.broken:
                raise CommandFailed(argv, 4, "TABLE_ADD failed (Operation not supported)")
            return ""
        return self.saves.get(argv[0], "")


def test_the_backend_holding_rules_wins_without_a_probe():
    runner = Tools({"iptables-legacy-save": SAVES["iptables-legacy-save"]})
    assert detect(runner, "auto").backend == "legacy"
    assert not any("restore" in c for c in runner.calls)
    nft = Tools({"ip6tables-nft-save": SAVES["ip6tables-legacy-save"]})
    assert detect(nft, "auto").backend == "nft"


def test_an_empty_node_gets_nft_unless_the_kernel_refuses_it():
    assert detect(Tools({}), "auto").backend == "nft"
    assert detect(Tools({}, broken=("nft",)), "auto").backend == "legacy"
    assert detect(Tools({}, missing=("nft",)), "auto").backend == "legacy"
    with pytest.raises(NetfilterUnavailable, match="no usable iptables backend"):
        detect(Tools({}, broken=("nft", "legacy")), "auto")


def test_dry_runs_and_show_never_write_a_probe():
    runner = Tools({}, broken=("nft",))
    assert detect(runner, "auto", probe=False).backend == "nft"
    runner.dry_run = True
    assert detect(runner, "auto").backend == "nft"
    assert not any("restore" in c for c in runner.calls)


def test_after_a_restore_only_the_families_written_to_are_read_back():
    from kipvs.netfilter.sync import sync_netfilter

    class Applied(Tools):
        def apply(self, batches):
            self.calls += [batch.tool for batch in batches if batch.lines]
            return []

    v4_only = [item for item in CAPTURE["cluster"]["items"] if item.get("addressType") != "IPv6" and
               not any(":" in ip for ip in item.get("spec", {}).get("clusterIPs", []))]
    snap = snapshot(v4_only)
    desired = build_desired(snap, "node3", {4: NODE_IPS[4]}, ProxyOptions(**RANGES))
    runner = Applied({})  # an empty node: only the IPv4 tables get rules
    outcome = sync_netfilter(runner, desired, snap, "node3", NetfilterOptions(mode="legacy"))
    assert [b.tool for b in outcome.batches] == ["ipset", "iptables-legacy-restore"]
    assert runner.calls == ["iptables-legacy-save", "ip6tables-legacy-save", "ipset save", "ipset",
                            "iptables-legacy-restore", "iptables-legacy-save", "ipset save"]


def test_a_forced_mode_is_used_or_reported():
    assert detect(Tools({}, broken=("nft",)), "nft").backend == "nft"  # forced: the write will say why
    with pytest.raises(NetfilterUnavailable, match="legacy"):
        detect(Tools({}, missing=("legacy",)), "legacy")


def test_leftovers_of_kube_router_and_kube_proxy_are_named():
    text = "*filter\n:INPUT ACCEPT [0:0]\n:KUBE-ROUTER-SERVICES - [0:0]\n:KUBE-FIREWALL - [0:0]\nCOMMIT\n" \
           "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-ABC - [0:0]\nCOMMIT\n"
    found = leftovers(NetfilterFacts("legacy", {4: parse_save(text), 6: {}}))
    assert found == ["IPv4 filter KUBE-ROUTER-SERVICES (kube-router)", "IPv4 nat KUBE-SERVICES (kube-proxy)",
                     "IPv4 nat KUBE-SVC-ABC (kube-proxy)"]


def test_restore_batches_print_as_a_here_document():
    batch = Batch("ip6tables-legacy-restore", ("*nat", "COMMIT"))
    assert batch.command_lines() == ["ip6tables-legacy-restore -w --noflush <<'EOF'", "*nat", "COMMIT", "EOF"]


def test_problem_type_is_the_clusters():
    assert isinstance(wanted().problems, tuple) and all(isinstance(p, Problem) for p in wanted().problems)
    assert replace(NetfilterOptions(), mode="nft").mode == "nft"


# --- hostile input, and sync's contract ----------------------------------------

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)


@settings(max_examples=150, deadline=None)
@given(ranges=JSON, pod_cidrs=JSON, pod_cidr=JSON)
def test_any_value_in_source_ranges_or_pod_cidrs_gives_rules_or_one_line_problems(ranges, pod_cidrs, pod_cidr):
    items = copy.deepcopy(CAPTURE["cluster"]["items"])
    for item in items:
        if item["kind"] == "Node" and item["metadata"]["name"] == "node3":
            item["spec"] = {"podCIDRs": pod_cidrs, "podCIDR": pod_cidr}
        if item["kind"] == "Service" and item["metadata"]["name"] == "ranged":
            item["spec"]["loadBalancerSourceRanges"] = ranges
    want = wanted(items)
    assert all("\n" not in str(p) and str(p).startswith(("Node default/node3: spec", "Service default/ranged: spec"))
               for p in want.problems)
    assert want.rulesets[4].chains[("nat", NAT_CHAIN)][-1] == "-j SNAT --to-source 192.168.123.249 --random-fully"


def test_sync_writes_netfilter_after_ipvs_and_verifies_it_by_reading_back():
    state = dict(node_state(), **{"iptables-legacy-save": "", "ip6tables-legacy-save": "", "ipset save": ""})
    # The kernel never changes, and the restore said so: the read-back must notice.
    runner = RecordingRunner(state, stderr={"iptables-legacy-restore": "iptables-restore: line 2 failed\n"})
    options = ProxyOptions(**RANGES, netfilter=NetfilterOptions(mode="legacy"))
    result = sync_once(runner, snapshot(), NodeIdentity("node3"), options)
    tools = [b.tool for b in runner.batches]
    assert tools[:2] == ["ip", "ipvsadm"] and tools[-3:] == ["ipset", "iptables-legacy-restore",
                                                            "ip6tables-legacy-restore"]
    assert result.plan.counts["netfilter chains written"] == 8
    assert "iptables-legacy-restore -w --noflush <<'EOF'" in result.remaining and not result.converged
    assert runner.reads.count("iptables-legacy-save") == 2


def test_restores_that_exit_0_silently_are_not_read_back():
    """iptables-restore commits a table whole or not at all (and with --noflush every -D must match);
    `ipset restore` stops at its first failing line: a clean exit from each proves the plan is in."""
    state = dict(node_state(), **{"iptables-legacy-save": "", "ip6tables-legacy-save": "", "ipset save": ""})
    runner = RecordingRunner(state)
    options = ProxyOptions(**RANGES, netfilter=NetfilterOptions(mode="legacy"))
    result = sync_once(runner, snapshot(), NodeIdentity("node3"), options)
    assert [b.tool for b in runner.batches][-3:] == ["ipset", "iptables-legacy-restore", "ip6tables-legacy-restore"]
    assert result.netfilter.remaining == [] and runner.reads.count("iptables-legacy-save") == 1
    assert runner.reads.count("ipset save") == 1


def test_show_reports_per_service_state_backend_leftovers_and_netfilter_drift():
    listing = "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n"
    leftover = "*filter\n:INPUT ACCEPT [0:0]\n:KUBE-ROUTER-SERVICES - [0:0]\nCOMMIT\n"
    state = {**node_state(), "ipvsadm -L -n --exact": listing, "ipvsadm -L -n --rate --exact": listing,
             "iptables-legacy-save": SAVES["iptables-legacy-save"], "ip6tables-legacy-save": leftover,
             "ipset save": SAVES["ipset save"] + "create KUBE-LOOP-BACK hash:ip,port,ip family inet\n"}
    options = ProxyOptions(**RANGES, netfilter=NetfilterOptions(mode="legacy"))
    report = show(RecordingRunner(state), snapshot(), NodeIdentity("node3"), options)
    services = {s["name"]: s for s in report["services"]}
    assert services["ranged"]["netfilter"] == {
        "client_ip_kept": False, "hairpin": "on", "firewall": "on", "source_ranges": ["192.168.123.100/32"]}
    node_wide = "ClusterIP SNAT unless from pods (NodeCIDR), NodePort/external/LB SNAT unless externalTrafficPolicy Local"
    assert report["masquerade"] == node_wide  # node-wide, once
    assert report["netfilter"]["backend"] == "legacy"
    assert report["netfilter"]["leftovers"] == ["IPv6 filter KUBE-ROUTER-SERVICES (kube-router)",
                                                "ipset KUBE-LOOP-BACK (kube-proxy)"]
    assert report["netfilter"]["sets"]["KIPVS-SERVICE-IPS"] == 9 and len(report["netfilter"]["sets"]) == 14
    # IPv4 is converged; IPv6's rules are missing: drift, shown as the restore input sync would run.
    assert report["netfilter"]["commands"][0] == "ip6tables-legacy-restore -w --noflush <<'EOF'"
    assert not report["in_sync"] and report["drift"]["commands"][-1] == "EOF"
    out = io.StringIO()
    print_show(report, Environment(out=out, out_isatty=False))
    assert "firewall on; source ranges 192.168.123.100/32" in out.getvalue()
    assert out.getvalue().count(node_wide) == 1
    assert "left over by another service proxy: IPv6 filter KUBE-ROUTER-SERVICES" in out.getvalue()
    assert "KIPVS-SERVICE-IPS 9" in out.getvalue()


KUBE_ROUTER_SAVE = """*filter
:INPUT ACCEPT [0:0]
:KUBE-ROUTER-SERVICES - [0:0]
:KIPVS-INPUT - [0:0]
-A INPUT -m comment --comment "kipvs: service address firewall" -j KIPVS-INPUT
-A INPUT -m comment --comment "handle traffic to IPVS service IPs in custom chain" -m set --match-set kube-router-svip dst -j KUBE-ROUTER-SERVICES
-A INPUT -p tcp -m tcp --dport 9999 -j ACCEPT
-A KUBE-ROUTER-SERVICES -m comment --comment "allow input traffic to ipvs services" -m set --match-set kube-router-svip-prt dst,dst -j ACCEPT
COMMIT
*nat
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING ! -s 172.20.3.0/24 ! -d 172.20.3.0/24 -m ipvs --vdir ORIGINAL --vmethod MASQ -m comment --comment "" -j SNAT --to-source 192.168.123.249
-A POSTROUTING -s 10.99.0.0/16 -m ipvs --vdir ORIGINAL --vmethod MASQ -j MASQUERADE
COMMIT
"""


def test_kube_router_leftovers_are_removed_and_nothing_else():
    assert kube_router_restore_lines(parse_save(KUBE_ROUTER_SAVE)) == [
        "*filter", ":KUBE-ROUTER-SERVICES - [0:0]",
        '-D INPUT -m comment --comment "handle traffic to IPVS service IPs in custom chain" -m set --match-set '
        'kube-router-svip dst -j KUBE-ROUTER-SERVICES', "-X KUBE-ROUTER-SERVICES", "COMMIT",
        "*nat", '-D POSTROUTING ! -s 172.20.3.0/24 ! -d 172.20.3.0/24 -m ipvs --vdir ORIGINAL --vmethod MASQ '
        '-m comment --comment "" -j SNAT --to-source 192.168.123.249', "COMMIT"]
    assert kube_router_sets(["kube-router-svip", "inet6:kube-router-svip-prt", "mine", "kube-router-other"]) == \
        ["kube-router-svip", "inet6:kube-router-svip-prt"]


def test_kube_router_leftovers_wait_for_kipvs_rules():
    without_kipvs = KUBE_ROUTER_SAVE.replace(":KIPVS-INPUT - [0:0]\n", "")
    with pytest.raises(ConfigError, match="run `kipvs sync` first"):
        remove_kube_router_leftovers(Tools({"iptables-legacy-save": without_kipvs}), "legacy")
    runner = RecordingRunner({"iptables-legacy-save": KUBE_ROUTER_SAVE, "ip6tables-legacy-save": "",
                              "ipset save": "create kube-router-svip hash:ip family inet\n"
                                            "create kube-router-svip-prt hash:ip,port family inet\n"}, dry_run=True)
    outcome = remove_kube_router_leftovers(runner, "legacy")
    printed = runner.out.getvalue().splitlines()
    assert printed[0] == "iptables-legacy-restore -w --noflush <<'EOF'"
    assert printed[-2:] == ["ipset destroy kube-router-svip", "ipset destroy kube-router-svip-prt"]
    assert outcome.counts == {"kube-router rules and chains removed": 3, "kube-router ipsets removed": 2}


def test_watch_detects_the_backend_once_then_reads_only_that_backend():
    from kipvs.commands.watch import Watcher, WatchSettings
    from tests.unit.test_lifecycle import A, B, NODE3, OPTS, _StillCache, cluster, ep, state

    runner = RecordingRunner({**state(), **SAVES})
    watcher = Watcher([], runner, NODE3, replace(OPTS, netfilter=NetfilterOptions()), WatchSettings())
    snap = cluster(ep(A, "node1"), ep(B, "node2"))  # the recorded IPVS table: no IPVS write
    watcher.reflectors = [_StillCache(snap.services), _StillCache(snap.endpoint_slices), _StillCache(snap.nodes)]
    watcher.sync(full=True)
    assert "iptables-nft-save" in runner.reads and watcher.options.netfilter.mode == "legacy"
    runner.reads.clear()
    watcher.sync(full=True)
    assert "iptables-legacy-save" in runner.reads and not any("nft" in read for read in runner.reads)


def test_watch_event_syncs_plan_netfilter_from_what_the_last_clean_write_left():
    """A new Service between full resyncs: its set members are written with no save process started."""
    from kipvs.commands.watch import Watcher, WatchSettings
    from tests.unit.k8s import svc
    from kipvs.incremental import KernelIndex
    from tests.unit.test_incremental import converged_kernel
    from tests.unit.test_lifecycle import _StillCache

    class Events(_StillCache):
        pending: dict = {}

        def drain(self):
            from kipvs.sources.reflector import Drained

            listed, self._listed = self._listed, False
            changed, self.pending = self.pending, {}
            return Drained(listed, changed, [])

    runner = RecordingRunner({**node_state(), **SAVES})  # netfilter converged for the captured cluster
    options = ProxyOptions(**RANGES, netfilter=NetfilterOptions(mode="legacy"))
    watcher = Watcher([], runner, NodeIdentity("node3"), options, WatchSettings())
    snap = snapshot()
    watcher.reflectors = [Events(snap.services), Events(snap.endpoint_slices), Events(snap.nodes)]
    watcher.sync(full=True)
    assert watcher.netfilter_facts is not None  # netfilter was converged: the facts read are carried
    # The recorded net is not converged for this cluster; IPVS and addresses are not this test's subject.
    watcher.kernel = KernelIndex(converged_kernel(watcher.state.desired()), "kube-dummy-if")
    runner.reads.clear()
    runner.batches.clear()
    new = svc("new", cluster_ips=("10.96.0.99",))
    watcher.reflectors[0]._items.append(new)
    watcher.reflectors[0].pending = {("default", "new"): new}
    watcher.sync(full=False)
    assert not [read for read in runner.reads if "save" in read], runner.reads
    sets = [b for b in runner.batches if b.tool == "ipset"]
    assert sets and "add KIPVS-SERVICE-IPS 10.96.0.99" in sets[0].lines
    watcher.sync(full=True)  # the periodic resync reads netfilter again
    assert "iptables-legacy-save" in runner.reads and "ipset save" in runner.reads


def test_local_traffic_options_refuse_what_cannot_go_into_a_rule():
    from kipvs.config import parse_detect_local_mode, parse_pod_interface
    assert parse_detect_local_mode("BridgeInterface") == "BridgeInterface"
    with pytest.raises(ConfigError, match="--detect-local-mode 'LocalCIDR': expected one of auto, ClusterCIDR"):
        parse_detect_local_mode("LocalCIDR")
    assert parse_pod_interface("cali", "--pod-interface-name-prefix") == "cali"
    with pytest.raises(ConfigError, match="--pod-bridge-interface 'br0 -j ACCEPT'"):
        parse_pod_interface("br0 -j ACCEPT", "--pod-bridge-interface")
