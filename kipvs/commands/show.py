"""`kipvs show`: what the cluster wants, what the kernel has, and what differs, as plain data.

Without the cluster (the API unreachable, no kubeconfig, or --kernel-only) the report is the
kernel's alone (kipvs.troubleshoot.kernel_view): the moment people troubleshoot is often the moment
the API is down.
"""
from __future__ import annotations

import logging
import time
from dataclasses import replace

from kipvs.troubleshoot.fields import (SHOW_SCHEMA, VIRTUAL_SERVER_COMPARED, differences, problem_fields,
                                        real_server_fields, virtual_server_fields)
from kipvs.troubleshoot.selection import ShowFilter, filter_report
from kipvs.config import ProxyOptions, SourceOptions
from kipvs.environment import Environment
from kipvs.errors import ClusterUnavailable, ExitStatus
from kipvs.facts.ipvsadm import READ_CONNECTIONS, READ_RATES, Counters, parse_connections, parse_rates
from kipvs.facts.kernel import read_kernel
from kipvs.netfilter.sync import netfilter_report
from kipvs.output import emit_json
from kipvs.plan import plan_sync, unwanted
from kipvs.reconcile import NodeIdentity, compute, load_cluster, with_draining
from kipvs.runner import Runner
from kipvs.routes import check_routes
from kipvs.sources import Snapshot

log = logging.getLogger("kipvs.show")


def _real_server_rows(vs, kernel_vs, desired, connections, rates, drains: dict) -> list[dict]:
    ours = {rs.key: rs for rs in vs.real_servers}
    theirs = {rs.key: rs for rs in kernel_vs.real_servers} if kernel_vs else {}
    rows = []
    for key in sorted(set(ours) | set(theirs)):
        info = desired.backends.get(key)
        drain = drains.get((vs.key, key))
        row = real_server_fields(key, ours.get(key), theirs.get(key), connections.get((vs.key, key), Counters()),
                                 rates.get((vs.key, key), Counters()))
        row["state"] = "missing" if key not in theirs else "extra" if key not in ours else \
            "different" if row["differences"] else "draining" if drain else "ok"
        row.update(pod=info.pod if info else "", node=info.node if info else "",
                   drain={"since": drain.since, "deadline": drain.deadline, "endpoint_listed": drain.since is None}
                   if drain else None)
        rows.append(row)
    return rows


def _virtual_server_entry(vs, have, origin, desired, connections, rates, drains) -> dict:
    wanted = virtual_server_fields(vs)
    kernel = virtual_server_fields(have) if have else None
    return {**wanted, "kind": origin.kind, "port_name": origin.port_name,
            "state": "missing" if have is None else "ok" if have == vs else "different",
            "kernel": kernel, "differences": differences(wanted, kernel, VIRTUAL_SERVER_COMPARED),
            "real_servers": _real_server_rows(vs, have, desired, connections, rates, drains)}


def _netfilter_states(wanted, services: dict) -> str | None:
    """Each Service's netfilter state; returns the node-wide masquerade rule (the same for every Service)."""
    node_wide = None
    for key, state in wanted.services.items():
        node_wide = node_wide or state.masquerade
        if key in services:
            services[key]["netfilter"] = {"client_ip_kept": state.client_ip_kept, "hairpin": state.hairpin,
                                          "firewall": state.firewall, "source_ranges": list(state.source_ranges)}
    return node_wide


