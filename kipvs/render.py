"""Rich rendering of `kipvs show` for a person at a terminal."""
from __future__ import annotations

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from kipvs.environment import Environment, terminal_width

STATE_STYLE = {"ok": "green", "missing": "red", "extra": "red", "different": "yellow", "draining": "magenta",
               "weight 0 (unknown why)": "yellow"}
COLUMNS = ("real server", "pod", "node", "forward", "weight", "active", "inactive", "cps", "state")


def _state(state: str) -> Text:
    return Text(state, style=STATE_STYLE.get(state, ""))


def _side_by_side(wanted, kernel) -> Text:
    """One value when both agree (or one side has none); `want W, kernel K` where they differ."""
    if wanted is None or kernel is None or wanted == kernel:
        return Text(str(kernel if wanted is None else wanted))
    return Text(f"want {wanted}, kernel {kernel}", style="yellow")


def _real_servers(vs: dict) -> Table:
    table = Table(box=None, pad_edge=False, show_header=True, header_style="dim")
    for column in COLUMNS:
        table.add_column(column)
    for rs in vs["real_servers"]:
        # Cells are markup by default: names from the cluster must be plain text.
        table.add_row(Text(rs["label"]), Text(str(rs["pod"])), Text(str(rs["node"])),
                      _side_by_side(rs["forward"], rs["kernel_forward"]),
                      _side_by_side(rs["weight"], rs["kernel_weight"]), str(rs["active"]), str(rs["inactive"]),
                      str(rs["cps"]), _state(rs["state"]))
    return table


def _virtual_server(parent: Tree, vs: dict) -> None:
    scheduler = vs["scheduler"] + (f" ({','.join(vs['flags'])})" if vs["flags"] else "")
    persist = f" persistent {vs['persistent']}s" if vs["persistent"] else ""
    label = Text.assemble((vs["label"], "bold"), f"  {vs['kind']}", f"  {scheduler}{persist}  ", _state(vs["state"]))
    for diff in vs["differences"]:
        label.append(f"  {diff['field']}: want {diff['wanted']}, kernel {diff['kernel']}", style="yellow")
    branch = parent.add(label)
    if not vs["real_servers"]:
        branch.add(Text("no endpoints: connections are refused", style="yellow"))
    else:
        branch.add(_real_servers(vs))


def _header(report: dict) -> Text:
    node = report["node"]
    ips = ", ".join(node["ips"].values()) or "none"
    state = ("in sync", "green") if report["in_sync"] else ("drift", "red") if report["in_sync"] is False else \
        ("kernel only", "yellow")
    # Everything from the cluster or the command line is plain Text, never markup.
    return Text.assemble(("node", "bold"), f" {node['name']}  ", ("node IPs", "bold"), f" {ips}  ",
                         ("interface", "bold"), f" {node['interface']}  ", state)


def _services(report: dict) -> Tree:
    tree = Tree("[bold]services[/]")
    for svc in report["services"]:
        branch = tree.add(Text(f"{svc['namespace']}/{svc['name']}", style="bold cyan"))
        if svc.get("netfilter"):
            nf = svc["netfilter"]
            ranges = f"; source ranges {', '.join(nf['source_ranges'])}" if nf["source_ranges"] else ""
            kept = "; external traffic keeps the client IP (Local)" if nf["client_ip_kept"] else ""
            branch.add(Text(f"hairpin {nf['hairpin']}; firewall {nf['firewall']}{ranges}{kept}", style="dim"))
        for note in svc.get("notes", ()):
            branch.add(Text(f"note: {note}", style="dim"))
        for vs in svc["virtual_servers"]:
            _virtual_server(branch, vs)
    return tree


def _kernel_only(report: dict) -> list:
    parts: list = [Text(f"cluster unavailable ({report['cluster']['reason']}): the kernel's state only; Services, "
                        "pods and wanted values are unknown", style="yellow")]
    tree = Tree("[bold]virtual servers on this node[/]")
    for vs in report["virtual_servers"]:
        _virtual_server(tree, vs)
    parts.append(tree)
    record = report.get("drain_record") or {}
    for entry in record.get("entries", ()):
        parts.append(Text(f"drain record {record['path']}: {entry['virtual_server']} {entry['real_server']} "
                          f"left its EndpointSlice at {entry['since']:.0f} (unix time)", style="magenta"))
    netfilter = report.get("netfilter") or {}
    for chain in netfilter.get("rules", ()):
        parts.append(Text(f"netfilter IPv{chain['family']} {chain['table']} {chain['chain']}: "
                          f"{len(chain['rules'])} kipvs rule(s)", style="dim"))
    return parts


def _routes(report: dict) -> Table:
    routes = Table(title="local routes of service addresses", title_justify="left", box=None, header_style="dim")
    for column in ("address", "src", "want", ""):
        routes.add_column(column)
    for route in report["routes"]:
        routes.add_row(route["address"], ", ".join(filter(None, route["src"])) or "(none)",
                       route["expected_src"] or "(no node IP)", _state("ok" if route["ok"] else "different"))
    return routes


def show_view(report: dict) -> Group:
    parts: list = [_header(report)]
    if report.get("masquerade"):
        parts.append(Text(f"masquerade (every Service): {report['masquerade']}", style="dim"))
    parts += [_services(report)] if report.get("mode") != "kernel" else _kernel_only(report)
    parts.append(_routes(report))
    netfilter = report.get("netfilter")
    if netfilter:
        parts.append(Text(f"netfilter: iptables {netfilter['backend']} backend" if netfilter["backend"] else
                          f"netfilter: unavailable: {netfilter['unavailable']}",
                          style="dim" if netfilter["backend"] else "yellow"))
        if netfilter.get("sets"):
            parts.append(Text("ipsets: " + ", ".join(f"{name} {size}" for name, size in netfilter["sets"].items()),
                              style="dim"))
        for warning in netfilter.get("warnings", ()):
            parts.append(Text(f"netfilter: {warning}", style="yellow"))
        for chain in netfilter["leftovers"]:
            parts.append(Text(f"left over by another service proxy: {chain}", style="yellow"))
    drift = report["drift"]
    if report["in_sync"] is False:
        lines = Text("drift (what `kipvs sync` would run):\n", style="bold red")
        for command in drift["commands"][:50]:
            lines.append(f"  {command}\n")
        if len(drift["commands"]) > 50:
            lines.append(f"  … {len(drift['commands']) - 50} more\n")
        parts.append(lines)
    if report["foreign_virtual_servers"]:
        parts.append(Text("not kipvs's, left alone: " + ", ".join(report["foreign_virtual_servers"]), style="dim"))
    held = report.get("removals_held") or {}
    if held.get("count"):
        parts.append(Text(f"removals held: {held['count']} stale virtual server(s) and address(es) kept, because "
                          f"the addresses of {', '.join(held['services'])} could not be read", style="red"))
    for problem in report["problems"]:
        parts.append(Text(f"problem: {problem['text']}", style="yellow"))
    return Group(*parts)


def print_show(report: dict, env: Environment | None = None, console: Console | None = None,
               clear: bool = False) -> None:
    """`clear`: redraw in place (show --watch) when stdout is a terminal."""
    if console is None:
        env = env or Environment()
        # Piped output (less, grep, a ticket) should not be cut to 80 columns; COLUMNS still wins. Height
        # too: with TERM=dumb rich ignores a width given alone and falls back to 80 columns.
        console = Console(file=env.stdout) if env.stdout_isatty else \
            Console(file=env.stdout, width=terminal_width(), height=50)
    if clear and console.is_terminal:
        console.clear()
    console.print(show_view(report))
