"""Rich rendering of `kipvs show` for a person at a terminal."""
from __future__ import annotations

import os
import sys

from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

STATE_STYLE = {"ok": "green", "missing": "red", "extra": "red", "different": "yellow"}


def _state(state: str) -> Text:
    return Text(state, style=STATE_STYLE.get(state, ""))


def show_view(report: dict) -> Group:
    node = report["node"]
    ips = ", ".join(node["ips"].values()) or "none"
    parts: list = [Text.from_markup(f"[bold]node[/] {escape(node['name'])}  [bold]node IPs[/] {ips}  "
                                    f"[bold]interface[/] {escape(node['interface'])}  " +
                                    ("[green]in sync[/]" if report["in_sync"] else "[red]drift[/]"))]
    tree = Tree("[bold]services[/]")
    for svc in report["services"]:
        branch = tree.add(f"[bold cyan]{escape(svc['namespace'])}/{escape(svc['name'])}[/]")
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
                table.add_row(rs["address"], rs["pod"], rs["node"], str(rs["weight"]), str(rs["active"]),
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
    for problem in report["problems"]:
        parts.append(Text(f"problem: {problem}", style="yellow"))
    return Group(*parts)


def print_show(report: dict, console: Console | None = None) -> None:
    # Piped output (less, grep, a ticket) should not be cut to 80 columns; COLUMNS still wins.
    if console is None:
        # Height too: with TERM=dumb rich ignores a width given alone and falls back to 80 columns.
        console = Console() if sys.stdout.isatty() else Console(width=int(os.environ.get("COLUMNS", "200")),
                                                                height=int(os.environ.get("LINES", "50")))
    console.print(show_view(report))
