"""The typer app: options in, command functions called, results rendered. Exit statuses live here."""
from __future__ import annotations

import json
import logging
import sys
from enum import Enum
from typing import Callable, Optional

import typer

from kipvs import __version__
from kipvs.errors import ExitStatus, KipvsError
from kipvs.runner import DryRunRunner, Runner

app = typer.Typer(
    name="kipvs",
    help="Make this node's IPVS services, service addresses and local routes match the Kubernetes cluster.",
    no_args_is_help=True,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
log = logging.getLogger("kipvs")


class Output(str, Enum):
    text = "text"
    json = "json"


def _version(value: bool) -> None:
    if value:
        print(f"kipvs {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, envvar="KIPVS_VERBOSE",
                                help="More logs on stderr (-v: each command run, -vv: debug)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", envvar="KIPVS_QUIET", help="Only errors on stderr."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("kipvs: %(levelname)s: %(message)s"))
    root = logging.getLogger("kipvs")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def make_runner(dry_run: bool, timeout: float) -> Runner:
    return DryRunRunner(timeout=timeout) if dry_run else Runner(timeout=timeout)


def run_guarded(action: Callable[[], ExitStatus]) -> None:
    """Map domain errors to one clear line on stderr and the matching exit status."""
    try:
        status = action()
    except KipvsError as exc:
        print(f"kipvs: error: {exc}", file=sys.stderr)
        raise typer.Exit(int(exc.status)) from None
    raise typer.Exit(int(status))


def emit_json(data: dict) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


INTERFACE = typer.Option("kube-dummy-if", "--interface", "-i", envvar="KIPVS_INTERFACE",
                         help="Dummy interface holding the service addresses (kube-proxy uses kube-ipvs0).")
NODE_IP = typer.Option(None, "--node-ip", envvar="KIPVS_NODE_IP",
                       help="This node's IP, one per family (repeat for dual stack). "
                            "Default: the primary address of the interface holding the default route.")
DRY_RUN = typer.Option(False, "--dry-run", "-n", envvar="KIPVS_DRY_RUN",
                       help="Print the exact commands on stdout, one per line, and change nothing.")
OUTPUT = typer.Option(Output.text, "--output", "-o", envvar="KIPVS_OUTPUT", help="Summary format.")
TIMEOUT = typer.Option(60.0, "--command-timeout", envvar="KIPVS_COMMAND_TIMEOUT",
                       help="Seconds before an ip/ipvsadm call is abandoned.")


@app.command("fix-routes")
def fix_routes_command(
    interface: str = INTERFACE,
    node_ip: Optional[list[str]] = NODE_IP,
    dry_run: bool = DRY_RUN,
    output: Output = OUTPUT,
    command_timeout: float = TIMEOUT,
) -> None:
    """Make the local route of every address on the dummy interface use the node IP as source.

    Repairs kube-router issue #376 (connections from a node to a service hang when
    the backend is on another node) and, for IPv6, #1698. Needs no API server; works
    on nodes run by kube-router (kube-dummy-if) or kube-proxy (--interface kube-ipvs0).
    Only wrong routes are changed, in one `ip -batch`. Exit 0 when every route is
    correct afterwards, 1 when some is not, 2 on error.
    """
    from kipvs.commands.fix_routes import fix_routes

    def action() -> ExitStatus:
        report = fix_routes(make_runner(dry_run, command_timeout), interface, node_ip or [])
        if output is Output.json:
            emit_json(report.to_json())
        else:
            print(report.summary(), file=sys.stderr)
        return ExitStatus.OK if report.ok else ExitStatus.DRIFT

    run_guarded(action)


def _not_yet(name: str) -> Callable[[], None]:
    def command() -> None:
        print(f"kipvs: {name} is not available yet in this version", file=sys.stderr)
        raise typer.Exit(int(ExitStatus.NOT_IMPLEMENTED))

    command.__doc__ = f"Not available yet in kipvs {__version__}."
    return command


for _name in ("sync", "watch", "cleanup", "show"):
    app.command(_name)(_not_yet(_name))


def main() -> None:
    app()
