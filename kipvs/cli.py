"""The typer app: options in, command functions called, results rendered. Exit statuses live here."""
from __future__ import annotations

import json
import logging
import sys
from contextlib import contextmanager
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
    rich_markup_mode=None,  # plain help: wrapped, never cut at 80 columns (kipvs/cli_help.py)
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
    if sys.stderr.isatty():
        # A person at a terminal: colours (rich honours NO_COLOR), no timestamps.
        from rich.console import Console
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(console=Console(stderr=True), show_time=False, show_path=False,
                                               markup=False)
    else:
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


def writer_lock(dry_run: bool, lock_file: str, lock_timeout: float):
    """Changing commands hold the node lock; a dry run changes nothing and needs none."""
    from contextlib import nullcontext

    from kipvs.lock import node_lock

    return nullcontext() if dry_run else node_lock(lock_file, lock_timeout)


@contextmanager
def progress_reporter():
    """A spinner with the current phase on a terminal; plain log lines (-v) when stderr is not one."""
    if not sys.stderr.isatty():
        yield lambda phase: log.info("%s", phase)
        return
    from rich.console import Console

    with Console(stderr=True).status("starting") as status:
        yield lambda phase: status.update(phase)


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

LOCK_FILE = typer.Option("/run/kipvs.lock", "--lock-file", envvar="KIPVS_LOCK_FILE",
                         help="Lock shared by every kipvs that changes this node (watch, sync, fix-routes, cleanup).")
LOCK_TIMEOUT = typer.Option(30.0, "--lock-timeout", envvar="KIPVS_LOCK_TIMEOUT",
                            help="Seconds to wait for another kipvs to finish before giving up.")


@app.command("fix-routes")
def fix_routes_command(
    interface: str = INTERFACE,
    node_ip: Optional[list[str]] = NODE_IP,
    dry_run: bool = DRY_RUN,
    output: Output = OUTPUT,
    command_timeout: float = TIMEOUT,
    lock_file: str = LOCK_FILE,
    lock_timeout: float = LOCK_TIMEOUT,
) -> None:
    """Make the local route of every address on the dummy interface use the node IP as source.

    Repairs kube-router issue #376 (connections from a node to a service hang when the backend is on another node) and, for IPv6, #1698. Needs no API server; works on nodes run by kube-router (kube-dummy-if) or kube-proxy (--interface kube-ipvs0). Only wrong routes are changed, in one `ip -batch`, and the result is read back. Exit 0 when every route is correct afterwards, 1 when some is not, 2 on error.
    """
    from kipvs.commands.fix_routes import fix_routes

    def action() -> ExitStatus:
        with writer_lock(dry_run, lock_file, lock_timeout):
            report = fix_routes(make_runner(dry_run, command_timeout), interface, node_ip or [])
        if output is Output.json:
            emit_json(report.to_json())
        else:
            print(report.summary(), file=sys.stderr)
        return ExitStatus.OK if report.ok else ExitStatus.DRIFT

    run_guarded(action)


CLUSTER_FILE = typer.Option(None, "--cluster-file", "-f", envvar="KIPVS_CLUSTER_FILE",
                            help="Read Services, EndpointSlices and Nodes from this `kubectl get "
                                 "services,endpointslices,nodes -A -o yaml|json` dump ('-' for stdin) instead of the API.")
KUBECONFIG = typer.Option(None, "--kubeconfig", envvar="KUBECONFIG",
                          help="kubeconfig file (default: in-cluster config, else ~/.kube/config).")
NODE_NAME = typer.Option(None, "--node-name", envvar="NODE_NAME", help="This node's name (default: the hostname).")
SYNC_NODE_IP = typer.Option(None, "--node-ip", envvar="KIPVS_NODE_IP",
                            help="This node's IP, one per family (repeat for dual stack). Default: the Node "
                                 "object's InternalIPs, else the default-route interface's address.")
SCHEDULER = typer.Option("rr", "--scheduler", envvar="KIPVS_SCHEDULER",
                         help="IPVS scheduler for services without a scheduler annotation.")
NODE_PORT_RANGE = typer.Option("30000-32767", "--service-node-port-range", envvar="KIPVS_SERVICE_NODE_PORT_RANGE",
                               help="NodePort range; NodePort virtual servers in it on node addresses are kipvs's.")
BINDON_ALL = typer.Option(False, "--nodeport-bindon-all-ip", envvar="KIPVS_NODEPORT_BINDON_ALL_IP",
                          help="Serve NodePorts on every local address, not only the node IP.")
