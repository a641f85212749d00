import dataclasses
import json
import ipaddress

import pytest

from kipvs.config import ProxyOptions
from kipvs.desired import Desired, build_desired
from kipvs.facts.kernel import read_kernel
from kipvs.model import RealServer, VirtualServer
from kipvs.plan import plan_cleanup, plan_sync
from tests.unit.fakes import RecordingRunner
from tests.unit.k8s import ep, eps, snapshot, svc
from tests.unit.kernel_states import node_state

NODE_IPS = {4: "192.168.123.249", 6: "fd00:123::249"}
OPTS = ProxyOptions()
WEB_RULES = """-A -t 10.96.0.10:80 -s rr
-a -t 10.96.0.10:80 -r 10.1.0.5:8080 -m -w 1
-a -t 10.96.0.10:80 -r 10.1.0.6:8080 -m -w 1
"""
FIXED = {"10.96.0.10": "192.168.123.249"}


def kernel(**kwargs):
    return read_kernel(RecordingRunner(node_state(**kwargs)))


def web(endpoints=("10.1.0.5", "10.1.0.6"), **spec):
    return build_desired(snapshot(svc("web", **spec), eps("web", [ep(ip) for ip in endpoints])), "node3", NODE_IPS,
                         OPTS)


def test_empty_node_gets_interface_address_route_service_and_sysctls_in_order():
    plan = plan_sync(web(), kernel(sysctl="0\n0\n0\n"), OPTS)
    assert plan.command_lines() == [
        "ip link add kube-dummy-if type dummy",
        "ip link set kube-dummy-if up",
        "ip addr add 10.96.0.10/32 dev kube-dummy-if",
        "ip route replace local 10.96.0.10 dev kube-dummy-if proto kernel scope host src 192.168.123.249 table local",
        "ipvsadm -A -t 10.96.0.10:80 -s rr",
        "ipvsadm -a -t 10.96.0.10:80 -r 10.1.0.5:8080 -m -w 1",
        "ipvsadm -a -t 10.96.0.10:80 -r 10.1.0.6:8080 -m -w 1",
        "sysctl -w net.ipv4.vs.conntrack=1",
        "sysctl -w net.ipv4.vs.expire_nodest_conn=1",
        "sysctl -w net.ipv4.vs.expire_quiescent_template=1",
    ]


def test_new_ipv4_address_with_another_devices_route_is_repaired_by_append_never_replace():
    # `replace` takes over the first local route of the address, whatever its device: lo's here.
    state = node_state()
    routes = json.loads(state["ip -j -4 route show table local"])
    routes.append({"type": "local", "dst": "10.96.0.10", "dev": "lo", "protocol": "kernel", "scope": "host",
                   "prefsrc": "10.96.0.10"})
    state["ip -j -4 route show table local"] = json.dumps(routes)
    lines = plan_sync(web(), read_kernel(RecordingRunner(state)), OPTS).command_lines()
    assert "ip route append local 10.96.0.10 dev kube-dummy-if proto kernel scope host src 192.168.123.249 " \
           "table local" in lines
    assert not any(line.startswith("ip route replace") for line in lines)


def test_converged_node_gives_an_empty_plan():
    plan = plan_sync(web(), kernel(rules=WEB_RULES, dummy_ips=("10.96.0.10",), routes_src=FIXED), OPTS)
    assert plan.empty and plan.command_lines() == [] and plan.summary() == "nothing to change"


def test_new_ipv6_address_gets_its_route_now_and_the_kernel_route_is_left_for_settle():
    d = build_desired(snapshot(svc("v6", cluster_ips=("fd00:96::10",))), "node3", NODE_IPS, OPTS)
    lines = plan_sync(d, kernel(), OPTS).command_lines()
    assert "ip addr add fd00:96::10/128 dev kube-dummy-if nodad" in lines
    assert "ip route replace local fd00:96::10 dev kube-dummy-if proto kernel scope host src fd00:123::249 " \
           "table local" in lines
    # IPv6 inserts its own route later; a `del ... metric 0` now would delete ours (metric 0 matches any).
    assert not any(line.startswith("ip route del") for line in lines)


def test_changed_endpoint_gives_only_that_real_server_change():
    plan = plan_sync(web(endpoints=("10.1.0.5", "10.1.0.7")),
                     kernel(rules=WEB_RULES, dummy_ips=("10.96.0.10",), routes_src=FIXED), OPTS)
    assert plan.command_lines() == ["ipvsadm -d -t 10.96.0.10:80 -r 10.1.0.6:8080",
                                    "ipvsadm -a -t 10.96.0.10:80 -r 10.1.0.7:8080 -m -w 1"]


