"""`kipvs show` without the cluster: what this node's kernel has, and only that.

Virtual and real servers with weights and connection counts, the dummy interface's addresses and
the health of their routes' src, kipvs's netfilter chains, and the drain record. What only the
API could say (which Service, which pod, what is wanted) is labelled unknown, never guessed.
"""
from __future__ import annotations


from kipvs.troubleshoot.fields import SHOW_SCHEMA, real_server_fields, virtual_server_fields
from kipvs.config import ProxyOptions, SourceOptions
from kipvs.draining import record_entries
from kipvs.errors import KipvsError
from kipvs.facts.ipvsadm import READ_CONNECTIONS, READ_RATES, Counters, parse_connections, parse_rates
from kipvs.facts.kernel import KernelFacts, read_kernel
from kipvs.netfilter.backend import NetfilterUnavailable, detect
from kipvs.netfilter.leftovers import leftovers
from kipvs.troubleshoot.netfilter_view import owned_rules
from kipvs.plan import is_owned
from kipvs.reconcile import load_record
from kipvs.routes import check_routes, resolve_node_ips, service_addresses_on
from kipvs.runner import Runner


def kernel_node_ips(source: SourceOptions, kernel: KernelFacts, interface: str) -> dict[int, str]:
    """--node-ip, else the default-route interface's address; none when neither gives one."""
    try:
        return resolve_node_ips(list(source.node_ips), kernel.net, interface=interface)
    except KipvsError:
        return {}


def _netfilter(runner: Runner, options: ProxyOptions) -> dict | None:
    if options.netfilter is None:
        return None
    try:
        facts = detect(runner, options.netfilter.mode, probe=False)
    except NetfilterUnavailable as exc:
        return {"backend": None, "unavailable": str(exc), "commands": [], "leftovers": [], "rules": []}
    return {"backend": facts.backend, "unavailable": None, "commands": [], "leftovers": leftovers(facts),
            "rules": owned_rules(facts)}


def kernel_report(runner: Runner, source: SourceOptions, options: ProxyOptions, reason: str) -> dict:
    kernel = read_kernel(runner)
    connections = parse_connections(runner.run(READ_CONNECTIONS))
    rates = parse_rates(runner.run(READ_RATES))
    record = record_entries(load_record(runner, options.drain_record))
    dummy_ips = set(service_addresses_on(kernel.net, options.interface))
    node_addresses = {a.ip for a in kernel.net.addresses if a.interface != options.interface}
    node_ips = kernel_node_ips(source, kernel, options.interface)
    servers, foreign = [], []
    for vs in sorted(kernel.rules, key=lambda v: v.key):
        if not is_owned(vs, dummy_ips, node_addresses, options):
            foreign.append(vs.label())
            continue
        rows = []
        for rs in vs.real_servers:
            row = real_server_fields(rs.key, None, rs, connections.get((vs.key, rs.key), Counters()),
                                     rates.get((vs.key, rs.key), Counters()))
            since = record.get((vs.label(), row["label"]))
            # Weight 0 without a record entry: draining a still-listed endpoint, or set by hand; only the API knows.
            row.update(pod="unknown", node="unknown",
                       drain={"since": since, "deadline": None, "endpoint_listed": False} if since else None,
                       state="draining" if since else "weight 0 (unknown why)" if rs.weight == 0 else "kernel")
            rows.append(row)
        servers.append({**virtual_server_fields(vs), "kind": "unknown", "port_name": "unknown", "state": "kernel",
                        "kernel": virtual_server_fields(vs), "differences": [], "real_servers": rows})
    by_dst = {}
    for route in kernel.net.local_routes:
        if route.type == "local":
            by_dst.setdefault(route.dst, []).append(route.prefsrc)
    routes = [{"address": c.vip, "src": by_dst.get(c.vip, []), "expected_src": c.node_ip, "ok": c.correct}
              for c in check_routes(sorted(dummy_ips), options.interface, node_ips, kernel.net)]
    return {
        "schema": SHOW_SCHEMA,
        "mode": "kernel",
        "cluster": {"available": False, "origin": None, "reason": reason},
        "node": {"name": source.node_name, "ips": {f"ipv{k}": v for k, v in node_ips.items()},
                 "interface": options.interface},
        "masquerade": None,
        "services": [],
        "virtual_servers": servers,
        "addresses": sorted(dummy_ips),
        "routes": routes,
        "drift": {"missing_virtual_servers": [], "different_virtual_servers": [], "extra_virtual_servers": [],
                  "missing_addresses": [], "extra_addresses": [],
                  "wrong_routes": [r["address"] for r in routes if not r["ok"]], "commands": []},
        "netfilter": _netfilter(runner, options),
        "drain_record": {"path": options.drain_record,
                         "entries": [{"virtual_server": vs, "real_server": rs, "since": since}
                                     for (vs, rs), since in sorted(record.items())]},
        "foreign_virtual_servers": foreign,
        "problems": [],
        "skipped": [],
        "in_sync": None,  # unknown: nothing says what is wanted
    }
