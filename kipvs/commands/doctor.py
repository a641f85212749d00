"""`kipvs doctor VIP[:PORT]...`: read the node once, walk every hop to each address (kipvs.troubleshoot.hops),
print one ✔/✘ line per hop with its evidence and fix; exit 0 when every hop is sound."""
from __future__ import annotations

import logging
from dataclasses import replace

from kipvs.config import ProxyOptions, SourceOptions
from kipvs.environment import Environment
from kipvs.errors import ClusterUnavailable, ExitStatus
from kipvs.facts.kernel import read_kernel
from kipvs.model import host_port
from kipvs.output import emit_json
from kipvs.reconcile import NodeIdentity, compute, load_cluster, with_draining
from kipvs.runner import Runner
from kipvs.troubleshoot.hops import diagnose
from kipvs.troubleshoot.kernel_view import kernel_node_ips
from kipvs.troubleshoot.scene import Hop, Scene
from kipvs.troubleshoot.selection import parse_address

log = logging.getLogger("kipvs.doctor")
DOCTOR_SCHEMA = 1


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