def test_scheduler_change_is_an_edit_not_a_delete():
    plan = plan_sync(web(annotations={"kube-router.io/service.scheduler": "lc"}),
                     kernel(rules=WEB_RULES, dummy_ips=("10.96.0.10",), routes_src=FIXED), OPTS)
    assert plan.command_lines() == ["ipvsadm -E -t 10.96.0.10:80 -s lc"]


def test_weight_change_is_an_edit():
    rules = WEB_RULES.replace("10.1.0.6:8080 -m -w 1", "10.1.0.6:8080 -m -w 5")
    plan = plan_sync(web(), kernel(rules=rules, dummy_ips=("10.96.0.10",), routes_src=FIXED), OPTS)
    assert plan.command_lines() == ["ipvsadm -e -t 10.96.0.10:80 -r 10.1.0.6:8080 -m -w 1"]


FOREIGN = """-A -t 10.10.10.10:80 -s wlc
-a -t 10.10.10.10:80 -r 10.10.10.11:80 -g -w 1
-A -t 192.168.123.249:22 -s rr
-A -f 42 -s rr
-A -t 192.168.123.249:30500 -s rr
-A -t 10.96.0.77:80 -s rr
"""


def test_stale_owned_state_goes_foreign_state_stays():
    k = kernel(rules=WEB_RULES + FOREIGN, dummy_ips=("10.96.0.10", "10.96.0.77"),
               routes_src={"10.96.0.10": "192.168.123.249", "10.96.0.77": "192.168.123.249"})
    plan = plan_sync(web(), k, OPTS)
    assert plan.command_lines() == ["ip route del local 10.96.0.77 dev kube-dummy-if table local proto kernel src 192.168.123.249 metric 0",
                                    "ip addr del 10.96.0.77/32 dev kube-dummy-if",
                                    "ipvsadm -D -t 192.168.123.249:30500",
                                    "ipvsadm -D -t 10.96.0.77:80"]


def test_excluded_cidrs_protect_even_owned_looking_state():
    k = kernel(rules=WEB_RULES + "-A -t 192.168.123.249:30500 -s rr\n", dummy_ips=("10.96.0.10",), routes_src=FIXED)
    options = ProxyOptions(excluded_cidrs=(ipaddress.ip_network("192.168.123.249/32"),))
    assert plan_sync(web(), k, options).empty


def test_protected_addresses_of_broken_services_are_not_torn_down():
    k = kernel(rules=WEB_RULES, dummy_ips=("10.96.0.10",), routes_src=FIXED)
    broken = build_desired(snapshot(svc("web", ports=[{"name": "http", "port": 0, "protocol": "TCP"}])),
                           "node3", NODE_IPS, OPTS)
    assert broken.problems and plan_sync(broken, k, OPTS).empty


def test_cleanup_removes_only_what_kipvs_owns_then_the_interface():
    k = kernel(rules=WEB_RULES + FOREIGN, dummy_ips=("10.96.0.10", "10.96.0.77"), routes_src=FIXED)
    assert plan_cleanup(k, OPTS).command_lines() == [
        "ipvsadm -D -t 10.96.0.10:80",
        "ipvsadm -D -t 192.168.123.249:30500",
        "ipvsadm -D -t 10.96.0.77:80",
        "ip route del local 10.96.0.10 dev kube-dummy-if table local proto kernel src 192.168.123.249 metric 0",
        "ip addr del 10.96.0.10/32 dev kube-dummy-if",
        "ip addr del 10.96.0.77/32 dev kube-dummy-if",
        "ip link del kube-dummy-if",
    ]
    assert plan_cleanup(kernel(rules=FOREIGN.replace("-A -t 192.168.123.249:30500 -s rr\n", "")
                               .replace("-A -t 10.96.0.77:80 -s rr\n", "")), OPTS).empty


def test_edit_keeps_persistence_and_flags_in_the_line():
    d = Desired(virtual_servers=(VirtualServer("udp", "10.96.0.10", 53, "sh", ("sh-fallback", "sh-port"), 600,
                                               (RealServer("10.1.0.5", 53),)),),
                addresses=("10.96.0.10",), node_ips=NODE_IPS)
    plan = plan_sync(d, kernel(rules="-A -u 10.96.0.10:53 -s rr\n-a -u 10.96.0.10:53 -r 10.1.0.5:53 -m -w 1\n",
                               dummy_ips=("10.96.0.10",), routes_src=FIXED), OPTS)
    assert plan.command_lines() == ["ipvsadm -E -u 10.96.0.10:53 -s sh -b sh-fallback,sh-port -p 600"]


