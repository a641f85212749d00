"""Kernel states for the recording runner, built from lab-captured output."""
from __future__ import annotations

import json

from kipvs.facts.kernel import IPVS_SYSCTLS, STRICT_ARP_SYSCTLS, sysctl_path
from tests.unit.fakes import fixture_outputs


def node_state(rules: str = "", dummy_ips: tuple[str, ...] = (), routes_src: dict | None = None,
               sysctl: str = "1\n1\n1\n", arp: str = "1 2") -> dict[str, str]:
    """node3 of the lab (eth0 192.168.123.249 + fd00:123::249) with these IPVS rules and dummy addresses."""
    base = fixture_outputs("node-before-fix")
    links = [link for link in json.loads(base["ip -j addr show"]) if link["ifname"] != "kube-dummy-if"]
    routes4 = [r for r in json.loads(base["ip -j -4 route show table local"]) if r.get("dev") != "kube-dummy-if"]
    routes6 = [r for r in json.loads(base["ip -j -6 route show table local"]) if r.get("dev") != "kube-dummy-if"]
    if dummy_ips:
        infos = []
        for ip in dummy_ips:
            family = "inet6" if ":" in ip else "inet"
            infos.append({"family": family, "local": ip, "prefixlen": 128 if ":" in ip else 32, "scope": "global"})
            src = (routes_src or {}).get(ip)
            route = {"type": "local", "dst": ip, "dev": "kube-dummy-if", "protocol": "kernel"}
            if ":" in ip:
                (routes6.append(dict(route, prefsrc=src, metric=1024)) if src else routes6.append(dict(route, metric=0)))
            else:
                routes4.append(dict(route, scope="host", prefsrc=src or ip))
        links.append({"ifname": "kube-dummy-if", "flags": ["BROADCAST", "NOARP", "UP", "LOWER_UP"],
                      "linkinfo": {"info_kind": "dummy"}, "addr_info": infos})
    state = dict(base)
    state.update({
        "ipvsadm -S -n": rules,
        "ip -j addr show": json.dumps(links),
        "ip -j -4 route show table local": json.dumps(routes4),
        "ip -j -6 route show table local": json.dumps(routes6),
    })
    state.update({f"read {sysctl_path(name)}": value + "\n" for name, value in zip(IPVS_SYSCTLS, sysctl.split())})
    state.update({f"read {sysctl_path(name)}": value + "\n" for name, value in zip(STRICT_ARP_SYSCTLS, arp.split())})
    return state