EXTERNAL_RANGE = typer.Option(None, "--service-external-ip-range", envvar="KIPVS_SERVICE_EXTERNAL_IP_RANGE",
                              help="CIDR allowed for spec.externalIPs (repeatable).")
LB_RANGE = typer.Option(None, "--loadbalancer-ip-range", envvar="KIPVS_LOADBALANCER_IP_RANGE",
                        help="CIDR allowed for status.loadBalancer.ingress IPs (repeatable).")
STRICT = typer.Option(True, "--strict-external-ip-validation/--no-strict-external-ip-validation",
                      envvar="KIPVS_STRICT_EXTERNAL_IP_VALIDATION",
                      help="Program external and load-balancer IPs only inside the ranges above (CVE-2020-8554).")
EXCLUDED = typer.Option(None, "--excluded-cidrs", envvar="KIPVS_EXCLUDED_CIDRS",
                        help="CIDRs kipvs never touches, even on its own interface (repeatable or comma-separated).")


def proxy_options(interface, scheduler, node_port_range, bindon_all, external_range, lb_range, strict, excluded):
    from kipvs.config import ProxyOptions, parse_cidrs, parse_port_range, parse_scheduler

    return ProxyOptions(
        interface=interface, scheduler=parse_scheduler(scheduler), node_port_range=parse_port_range(node_port_range),
        nodeport_bindon_all_ip=bindon_all,
        external_ip_ranges=parse_cidrs(external_range or [], "--service-external-ip-range"),
        loadbalancer_ip_ranges=parse_cidrs(lb_range or [], "--loadbalancer-ip-range"),
        strict_external_ip_validation=strict, excluded_cidrs=parse_cidrs(excluded or [], "--excluded-cidrs"))


def load_snapshot(cluster_file: Optional[str], kubeconfig: Optional[str]):
    if cluster_file:
        from kipvs.sources.file import read_cluster_file

        return read_cluster_file(cluster_file)
    from kipvs.sources.api import load_client_config, read_cluster_api

    return read_cluster_api(load_client_config(kubeconfig))


def node_identity(node_name: Optional[str], node_ip: Optional[list[str]]):
    import socket

    from kipvs.commands.sync import NodeIdentity

    return NodeIdentity(node_name or socket.gethostname(), tuple(node_ip or []))


@app.command("sync")
def sync_command(
    cluster_file: Optional[str] = CLUSTER_FILE,
    kubeconfig: Optional[str] = KUBECONFIG,
    node_name: Optional[str] = NODE_NAME,
    node_ip: Optional[list[str]] = SYNC_NODE_IP,
    interface: str = INTERFACE,
    scheduler: str = SCHEDULER,
    service_node_port_range: str = NODE_PORT_RANGE,
    nodeport_bindon_all_ip: bool = BINDON_ALL,
    service_external_ip_range: Optional[list[str]] = EXTERNAL_RANGE,
    loadbalancer_ip_range: Optional[list[str]] = LB_RANGE,
    strict_external_ip_validation: bool = STRICT,
    excluded_cidrs: Optional[list[str]] = EXCLUDED,
    dry_run: bool = DRY_RUN,
    output: Output = OUTPUT,
    command_timeout: float = TIMEOUT,
    lock_file: str = LOCK_FILE,
    lock_timeout: float = LOCK_TIMEOUT,
) -> None:
    """Reconcile once: make IPVS, the dummy interface's addresses and their local routes match the cluster.

    Reads the cluster (API or --cluster-file) and the kernel (ipvsadm -S -n, ip -j addr, ip -j route), applies only the difference in batches (ip -batch, ipvsadm -R, sysctl), then reads the kernel again to verify. Changes only what kipvs owns. Exit 0 when the kernel matches afterwards, 1 when it does not, 2 on error (nothing is changed when the cluster cannot be read).
    """
    from kipvs.commands.sync import sync_once

    def action() -> ExitStatus:
        options = proxy_options(interface, scheduler, service_node_port_range, nodeport_bindon_all_ip,
                                service_external_ip_range, loadbalancer_ip_range, strict_external_ip_validation,
                                excluded_cidrs)
        snapshot = load_snapshot(cluster_file, kubeconfig)
        with writer_lock(dry_run, lock_file, lock_timeout), progress_reporter() as progress:
            result = sync_once(make_runner(dry_run, command_timeout), snapshot, node_identity(node_name, node_ip),
                               options, progress)
        if output is Output.json:
            emit_json({"counts": dict(result.plan.counts), "commands": result.plan.command_lines(),
                       "remaining": result.remaining, "problems": [str(p) for p in result.desired.problems],
                       "converged": result.converged, "dry_run": dry_run, "seconds": round(result.seconds, 3)})
        else:
            print(result.summary(), file=sys.stderr)
        return ExitStatus.OK if result.converged else ExitStatus.DRIFT

    run_guarded(action)