def test_unwanted_splits_kipvs_own_from_foreign_and_keeps_protected():
    from kipvs.plan import unwanted

    k = kernel(rules=WEB_RULES + FOREIGN, dummy_ips=("10.96.0.10", "10.96.0.77"), routes_src=FIXED)
    stale, foreign, _ = unwanted(web(), k, OPTS)
    assert [vs.label() for vs in stale] == ["TCP 192.168.123.249:30500", "TCP 10.96.0.77:80"]
    assert [vs.label() for vs in foreign] == ["TCP 10.10.10.10:80", "TCP 192.168.123.249:22", "FWM 42"]
    broken = build_desired(snapshot(svc("web", cluster_ips=("10.96.0.77",), ports=[{"name": "x", "port": 0}])),
                           "node3", NODE_IPS, OPTS)
    stale, _, _ = unwanted(broken, k, OPTS)
    assert "TCP 10.96.0.77:80" not in [vs.label() for vs in stale]  # a broken Service's state is kept


KUBE_ROUTER_2_LEFTOVER = """-A -t 10.96.0.10:80 -s rr -p 10800 -M 32.0.0.0
-a -t 10.96.0.10:80 -r 10.1.0.5:8080 -m -w 1
-a -t 10.96.0.10:80 -r 10.1.0.6:8080 -m -w 1
"""


def test_kube_router_2_persistence_netmask_is_drift_repaired_with_an_edit():
    """kube-router 2.x sends the netmask 32 in host byte order: every client shares one persistence template."""
    affinity = web(sessionAffinity="ClientIP")
    assert affinity.virtual_servers[0].persistent == 10800
    plan = plan_sync(affinity, kernel(rules=KUBE_ROUTER_2_LEFTOVER, dummy_ips=("10.96.0.10",), routes_src=FIXED),
                     OPTS)
    assert plan.command_lines() == ["ipvsadm -E -t 10.96.0.10:80 -s rr -p 10800"]
    fixed = KUBE_ROUTER_2_LEFTOVER.replace(" -M 32.0.0.0", "")
    assert plan_sync(affinity, kernel(rules=fixed, dummy_ips=("10.96.0.10",), routes_src=FIXED), OPTS).empty


def test_foreign_real_server_options_are_drift_on_our_servers():
    rules = WEB_RULES.replace("10.1.0.6:8080 -m -w 1", "10.1.0.6:8080 -i -w 1 --tun-type gre --tun-csum")
    plan = plan_sync(web(), kernel(rules=rules, dummy_ips=("10.96.0.10",), routes_src=FIXED), OPTS)
    assert plan.command_lines() == ["ipvsadm -e -t 10.96.0.10:80 -r 10.1.0.6:8080 -m -w 1"]


def _with_lo_routes(state, *vips):
    """The same VIPs also on lo: the kernel keeps one local route per device."""
    state = dict(state)
    for vip in vips:
        key = f"ip -j -{6 if ':' in vip else 4} route show table local"
        route = {"type": "local", "dst": vip, "dev": "lo", "protocol": "kernel"}
        route.update({"metric": 0} if ":" in vip else {"scope": "host", "prefsrc": vip})
        state[key] = json.dumps([route] + json.loads(state[key]))
    return state


def test_a_vip_also_on_lo_neither_replaces_every_sync_nor_loses_los_routes():
    d = build_desired(snapshot(svc("web", cluster_ips=("10.96.0.10", "fd00:96::10"), ipFamilies=["IPv4", "IPv6"]),
                               eps("web", [ep("10.1.0.5")])), "node3", NODE_IPS, OPTS)
    state = node_state(rules=WEB_RULES.replace("10.1.0.6", "10.1.0.5").splitlines()[0] + "\n"
                       "-a -t 10.96.0.10:80 -r 10.1.0.5:8080 -m -w 1\n-A -t [fd00:96::10]:80 -s rr\n",
                       dummy_ips=("10.96.0.10", "fd00:96::10"),
                       routes_src={"10.96.0.10": "192.168.123.249", "fd00:96::10": "fd00:123::249"})
    plan = plan_sync(d, read_kernel(RecordingRunner(_with_lo_routes(state, "10.96.0.10", "fd00:96::10"))), OPTS)
    assert not any("route" in line for line in plan.command_lines()), plan.command_lines()


def test_a_plain_real_server_is_an_ordinary_frozen_real_server():
    from kipvs.model import plain_real_server
    fast, slow = plain_real_server("10.1.0.5", 8080), RealServer("10.1.0.5", 8080)
    assert type(fast) is RealServer and fast == slow and hash(fast) == hash(slow) and repr(fast) == repr(slow)
    assert not fast < slow and fast < plain_real_server("10.1.0.6", 80)
    assert dataclasses.replace(fast, weight=0) == RealServer("10.1.0.5", 8080, weight=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.weight = 5
