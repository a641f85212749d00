"""The doctor's hops: why does this service address not answer? One hop at a time, on this node.

The hops a packet takes to a service address here, in order: the address on the dummy interface,
its local route's src, the IPVS virtual server, its real servers (ready, weights, draining), the
firewall and source ranges, the masquerade, and the conntrack entries. Each hop is one ✔/✘ line
with what was seen and the exact command that would repair it. A hop that cannot be judged because
an earlier one is broken is skipped (·), so a single fault is named once. With the cluster (API or
--cluster-file) each hop is compared with what kipvs wants; without it, with what the kernel alone says.
"""
from __future__ import annotations

from kipvs.draining import record_entries
from kipvs.facts.ipvsadm import READ_CONNECTIONS, Counters, parse_connections
from kipvs.model import host_port, known_family
from kipvs.reconcile import load_record
from kipvs.routes import check_route, fresh_route_line, local_routes_by_dst
from kipvs.troubleshoot.hops_conntrack import conntrack_hop
from kipvs.troubleshoot.hops_netfilter import firewall_hop, masquerade_hop
from kipvs.troubleshoot.scene import Hop, Scene


def _joined(lines: list[str]) -> str | None:
    return " && ".join(lines) if lines else None


def address_hop(scene: Scene) -> Hop:
    iface = scene.options.interface
    if scene.node_address:
        return Hop("address", True, f"{scene.ip} is this node's own address (a NodePort)")
    if any(a.ip == scene.ip for a in scene.kernel.net.addresses_on(iface)):
        return Hop("address", True, f"{scene.ip} is on {iface}")
    prefix = 32 if known_family(scene.ip) == 4 else 128
    if scene.desired is not None and scene.ip not in scene.desired.addresses:
        return Hop("address", False, f"{scene.ip} is not on {iface}, and no Service this node serves has it",
                   None)
    return Hop("address", False, f"{scene.ip} is not on {iface}", f"ip addr add {scene.ip}/{prefix} dev {iface}")


def route_hop(scene: Scene, address: Hop) -> Hop:
    iface = scene.options.interface
    if scene.node_address:
        return Hop("route src", True, "a node address: the kernel's own route, src the node IP")
    if not address.ok:
        return Hop("route src", None, "no address, so no local route to judge")
    node_ip = scene.node_ips.get(known_family(scene.ip))
    routes = local_routes_by_dst(scene.kernel.net).get(scene.ip, [])
    mine = ", ".join(f"src {r.prefsrc or '(none)'}" for r in routes if r.dev == iface) or "none"
    if node_ip is None:
        return Hop("route src", False, f"no node IP of IPv{known_family(scene.ip)} known (routes: {mine})",
                   "kipvs doctor --node-ip NODE_IP …, or kipvs fix-routes --node-ip NODE_IP")
    check = check_route(scene.ip, iface, node_ip, routes)
    if check.correct:
        return Hop("route src", True, f"local {scene.ip} dev {iface} src {node_ip}")
    return Hop("route src", False, f"local {scene.ip} dev {iface}: {mine}; want src {node_ip} (kube-router #376: "
               "the node's own connections to this address hang)",
               "ip " + fresh_route_line(scene.ip, iface, node_ip) + f"   (or: kipvs fix-routes --interface {iface})")


def virtual_server_hop(scene: Scene) -> Hop:
    have = {vs.key: vs for vs in scene.kernel_servers()}
    want = scene.wanted_servers()
    where = host_port(scene.ip, scene.port) if scene.port else scene.ip
    if scene.desired is None:
        if have:
            return Hop("virtual server", True, ", ".join(f"{vs.label()} {vs.options_args()}" for vs in have.values()))
        return Hop("virtual server", False, f"the kernel has no virtual server for {where} (`ipvsadm -L -n`)",
                   "kipvs sync")
    if not want:
        return Hop("virtual server", False, f"no Service this node serves asks for {where}"
                   + (f"; the kernel has {', '.join(have and [vs.label() for vs in have.values()])}" if have else ""))
    broken = [vs for vs in want if vs.key not in have or not vs.same_options(have[vs.key])]
    if not broken:
        return Hop("virtual server", True, ", ".join(f"{vs.label()} {vs.options_args()}" for vs in want))
    evidence = "; ".join(f"{vs.label()}: missing in the kernel" if vs.key not in have else
                         f"{vs.label()}: want {vs.options_args()}, kernel {have[vs.key].options_args()}"
                         for vs in broken)
    fixes = [line for vs in broken for line in scene.fix_lines(vs) if vs.key not in have or " -E " in line]
    return Hop("virtual server", False, evidence, _joined(fixes) or "kipvs sync")


def real_servers_hop(scene: Scene, virtual: Hop) -> Hop:
    have = {vs.key: vs for vs in scene.kernel_servers()}
    if not have:
        return Hop("real servers", None, "no virtual server, so no real servers to judge")
    if "connections" not in scene.cache:
        scene.cache["connections"] = parse_connections(scene.runner.run(READ_CONNECTIONS))
        scene.cache["drain record"] = record_entries(load_record(scene.runner, scene.options.drain_record))
    connections, record = scene.cache["connections"], scene.cache["drain record"]
    want = {vs.key: vs for vs in scene.wanted_servers()}
    seen, problems, fixes = [], [], []
    for key, vs in have.items():
        wanted = {rs.key: rs for rs in want[key].real_servers} if key in want else None
        for rs in vs.real_servers:
            count = connections.get((key, rs.key), Counters())
            note = f"{host_port(*rs.key)} w{rs.weight} ({count.active} active)"
            drained = record.get((vs.label(), host_port(*rs.key)))
            if wanted is not None and rs.key in wanted and wanted[rs.key].weight != rs.weight:
                problems.append(f"{vs.label()} {host_port(*rs.key)}: weight {rs.weight}, want {wanted[rs.key].weight}")
                fixes += [line for line in scene.fix_lines(vs) if f"-r {host_port(*rs.key)} " in line + " "]
            elif rs.weight == 0:
                note += " draining" + (" (left its EndpointSlice)" if drained else "")
            seen.append(note)
        if wanted is not None:
            missing = [k for k in wanted if k not in {rs.key for rs in vs.real_servers}]
            if missing:
                problems.append(f"{vs.label()}: missing real servers {', '.join(host_port(*k) for k in missing)}")
                fixes += [line for line in scene.fix_lines(vs) if " -a " in line]
        if not any(rs.weight > 0 for rs in vs.real_servers) and not (wanted is not None and not wanted):
            problems.append(f"{vs.label()}: no real server takes new connections"
                            + ("" if vs.real_servers else " (none at all)"))
        elif wanted is not None and not wanted and not vs.real_servers:
            problems.append(f"{vs.label()}: the cluster has no ready endpoint for it: connections are refused")
    if problems:
        return Hop("real servers", False, "; ".join(problems), _joined(list(dict.fromkeys(fixes))) or
                   ("kipvs sync" if scene.desired is None else None))
    return Hop("real servers", True, ", ".join(seen))


def diagnose(scene: Scene) -> list[Hop]:
    address = address_hop(scene)
    virtual = virtual_server_hop(scene)
    hops = [address, route_hop(scene, address), virtual, real_servers_hop(scene, virtual)]
    if scene.options.netfilter is not None:
        hops += [firewall_hop(scene), masquerade_hop(scene)]
    hops.append(conntrack_hop(scene))
    return hops