@app.command("show")
def show_command(
    cluster_file: Optional[str] = CLUSTER_FILE,
    kubeconfig: Optional[str] = KUBECONFIG,
    node_name: Optional[str] = NODE_NAME,
    node_ip: Optional[list[str]] = SYNC_NODE_IP,
    interface: str = INTERFACE,
    scheduler: str = SCHEDULER,
    service_node_port_range: str = NODE_PORT_RANGE,
    nodeport_bindon_all_ip: bool = BINDON_ALL,
    service_external_ip_range: Optional[list[str]] = EXTERNAL_RANGE,
    loadbalancer_ip_range: Optional[list[str]] = LB_RANGE,
    strict_external_ip_validation: bool = STRICT,
    excluded_cidrs: Optional[list[str]] = EXCLUDED,
    check: bool = typer.Option(False, "--check", help="Print nothing; exit 0 when in sync, 1 on drift, 2 on error."),
    output: Output = OUTPUT,
    command_timeout: float = TIMEOUT,
) -> None:
    """Troubleshoot: each service, its virtual servers and real servers (pod, node, weight, connections), route health, and the drift between cluster and kernel.

    With --check, exit 0 when in sync, 1 when there is drift, 2 on error (the diff convention), for cron and monitoring.
    """
    from kipvs.commands.show import show

    def action() -> ExitStatus:
        options = proxy_options(interface, scheduler, service_node_port_range, nodeport_bindon_all_ip,
                                service_external_ip_range, loadbalancer_ip_range, strict_external_ip_validation,
                                excluded_cidrs)
        snapshot = load_snapshot(cluster_file, kubeconfig)
        report = show(Runner(timeout=command_timeout), snapshot, node_identity(node_name, node_ip), options)
        if output is Output.json:
            emit_json(report)
        elif not check:
            from kipvs.render import print_show

            print_show(report)
        return ExitStatus.OK if report["in_sync"] or not check else ExitStatus.DRIFT

    run_guarded(action)


@app.command("cleanup")
def cleanup_command(
    interface: str = INTERFACE,
    service_node_port_range: str = NODE_PORT_RANGE,
    excluded_cidrs: Optional[list[str]] = EXCLUDED,
    dry_run: bool = DRY_RUN,
    command_timeout: float = TIMEOUT,
    lock_file: str = LOCK_FILE,
    lock_timeout: float = LOCK_TIMEOUT,
) -> None:
    """Remove what kipvs owns: virtual servers on its interface's addresses and NodePort-range ones on node addresses, those addresses and their routes, and the interface itself. Nothing else."""
    from kipvs.commands.cleanup import cleanup

    def action() -> ExitStatus:
        options = proxy_options(interface, "rr", service_node_port_range, False, [], [], True, excluded_cidrs)
        with writer_lock(dry_run, lock_file, lock_timeout):
            plan, remaining = cleanup(make_runner(dry_run, command_timeout), options)
        print(f"cleanup: {plan.summary()}" + (f"; {len(remaining)} left over" if remaining else ""), file=sys.stderr)
        return ExitStatus.OK if not remaining else ExitStatus.DRIFT

    run_guarded(action)


def parse_duration(value: str, option: str) -> float:
    """Seconds from `300`, `300s`, `5m`, `1h` or `250ms` (kube-router writes durations like 5m0s too)."""
    from kipvs.errors import ConfigError

    text, total = value.strip(), 0.0
    units = {"ms": 0.001, "h": 3600, "m": 60, "s": 1}
    try:
        if text.replace(".", "", 1).isdigit():
            return float(text)
        while text:
            number = ""
            while text and (text[0].isdigit() or text[0] == "."):
                number, text = number + text[0], text[1:]
            unit = next(u for u in units if text.startswith(u))
            total, text = total + float(number) * units[unit], text[len(unit):]
    except (StopIteration, ValueError):
        raise ConfigError(f"{option} {value!r}: expected a duration like 300s, 5m or 1h") from None
    return total


