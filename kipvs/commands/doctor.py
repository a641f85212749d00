"""`kipvs doctor VIP[:PORT]`: why does this service address not answer? One hop at a time, on this node.

The hops a packet takes to a service address here, in order: the address on the dummy interface,
its local route's src, the IPVS virtual server, its real servers (ready, weights, draining), the
firewall and source ranges, the masquerade, and the conntrack entries. Each hop is one ✔/✘ line
with what was seen and the exact command that would repair it. A hop that cannot be judged because
an earlier one is broken is skipped (·), so a single fault is named once. With the cluster (API or
--cluster-file) each hop is compared with what kipvs wants; without it, with what the kernel alone says.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

from kipvs.commands.doctor_netfilter import firewall_hop, masquerade_hop
from kipvs.commands.doctor_conntrack import conntrack_hop
from kipvs.commands.show_filter import parse_address
from kipvs.commands.show_kernel import kernel_node_ips
from kipvs.config import ProxyOptions, SourceOptions
from kipvs.desired import Desired
from kipvs.draining import record_entries
from kipvs.environment import Environment
from kipvs.errors import ClusterUnavailable, ExitStatus
from kipvs.facts.ipvsadm import READ_CONNECTIONS, Counters, parse_connections
from kipvs.facts.kernel import KernelFacts, read_kernel
from kipvs.model import VirtualServer, host_port, known_family
from kipvs.output import emit_json
from kipvs.plan import plan_sync
from kipvs.reconcile import NodeIdentity, compute, load_cluster, load_record, with_draining
from kipvs.routes import check_route, fresh_route_line, local_routes_by_dst
from kipvs.runner import Runner
from kipvs.sources import Snapshot

log = logging.getLogger("kipvs.doctor")
DOCTOR_SCHEMA = 1


@dataclass(frozen=True)
class Hop:
    name: str
    ok: bool | None  # None: not judged (an earlier hop is broken, or nothing here to judge)
    evidence: str
    fix: str | None = None  # the exact command that would repair it

    @property
    def mark(self) -> str:
        return "✔" if self.ok else "·" if self.ok is None else "✘"


@dataclass
class Scene:
    """Everything the hops look at, read once."""

    ip: str
    port: int | None
    options: ProxyOptions
    kernel: KernelFacts
    node_ips: dict[int, str]
    desired: Desired | None  # None: the cluster could not be read
    snapshot: Snapshot | None
    node: NodeIdentity
    runner: Runner
    cache: dict = field(default_factory=dict)  # facts more than one hop reads

    def kernel_servers(self) -> list[VirtualServer]:
        return [vs for vs in self.kernel.rules if self.matches(vs)]

    def wanted_servers(self) -> list[VirtualServer]:
        return [vs for vs in self.desired.virtual_servers if self.matches(vs)] if self.desired else []

    def matches(self, vs: VirtualServer) -> bool:
        return vs.protocol != "fwmark" and vs.ip == self.ip and (self.port is None or vs.port == self.port)

    @property
    def node_address(self) -> bool:
        """A NodePort on one of the node's own addresses: no dummy-interface address, no local route of kipvs's."""
        return any(a.ip == self.ip and a.interface != self.options.interface for a in self.kernel.net.addresses)

    def fix_lines(self, vs: VirtualServer) -> list[str]:
        """What `kipvs sync` would run for this virtual server, as standalone commands."""
        if self.desired is None:
            return []
        needle = vs.service_args() + " "
        return [line for line in plan_sync(self.desired, self.kernel, self.options).command_lines()
                if needle in line + " "]


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


def read_world(runner: Runner, source: SourceOptions, options: ProxyOptions) -> Scene:
    """The kernel and, when it can be read, the cluster: read once however many addresses are asked about."""
    kernel = read_kernel(runner)
    node = NodeIdentity(source.node_name, source.node_ips)
    try:
        snapshot, node = load_cluster(source)
    except ClusterUnavailable as exc:
        log.warning("cluster unavailable (%s): judging from the kernel alone", exc)
        return Scene("", None, options, kernel, kernel_node_ips(source, kernel, options.interface), None, None,
                     node, runner)
    desired, _ = with_draining(runner, compute(snapshot, node, options, kernel), kernel, options, keep_record=False)
    return Scene("", None, options, kernel, desired.node_ips, desired, snapshot, node, runner)


def render(hops: list[Hop], target: str, node: str) -> str:
    width = max(len(h.name) for h in hops)
    lines = [f"kipvs doctor {target} on {node}"]
    for hop in hops:
        lines.append(f"{hop.mark} {hop.name:<{width}}  {hop.evidence}")
        if hop.fix and hop.ok is False:
            lines.append(f"  {'':<{width}}  fix: {hop.fix}")
    broken = [h.name for h in hops if h.ok is False]
    lines.append(f"broken: {', '.join(broken)}" if broken else "every hop is sound")
    return "\n".join(lines) + "\n"


def run_doctor(env: Environment, source: SourceOptions, options: ProxyOptions, command_timeout: float,
               as_json: bool, targets: list[str]) -> ExitStatus:
    addresses = [parse_address(target, "VIP[:PORT]") for target in targets]
    runner = env.runner(False, command_timeout)
    world = read_world(runner, source, options)
    reports, sound = [], True
    for ip, port in addresses:
        scene = replace(world, ip=ip, port=port)
        hops = diagnose(scene)
        sound = sound and not any(h.ok is False for h in hops)
        reports.append((ip, port, hops))
    if as_json:
        emit_json(env, {"schema": DOCTOR_SCHEMA, "node": world.node.name, "cluster": world.desired is not None,
                        "sound": sound, "targets": [
                            {"address": ip, "port": port, "sound": not any(h.ok is False for h in hops),
                             "hops": [{"hop": h.name, "ok": h.ok, "evidence": h.evidence, "fix": h.fix}
                                      for h in hops]} for ip, port, hops in reports]})
    else:
        env.stdout.write("\n".join(render(hops, host_port(ip, port) if port else ip, world.node.name)
                                   for ip, port, hops in reports))
        env.stdout.flush()
    return ExitStatus.OK if sound else ExitStatus.DRIFT
