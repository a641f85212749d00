"""Rich rendering of `kipvs show` for a person at a terminal."""
from __future__ import annotations

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from kipvs.environment import Environment, terminal_width

STATE_STYLE = {"ok": "green", "missing": "red", "extra": "red", "different": "yellow", "draining": "magenta"}


def _state(state: str) -> Text:
    return Text(state, style=STATE_STYLE.get(state, ""))


def show_view(report: dict) -> Group:
    node = report["node"]
    ips = ", ".join(node["ips"].values()) or "none"
    # Everything from the cluster or the command line is plain Text, never markup.
    parts: list = [Text.assemble(("node", "bold"), f" {node['name']}  ", ("node IPs", "bold"), f" {ips}  ",
                                 ("interface", "bold"), f" {node['interface']}  ",
                                 ("in sync", "green") if report["in_sync"] else ("drift", "red"))]
    tree = Tree("[bold]services[/]")
    for svc in report["services"]:
        branch = tree.add(Text(f"{svc['namespace']}/{svc['name']}", style="bold cyan"))
        if svc.get("netfilter"):
            nf = svc["netfilter"]
            ranges = f"; source ranges {', '.join(nf['source_ranges'])}" if nf["source_ranges"] else ""
            branch.add(Text(f"masquerade: {nf['masquerade']}; hairpin {nf['hairpin']}; firewall {nf['firewall']}"
                            f"{ranges}", style="dim"))
        for note in svc.get("notes", ()):
            branch.add(Text(f"note: {note}", style="dim"))
        for vs in svc["virtual_servers"]:
            persist = f" persistent {vs['persistent']}s" if vs["persistent"] else ""
            label = Text.assemble((vs["address"], "bold"), f"  {vs['kind']}", f"  {vs['scheduler']}{persist}  ",
                                  _state(vs["state"]))
            vs_branch = branch.add(label)
            if not vs["real_servers"]:
                vs_branch.add(Text("no endpoints: connections are refused", style="yellow"))
                continue
            table = Table(box=None, pad_edge=False, show_header=True, header_style="dim")
            for column in ("real server", "pod", "node", "weight", "active", "inactive", "cps", "state"):
                table.add_column(column)
            for rs in vs["real_servers"]:
                # Cells are markup by default: names from the cluster must be plain text.
                table.add_row(Text(rs["address"]), Text(str(rs["pod"])), Text(str(rs["node"])), str(rs["weight"]),
                              str(rs["active"]),
                              str(rs["inactive"]), str(rs["cps"]), _state(rs["state"]))
            vs_branch.add(table)
    parts.append(tree)
    routes = Table(title="local routes of service addresses", title_justify="left", box=None, header_style="dim")
    for column in ("address", "src", "want", ""):
        routes.add_column(column)
    for route in report["routes"]:
        routes.add_row(route["address"], ", ".join(filter(None, route["src"])) or "(none)",
                       route["expected_src"] or "(no node IP)", _state("ok" if route["ok"] else "different"))
    parts.append(routes)
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
    if not report["in_sync"]:
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
        parts.append(Text(f"problem: {problem}", style="yellow"))
    return Group(*parts)


def print_show(report: dict, env: Environment | None = None, console: Console | None = None) -> None:
    if console is None:
        env = env or Environment()
        # Piped output (less, grep, a ticket) should not be cut to 80 columns; COLUMNS still wins. Height
        # too: with TERM=dumb rich ignores a width given alone and falls back to 80 columns.
        console = Console(file=env.stdout) if env.stdout_isatty else \
            Console(file=env.stdout, width=terminal_width(), height=50)
    console.print(show_view(report))