@app.command("watch")
def watch_command(
    kubeconfig: Optional[str] = KUBECONFIG,
    node_name: Optional[str] = NODE_NAME,
    node_ip: Optional[list[str]] = SYNC_NODE_IP,
    interface: str = INTERFACE,
    scheduler: str = SCHEDULER,
    service_node_port_range: str = NODE_PORT_RANGE,
    nodeport_bindon_all_ip: bool = BINDON_ALL,
    service_external_ip_range: Optional[list[str]] = EXTERNAL_RANGE,
    loadbalancer_ip_range: Optional[list[str]] = LB_RANGE,
    strict_external_ip_validation: bool = STRICT,
    excluded_cidrs: Optional[list[str]] = EXCLUDED,
    min_sync_period: str = typer.Option("200ms", "--min-sync-period", envvar="KIPVS_MIN_SYNC_PERIOD",
                                        help="Least time between two syncs: a burst of changes becomes one sync."),
    sync_period: str = typer.Option("5m", "--sync-period", "--ipvs-sync-period", envvar="KIPVS_SYNC_PERIOD",
                                    help="Full resync at least this often, also repairing drift made by hand."),
    metrics_addr: Optional[str] = typer.Option(None, "--metrics-addr", envvar="KIPVS_METRICS_ADDR",
                                               help="Serve Prometheus /metrics and /healthz here, e.g. 0.0.0.0:9254."),
    health_max_age: str = typer.Option("15m", "--health-max-age", envvar="KIPVS_HEALTH_MAX_AGE",
                                       help="/healthz fails when the last converged sync is older than this."),
    cleanup_on_exit: bool = typer.Option(False, "--cleanup-on-exit", envvar="KIPVS_CLEANUP_ON_EXIT",
                                         help="On SIGTERM/SIGINT remove what kipvs owns (default: leave the rules "
                                              "in place so traffic flows while kipvs restarts)."),
    lock_file: str = LOCK_FILE,
    lock_timeout: float = LOCK_TIMEOUT,
    command_timeout: float = TIMEOUT,
) -> None:
    """Run as the node's service proxy: list+watch Services, EndpointSlices and Nodes and keep the kernel in sync.

    Reacts to changes within --min-sync-period, resyncs every --sync-period, survives API restarts, dropped and silent watches and expired resource versions (re-list), and never tears down working rules because the API misbehaves: while it is unreachable the last programmed state stays. SIGTERM or SIGINT finish the sync in progress and exit 0, leaving the rules in place. Run it from systemd (scripts/kipvs.service) or as a DaemonSet (scripts/daemonset.yaml).
    """
    import signal

    from kipvs.commands.cleanup import cleanup
    from kipvs.commands.watch import Watcher, WatchSettings, api_resources
    from kipvs.lock import node_lock
    from kipvs.metrics import Metrics, serve
    from kipvs.sources.api import load_client_config

    def action() -> ExitStatus:
        options = proxy_options(interface, scheduler, service_node_port_range, nodeport_bindon_all_ip,
                                service_external_ip_range, loadbalancer_ip_range, strict_external_ip_validation,
                                excluded_cidrs)
        settings = WatchSettings(min_sync_period=parse_duration(min_sync_period, "--min-sync-period"),
                                 sync_period=parse_duration(sync_period, "--sync-period"),
                                 lock_file=lock_file, lock_timeout=lock_timeout)
        api_client = load_client_config(kubeconfig)
        metrics = Metrics()
        if metrics_addr:
            serve(metrics, metrics_addr, parse_duration(health_max_age, "--health-max-age"))
        runner = Runner(timeout=command_timeout)
        watcher = Watcher(api_resources(api_client), runner, node_identity(node_name, node_ip), options, settings,
                          metrics, origin=api_client.configuration.host)

        def stop(signum, _frame):
            log.warning("%s: finishing the current sync, then exiting", signal.Signals(signum).name)
            watcher.shutdown()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        watcher.run()
        if cleanup_on_exit:
            with node_lock(lock_file, lock_timeout):
                plan, _ = cleanup(runner, options)
            log.warning("cleanup on exit: %s", plan.summary())
        else:
            log.warning("exiting; IPVS rules, addresses and routes stay in place")
        return ExitStatus.OK

    run_guarded(action)


def main() -> None:
    from kipvs.cli_help import run

    run(app)  # one-line usage errors, named values in --help, completion per shell