def show(runner: Runner, snapshot: Snapshot, node: NodeIdentity, options: ProxyOptions) -> dict:
    kernel = read_kernel(runner)
    connections = parse_connections(runner.run(READ_CONNECTIONS))
    rates = parse_rates(runner.run(READ_RATES))
    desired, drain_list = with_draining(runner, compute(snapshot, node, options, kernel, backends=True), kernel,
                                        options, keep_record=False)
    drains = {(d.service, d.server): d for d in drain_list}
    in_kernel = {vs.key: vs for vs in kernel.rules}
    services: dict[tuple[str, str], dict] = {}
    for vs in desired.virtual_servers:
        origin = desired.origins[vs.key]
        entry = services.setdefault((origin.namespace, origin.name),
                                    {"namespace": origin.namespace, "name": origin.name, "virtual_servers": []})
        entry["virtual_servers"].append(_virtual_server_entry(vs, in_kernel.get(vs.key), origin, desired,
                                                              connections, rates, drains))
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
    netfilter, masquerade = None, None
    if options.netfilter is not None:
        netfilter, wanted = netfilter_report(runner, desired, snapshot, node.name, options.netfilter)
        masquerade = _netfilter_states(wanted, services)
        desired = replace(desired, problems=desired.problems + wanted.problems)
    netfilter_lines = netfilter["commands"] if netfilter else []
    entries = sorted(services.values(), key=lambda s: (s["namespace"], s["name"]))
    return {
        "schema": SHOW_SCHEMA,
        "mode": "cluster",
        "cluster": {"available": True, "origin": snapshot.origin, "reason": None},
        "node": {"name": node.name, "ips": {f"ipv{k}": v for k, v in desired.node_ips.items()},
                 "interface": options.interface},
        "masquerade": masquerade,
        "services": entries,
        "virtual_servers": [],  # kernel-only mode's list; here every virtual server belongs to a Service
        "routes": routes,
        "drift": {
            "missing_virtual_servers": [v["label"] for s in entries for v in s["virtual_servers"]
                                        if v["state"] == "missing"],
            "different_virtual_servers": [v["label"] for s in entries for v in s["virtual_servers"]
                                          if v["state"] == "different"],
            "extra_virtual_servers": [vs.label() for vs in stale + held],
            "missing_addresses": [ip for ip in desired.addresses if ip not in present],
            "extra_addresses": sorted(present - set(desired.addresses)),
            "wrong_routes": [r["address"] for r in routes if not r["ok"]],
            "commands": plan.command_lines() + netfilter_lines,
        },
        "netfilter": netfilter,
        "foreign_virtual_servers": [vs.label() for vs in foreign],
        "problems": [problem_fields(p) for p in desired.problems],
        # Stale state kept because a Service's addresses could not be read (sync removes none of it).
        "removals_held": {"count": plan.held, "services": list(desired.holding)},
        "skipped": list(desired.skipped),
        "in_sync": plan.empty and not netfilter_lines and not plan.held,
    }


def build_report(runner: Runner, source: SourceOptions, options: ProxyOptions, kernel_only: bool,
                 check: bool) -> dict:
    """The cluster's report, or the kernel's alone when the cluster cannot be read (not for --check:
    drift cannot be judged without knowing what is wanted)."""
    from kipvs.troubleshoot.kernel_view import kernel_report

    if kernel_only:
        return kernel_report(runner, source, options, "--kernel-only")
    try:
        snapshot, node = load_cluster(source)
    except ClusterUnavailable as exc:
        if check:
            raise
        log.warning("cluster unavailable (%s): showing the kernel only; Services, pods and wanted values "
                    "are unknown", exc)
        return kernel_report(runner, source, options, str(exc))
    return show(runner, snapshot, node, options)


def run_show(env: Environment, source: SourceOptions, options: ProxyOptions, command_timeout: float,
             as_json: bool, check: bool, selection: ShowFilter = ShowFilter(), kernel_only: bool = False,
             watch: float | None = None, sleep=time.sleep) -> ExitStatus:
    """`watch`: redraw every `watch` seconds until interrupted (Ctrl-C ends it with exit 0)."""
    runner = env.runner(False, command_timeout)  # first: its command helper is forked while kipvs is small
    try:
        while True:
            report = filter_report(build_report(runner, source, options, kernel_only, check), selection)
            if as_json:
                emit_json(env, report)
            elif not check:
                from kipvs.render import print_show

                print_show(report, env, clear=watch is not None)
            if watch is None:
                break
            sleep(watch)
    except KeyboardInterrupt:
        if watch is None:
            raise
        return ExitStatus.OK
    return ExitStatus.OK if report["in_sync"] or not check else ExitStatus.DRIFT
