"""The typer app: options in, command functions called, results rendered. Exit statuses live here.

Options shared by several commands are declared once in `kipvs.cli_options` and arrive here
built and validated (ProxyOptions, SourceOptions, RunOptions); each command then calls its
`kipvs.commands` module with the injected output environment.
"""
from __future__ import annotations

import os
from typing import Optional

import typer

from kipvs import __version__
from kipvs.cli_options import (INTERFACE, MODE, PROXY, RUN, SOURCE, WATCH, Output, PflagGroup, Settings,
                               bool_option, command, configure_logging, current_environment, flag)
from kipvs.config import ProxyOptions, RunOptions, SourceOptions, WatchRequest, parse_interface, parse_node_ips
from kipvs.environment import Environment
from kipvs.errors import ExitStatus

app = typer.Typer(
    name="kipvs",
    cls=PflagGroup,  # -q alone, -q=true and -q=false
    help="Make this node's IPVS services, service addresses and local routes match the Kubernetes cluster.",
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode=None,  # plain help: wrapped, never cut at 80 columns (kipvs/cli_help.py)
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"kipvs {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, envvar="KIPVS_VERBOSE",
                                help="More logs on stderr (-v: each command run, -vv: debug)."),
    quiet: str = bool_option(False, "--quiet", "-q", envvar="KIPVS_QUIET",
                             help="Only errors on stderr (no summary line)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    env = current_environment(ctx)
    env.quiet = flag(quiet, "--quiet")
    configure_logging(env, verbose, env.quiet)


@command(app, "fix-routes", RUN)
def fix_routes_command(
    env: Environment,
    run: RunOptions,
    interface: str = INTERFACE.option,
    node_ip: Optional[list[str]] = typer.Option(
        None, "--node-ip", envvar="KIPVS_NODE_IP",
        help="This node's IP, one per family (repeat for dual stack). "
             "Default: from the interface holding the default route (IPv4: its primary address; IPv6: its "
             "lowest permanent global address)."),
) -> ExitStatus:
    """Make the local route of every address on the dummy interface use the node IP as source.

    Repairs kube-router issue #376 (connections from a node to a service hang when the backend is on another node) and, for IPv6, #1698. Needs no API server; works on nodes run by kube-router (kube-dummy-if) or kube-proxy (--interface kube-ipvs0). Only the interface's own wrong routes change: the repaired route is added and read back before a wrong one is deleted (IPv6 VIPs on a down interface are skipped), and routes left for addresses no longer on the interface are removed. After an IPv4 repair it runs `ip neigh flush nud incomplete`, which is host-wide: every unresolved neighbour entry on every interface goes (resolved ones stay), so the next packet resolves afresh with the node IP as sender. Exit 0 when every route is correct afterwards, 1 when some is not, 2 on error.
    """
    from kipvs.commands.fix_routes import run_fix_routes

    return run_fix_routes(env, parse_interface(interface), parse_node_ips(node_ip or []), run)


@command(app, "sync", SOURCE, PROXY, RUN)
def sync_command(env: Environment, source: SourceOptions, options: ProxyOptions, run: RunOptions) -> ExitStatus:
    """Reconcile once: make IPVS, the dummy interface's addresses and their local routes match the cluster.

    Reads the cluster (API or --cluster-file) and the kernel (ipvsadm -S -n, ip -j addr, ip -j route), applies only the difference in batches (ip -batch, ipvsadm -R, sysctl), then verifies: what a tool did not report applied is read again. Changes only what kipvs owns. A TCP or SCTP real server that leaves first drains at weight 0 while the kernel counts connections to it (--ipvs-graceful-termination, --ipvs-graceful-period). A cluster object kipvs cannot use is reported on one line (kind, namespace/name, field) and the rest is programmed. Exit 0 when the kernel matches afterwards, 1 when it does not, 2 on error (nothing is changed when the cluster cannot be read, or lacks EndpointSlices, Nodes or this node's Node).
    """
    from kipvs.commands.sync import run_sync

    return run_sync(env, source, options, run)


@command(app, "show", SOURCE, PROXY, RUN.only("output", "command_timeout"))
def show_command(
    env: Environment, source: SourceOptions, options: ProxyOptions, run: RunOptions,
    check: str = bool_option(False, "--check", envvar=None,
                             help="Print nothing; exit 0 when in sync, 1 on drift, 2 on error."),
    service: Optional[str] = typer.Option(None, "--service", metavar="NAMESPACE/NAME",
                                          help="Show only this Service."),
    namespace: Optional[str] = typer.Option(None, "--namespace", help="Show only this namespace's Services."),
    vip: Optional[str] = typer.Option(None, "--vip", metavar="VIP[:PORT]",
                                      help="Show only the virtual servers of this address (and port)."),
    kernel_only: str = bool_option(False, "--kernel-only", envvar=None,
                                   help="Read only the kernel, not the cluster (what show does by itself when "
                                        "the API server or cluster file cannot be read)."),
    watch: str = bool_option(False, "--watch", "-w", envvar=None,
                             help="Redraw every --interval seconds until Ctrl-C."),
    interval: float = typer.Option(2.0, "--interval", help="Seconds between two redraws of --watch."),
) -> ExitStatus:
    """Troubleshoot: each service, its virtual servers and real servers (pod, node, forwarding, weight, connections), route health, and the drift between cluster and kernel.

    Where the kernel's value differs from the wanted one, both are shown (want 1, kernel 0). When the cluster cannot be read, one line says so and the kernel's own state is shown: virtual and real servers with weights and connections, the dummy interface's addresses and their routes' src, kipvs's netfilter chains and the drain record; Services and pods are then unknown. With --check, exit 0 when in sync, 1 when there is drift, 2 on error (the diff convention), for cron and monitoring. --output json is one document whose layout is versioned by its "schema" field (see kipvs-show(8)).
    """
    from kipvs.commands.show import run_show
    from kipvs.troubleshoot.selection import parse_filter
    from kipvs.config import parse_seconds
    from kipvs.errors import ConfigError

    if watch and check:
        raise ConfigError("--watch and --check exclude each other: --check answers once")
    return run_show(env, source, options, run.command_timeout, run.json, check,
                    parse_filter(service, namespace, vip), kernel_only,
                    parse_seconds(interval, "--interval") if watch else None)


@command(app, "doctor", SOURCE, PROXY, RUN.only("output", "command_timeout"))
def doctor_command(
    env: Environment, source: SourceOptions, options: ProxyOptions, run: RunOptions,
    targets: Optional[list[str]] = typer.Argument(None, metavar="VIP:PORT...", show_default=False, hidden=True),
) -> ExitStatus:
    """Walk every hop to a service address (VIP:PORT, or VIP for all its ports; several may be given) on this node and name the broken one, with the command that repairs it.

    The hops: the address on the dummy interface, its local route's src, the IPVS virtual server, its real servers (ready, weights, draining), the firewall and source ranges, the masquerade, and conntrack entries to real servers that are gone. Each is one line, ✔ or ✘, with what was seen and, when broken, the exact fix; a hop that cannot be judged because an earlier one is broken is marked ·. Without the cluster (API or --cluster-file unreadable) it judges from the kernel alone and says so. Exit 0 when every hop is sound, 1 when one is broken, 2 on error.
    """
    from kipvs.commands.doctor import run_doctor
    from kipvs.errors import ConfigError

    if not targets:
        raise ConfigError("doctor: name the service address to check: kipvs doctor VIP[:PORT], e.g. 10.254.0.20:80")
    return run_doctor(env, source, options, run.command_timeout, run.json, targets)


@command(app, "cleanup", PROXY.only("interface", "service_node_port_range", "excluded_cidrs", "iptables_mode"),
         RUN.only("dry_run", "command_timeout", "lock_file", "lock_timeout"))
def cleanup_command(env: Environment, options: ProxyOptions, run: RunOptions,
                    kube_router_leftovers: str = bool_option(
                        False, "--kube-router-leftovers", envvar="KIPVS_KUBE_ROUTER_LEFTOVERS",
                        help="Remove only what kube-router's service proxy left in netfilter (its KUBE-ROUTER-* "
                             "chains, the jumps into them, its IPVS SNAT rules, its ipsets), once kipvs's own "
                             "rules are in place; nothing of kipvs's.")) -> ExitStatus:
    """Remove what kipvs owns: virtual servers on its interface's addresses and NodePort-range ones on node addresses, those addresses and their routes, the interface itself, and kipvs's netfilter chains (KIPVS-*) with the jumps into them. Nothing else."""
    from kipvs.commands.cleanup import run_cleanup

    return run_cleanup(env, options, run, kube_router_leftovers)


@command(app, "watch", SOURCE.only("kubeconfig", "master", "node_name", "node_ip"), PROXY,
         RUN.only("command_timeout", "lock_file", "lock_timeout"), WATCH, MODE)
def watch_command(env: Environment, source: SourceOptions, options: ProxyOptions, run: RunOptions,
                  request: WatchRequest, settings: Settings) -> ExitStatus:
    """Run as the node's service proxy: list+watch Services, EndpointSlices and this node's Node and keep the kernel in sync.

    Reacts to changes within --min-sync-period, resyncs every --sync-period, survives API restarts, dropped and silent watches and expired resource versions (re-list), and never tears down working rules because the API misbehaves: while it is unreachable the last programmed state stays. A cluster object kipvs cannot use is logged once when it appears and once when it is fixed. SIGTERM or SIGINT finish the sync in progress and exit 0, leaving the rules in place. The settings it runs with are written to --effective-config, which show, sync, cleanup and fix-routes on the node then read by default. Run it from systemd (deploy/kipvs.service) or as a DaemonSet (deploy/daemonset.yaml).
    """
    from kipvs.commands.watch import run_watch

    header = ("The settings kipvs watch runs with on this node (pid %d), with where each came from.\n"
              "kipvs show, sync, cleanup and fix-routes read this file when no --config is given." % os.getpid())
    return run_watch(env, source, options, run, request, settings.render(header, exported_only=True))


config_app = typer.Typer(name="config", no_args_is_help=True, rich_markup_mode=None, cls=PflagGroup,
                         help="The configuration file: what each setting is, and where it came from.")
app.add_typer(config_app, name="config")


@command(config_app, "print", SOURCE, PROXY, RUN.only("command_timeout", "lock_file", "lock_timeout"), WATCH,
         writes=False)
def config_print_command(env: Environment, source: SourceOptions, options: ProxyOptions, run: RunOptions,
                         request: WatchRequest, settings: Settings) -> ExitStatus:
    """Print the settings show and sync would use here (flags, environment, configuration file, defaults), as a configuration file, each with where it came from.

    Each setting is commented with its origin: flag, env NAME, file PATH, or default. The output is itself a valid --config file (redirect it to /etc/kipvs/config.yaml to start one). The options are checked as the commands check them: a bad value is one line and exit 2.
    """
    header = f"Settings of kipvs on this node; configuration file: {settings.path or 'none'}."
    env.stdout.write(settings.render(header))
    return ExitStatus.OK


def main() -> None:
    from kipvs.cli_help import run

    run(app)  # one-line usage errors, named values in --help, completion per shell
