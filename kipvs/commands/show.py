"""`kipvs show`: what the cluster wants, what the kernel has, and what differs, as plain data."""
from __future__ import annotations

from dataclasses import replace

from kipvs.config import ProxyOptions, SourceOptions
from kipvs.environment import Environment
from kipvs.errors import ExitStatus
from kipvs.facts.ipvsadm import READ_CONNECTIONS, READ_RATES, Counters, parse_connections, parse_rates
from kipvs.facts.kernel import read_kernel
from kipvs.model import host_port
from kipvs.netfilter.sync import netfilter_report
from kipvs.output import emit_json
from kipvs.plan import plan_sync, unwanted
from kipvs.reconcile import NodeIdentity, compute, load_cluster, with_draining
from kipvs.runner import Runner
from kipvs.routes import check_routes
from kipvs.sources import Snapshot


def _real_server_rows(vs, kernel_vs, desired, connections, rates, draining: set) -> list[dict]:
    ours = {rs.key: rs for rs in vs.real_servers}
    theirs = {rs.key: rs for rs in kernel_vs.real_servers} if kernel_vs else {}
    rows = []
    for key in sorted(set(ours) | set(theirs)):
        rs = ours.get(key) or theirs[key]
        info = desired.backends.get(key)
        state = "missing" if key not in theirs else "extra" if key not in ours else \
            "different" if ours[key] != theirs[key] else "draining" if (vs.key, key) in draining else "ok"
        conns = connections.get((vs.key, key), Counters())
        rate = rates.get((vs.key, key), Counters())
        rows.append({"address": host_port(rs.ip, rs.port), "pod": info.pod if info else "", "node": info.node if info else "",
                     "weight": rs.weight, "forward": rs.forward, "active": conns.active, "inactive": conns.inactive,
                     "cps": rate.cps, "in_bps": rate.in_bps, "out_bps": rate.out_bps, "state": state})
    return rows


def show(runner: Runner, snapshot: Snapshot, node: NodeIdentity, options: ProxyOptions) -> dict:
    kernel = read_kernel(runner)
    connections = parse_connections(runner.run(READ_CONNECTIONS))
    rates = parse_rates(runner.run(READ_RATES))
    desired, drains = with_draining(runner, compute(snapshot, node, options, kernel, backends=True), kernel, options,
                                    keep_record=False)
    draining = {(d.service, d.server) for d in drains}
    in_kernel = {vs.key: vs for vs in kernel.rules}
    services: dict[tuple[str, str], dict] = {}
    for vs in desired.virtual_servers:
        origin = desired.origins[vs.key]
        entry = services.setdefault((origin.namespace, origin.name),
                                    {"namespace": origin.namespace, "name": origin.name, "virtual_servers": []})
        have = in_kernel.get(vs.key)
        state = "missing" if have is None else "ok" if have == vs else "different"
        entry["virtual_servers"].append({
            "address": vs.label(), "kind": origin.kind, "port_name": origin.port_name,
            "scheduler": vs.scheduler + (f" ({','.join(vs.flags)})" if vs.flags else ""),
            "persistent": vs.persistent, "state": state,
            "kernel_scheduler": have.scheduler if have else None,
            # Every ipvsadm option, so a difference the scheduler column hides (-M, --pe, -o) shows.
            "options": vs.options_args(), "kernel_options": have.options_args() if have else None,
            "real_servers": _real_server_rows(vs, have, desired, connections, rates, draining)})
    for (namespace, name), notes in desired.notes.items():
        services.setdefault((namespace, name), {"namespace": namespace, "name": name, "virtual_servers": []})
    for entry in services.values():
        entry["notes"] = list(desired.notes.get((entry["namespace"], entry["name"]), ()))
    stale, foreign, held = unwanted(desired, kernel, options)
    present = {a.ip for a in kernel.net.addresses_on(options.interface) if not a.is_link_local}
    sources: dict[str, list] = {}
    for route in kernel.net.local_routes:
        if route.type == "local":
            sources.setdefault(route.dst, []).append(route.prefsrc)
    routes = [{"address": check.vip, "src": sources.get(check.vip, []), "expected_src": check.node_ip,
               "ok": check.correct}
              for check in check_routes([ip for ip in desired.addresses if ip in present], options.interface,
                                        desired.node_ips, kernel.net)]
    plan = plan_sync(desired, kernel, options)
    netfilter = None
    if options.netfilter is not None:
        netfilter, wanted = netfilter_report(runner, desired, snapshot, node.name, options.netfilter)
        for (namespace, name), state in wanted.services.items():
            if (namespace, name) in services:
                services[(namespace, name)]["netfilter"] = {
                    "masquerade": state.masquerade, "hairpin": state.hairpin, "firewall": state.firewall,
                    "source_ranges": list(state.source_ranges)}
        desired = replace(desired, problems=desired.problems + wanted.problems)
    netfilter_lines = netfilter["commands"] if netfilter else []
    return {
        "node": {"name": node.name, "ips": {f"ipv{k}": v for k, v in desired.node_ips.items()},
                 "interface": options.interface},
        "services": sorted(services.values(), key=lambda s: (s["namespace"], s["name"])),
        "routes": routes,
        "drift": {
            "missing_virtual_servers": [v["address"] for s in services.values() for v in s["virtual_servers"]
                                        if v["state"] == "missing"],
            "different_virtual_servers": [v["address"] for s in services.values() for v in s["virtual_servers"]
                                          if v["state"] == "different"],
            "extra_virtual_servers": [vs.label() for vs in stale + held],
            "missing_addresses": [ip for ip in desired.addresses if ip not in present],
            "extra_addresses": sorted(present - set(desired.addresses)),
            "wrong_routes": [r["address"] for r in routes if not r["ok"]],
            "commands": plan.command_lines() + netfilter_lines,
        },
        "netfilter": netfilter,
        "foreign_virtual_servers": [vs.label() for vs in foreign],
        "problems": [str(p) for p in desired.problems],
        # Stale state kept because a Service's addresses could not be read (sync removes none of it).
        "removals_held": {"count": plan.held, "services": list(desired.holding)},
        "skipped": list(desired.skipped),
        "in_sync": plan.empty and not netfilter_lines and not plan.held,
    }


def run_show(env: Environment, source: SourceOptions, options: ProxyOptions, command_timeout: float,
             as_json: bool, check: bool) -> ExitStatus:
    runner = env.runner(False, command_timeout)  # first: its command helper is forked while kipvs is small
    snapshot, node = load_cluster(source)
    report = show(runner, snapshot, node, options)
    if as_json:
        emit_json(env, report)
    elif not check:
        from kipvs.render import print_show

        print_show(report, env)
    return ExitStatus.OK if report["in_sync"] or not check else ExitStatus.DRIFT
