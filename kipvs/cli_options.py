"""Option groups shared by several commands, declared once and built into one options object each.

typer has no shared option groups: `command()` adds a group's parameters to a command's
signature and hands the command the object the group builds (ProxyOptions, SourceOptions,
RunOptions), already validated. Building happens inside the error guard, so a bad option
value is one line on stderr and exit status 2, like every other kipvs error.
"""
from __future__ import annotations

import inspect
import logging
import socket
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Optional

import typer

from kipvs.config import (NetfilterOptions, ProxyOptions, RunOptions, SourceOptions, check_lock_file, parse_bool,
                          parse_cidrs, parse_duration, parse_interface, parse_iptables_mode, parse_node_ips,
                          parse_node_name, parse_port_range, parse_scheduler, parse_seconds, parse_timeout)
from kipvs.environment import Environment
from kipvs.lock import DEFAULT_LOCK_FILE
from kipvs.errors import ExitStatus, KipvsError, PermissionDenied

log = logging.getLogger("kipvs")


class Output(str, Enum):
    text = "text"
    json = "json"


@dataclass(frozen=True)
class Param:
    name: str
    annotation: Any
    option: Any  # typer.Option(...)


@dataclass(frozen=True)
class Group:
    """Parameters that together build one options object, passed to the command as `keyword`."""

    keyword: str
    params: tuple[Param, ...]
    build: Callable[[dict], Any]

    def only(self, *names: str) -> "Group":
        return Group(self.keyword, tuple(p for p in self.params if p.name in names), self.build)


def _option(default, *names: str, envvar: str, help: str, **extra):
    return typer.Option(default, *names, envvar=envvar, help=help, **extra)


INTERFACE = Param("interface", str, _option(
    "kube-dummy-if", "--interface", "-i", envvar="KIPVS_INTERFACE",
    help="Dummy interface holding the service addresses (kube-proxy uses kube-ipvs0)."))

PROXY = Group("options", (
    INTERFACE,
    Param("scheduler", str, _option("rr", "--scheduler", envvar="KIPVS_SCHEDULER",
                                    help="IPVS scheduler for services without a scheduler annotation.")),
    Param("service_node_port_range", str, _option(
        "30000-32767", "--service-node-port-range", envvar="KIPVS_SERVICE_NODE_PORT_RANGE",
        help="NodePort range; NodePort virtual servers in it on node addresses are kipvs's.")),
    Param("nodeport_bindon_all_ip", bool, _option(
        False, "--nodeport-bindon-all-ip", envvar="KIPVS_NODEPORT_BINDON_ALL_IP",
        help="Serve NodePorts on every local address, not only the node IP.")),
    Param("service_external_ip_range", Optional[list[str]], _option(
        None, "--service-external-ip-range", envvar="KIPVS_SERVICE_EXTERNAL_IP_RANGE",
        help="CIDR allowed for spec.externalIPs (repeatable).")),
    Param("loadbalancer_ip_range", Optional[list[str]], _option(
        None, "--loadbalancer-ip-range", envvar="KIPVS_LOADBALANCER_IP_RANGE",
        help="CIDR allowed for status.loadBalancer.ingress IPs (repeatable).")),
    Param("strict_external_ip_validation", bool, _option(
        True, "--strict-external-ip-validation/--no-strict-external-ip-validation",
        envvar="KIPVS_STRICT_EXTERNAL_IP_VALIDATION",
        help="Program external and load-balancer IPs only inside the ranges above (CVE-2020-8554).")),
    Param("excluded_cidrs", Optional[list[str]], _option(
        None, "--excluded-cidrs", envvar="KIPVS_EXCLUDED_CIDRS",
        help="CIDRs kipvs never touches, even on its own interface (repeatable or comma-separated).")),
    Param("service_cluster_ip_range", Optional[list[str]], _option(
        None, "--service-cluster-ip-range", envvar="KIPVS_SERVICE_CLUSTER_IP_RANGE",
        help="The cluster's Service CIDRs (repeatable): external and load-balancer IPs inside them are "
             "refused, so they can never shadow a ClusterIP.")),
    Param("iptables_mode", str, _option(
        "auto", "--iptables-mode", envvar="KIPVS_IPTABLES_MODE",
        help="iptables backend for kipvs's netfilter rules: legacy, nft, or auto (the backend already "
             "holding rules, else one the kernel can run; watch decides once per run).")),
    Param("masquerade_all", bool, _option(
        False, "--masquerade-all", envvar="KIPVS_MASQUERADE_ALL",
        help="SNAT all IPVS traffic to the node IP, pod traffic too (kube-router's flag).")),
    Param("cluster_cidr", Optional[list[str]], _option(
        None, "--cluster-cidr", envvar="KIPVS_CLUSTER_CIDR",
        help="The cluster's pod CIDRs (repeatable; kube-proxy's flag): IPVS traffic from outside them is "
             "SNATed to the node IP. Default: this Node's spec.podCIDRs.")),
    Param("ipvs_permit_all", bool, _option(
        False, "--ipvs-permit-all", envvar="KIPVS_IPVS_PERMIT_ALL",
        help="Accept every port on service addresses: turns off the firewall that rejects ports that are "
             "not a Service's (kube-router's flag).")),
    Param("hairpin_mode", bool, _option(
        False, "--hairpin-mode", envvar="KIPVS_HAIRPIN_MODE",
        help="Accepted for kube-router compatibility and ignored: kipvs always programs hairpin.")),
    Param("ipvs_graceful_termination", str, _option(
        "true", "--ipvs-graceful-termination", envvar="KIPVS_IPVS_GRACEFUL_TERMINATION",
        help="true: a TCP or SCTP real server kipvs removes first drains at weight 0 while the kernel counts "
             "connections to it; false: it is deleted at once (its connections reset).")),
    Param("ipvs_graceful_period", str, _option(
        "30s", "--ipvs-graceful-period", envvar="KIPVS_IPVS_GRACEFUL_PERIOD",
        help="Longest drain once the endpoint has left its EndpointSlice (a still-listed terminating or "
             "unready endpoint drains until its connections end).")),
    Param("drain_record", str, _option(
        "/run/kipvs-draining.json", "--drain-record", envvar="KIPVS_DRAIN_RECORD",
        help="File where each drain's start time is kept, so cron syncs, watch and a restarted kipvs "
             "agree on the grace period (on tmpfs: it lives as long as the IPVS table).")),
    Param("ipvs_tcp_timeout", str, _option(
        "0", "--ipvs-tcp-timeout", "--service-tcp-timeout", envvar="KIPVS_IPVS_TCP_TIMEOUT",
        help="IPVS idle timeout of established TCP connections (ipvsadm --set); 0 keeps the kernel's.")),
    Param("ipvs_tcpfin_timeout", str, _option(
        "0", "--ipvs-tcpfin-timeout", "--service-tcpfin-timeout", envvar="KIPVS_IPVS_TCPFIN_TIMEOUT",
        help="IPVS timeout of TCP connections after a FIN; 0 keeps the kernel's.")),
    Param("ipvs_udp_timeout", str, _option(
        "0", "--ipvs-udp-timeout", "--service-udp-timeout", envvar="KIPVS_IPVS_UDP_TIMEOUT",
        help="IPVS timeout of UDP flows; 0 keeps the kernel's.")),
    Param("ipvs_strict_arp", str, _option(
        "true", "--ipvs-strict-arp", envvar="KIPVS_IPVS_STRICT_ARP",
        help="true: set net.ipv4.conf.all.arp_ignore=1 and arp_announce=2 so the node answers ARP only for "
             "addresses on the asking interface, never for service addresses on the dummy interface "
             "(kube-router always does; needed beside MetalLB layer 2); false: leave them alone.")),
), lambda v: ProxyOptions(
    interface=parse_interface(v.get("interface", "kube-dummy-if")),
    scheduler=parse_scheduler(v.get("scheduler", "rr")),
    node_port_range=parse_port_range(v.get("service_node_port_range", "30000-32767")),
    nodeport_bindon_all_ip=v.get("nodeport_bindon_all_ip", False),
    external_ip_ranges=parse_cidrs(v.get("service_external_ip_range") or [], "--service-external-ip-range"),
    loadbalancer_ip_ranges=parse_cidrs(v.get("loadbalancer_ip_range") or [], "--loadbalancer-ip-range"),
    strict_external_ip_validation=v.get("strict_external_ip_validation", True),
    excluded_cidrs=parse_cidrs(v.get("excluded_cidrs") or [], "--excluded-cidrs"),
    cluster_ip_ranges=parse_cidrs(v.get("service_cluster_ip_range") or [], "--service-cluster-ip-range"),
    netfilter=NetfilterOptions(
        mode=parse_iptables_mode(v.get("iptables_mode", "auto")), masquerade_all=v.get("masquerade_all", False),
        cluster_cidrs=parse_cidrs(v.get("cluster_cidr") or [], "--cluster-cidr"),
        firewall=not v.get("ipvs_permit_all", False)),
    graceful_termination=parse_bool(v.get("ipvs_graceful_termination", "true"), "--ipvs-graceful-termination"),
    graceful_period=parse_duration(v.get("ipvs_graceful_period", "30s"), "--ipvs-graceful-period"),
    drain_record=v.get("drain_record", "/run/kipvs-draining.json"),
    tcp_timeout=parse_timeout(v.get("ipvs_tcp_timeout", "0"), "--ipvs-tcp-timeout"),
    tcpfin_timeout=parse_timeout(v.get("ipvs_tcpfin_timeout", "0"), "--ipvs-tcpfin-timeout"),
    udp_timeout=parse_timeout(v.get("ipvs_udp_timeout", "0"), "--ipvs-udp-timeout"),
    strict_arp=parse_bool(v.get("ipvs_strict_arp", "true"), "--ipvs-strict-arp")))

SOURCE = Group("source", (
    Param("cluster_file", Optional[str], _option(
        None, "--cluster-file", "-f", envvar="KIPVS_CLUSTER_FILE",
        help="Read Services, EndpointSlices and Nodes from this `kubectl get services,endpointslices,nodes -A "
             "-o json|yaml` dump (a regular file, or '-' for stdin: a pipe) instead of the API.")),
    Param("kubeconfig", Optional[str], _option(
        None, "--kubeconfig", envvar="KUBECONFIG",
        help="kubeconfig file (default: in-cluster config, else ~/.kube/config).")),
    Param("node_name", Optional[str], _option(None, "--node-name", envvar="NODE_NAME",
                                               help="This node's name (default: the hostname).")),
    Param("node_ip", Optional[list[str]], _option(
        None, "--node-ip", envvar="KIPVS_NODE_IP",
        help="This node's IP, one per family (repeat for dual stack). Default: the Node object's InternalIPs, "
             "else the default-route interface's address.")),
    Param("allow_partial", bool, _option(
        False, "--allow-partial", envvar="KIPVS_ALLOW_PARTIAL",
        help="Sync even from a cluster file without EndpointSlices or Nodes, or without this node's Node "
             "(normally refused: it would remove every real server or NodePort).")),
    Param("api_timeout", float, _option(
        10.0, "--api-timeout", envvar="KIPVS_API_TIMEOUT",
        help="Seconds to read the whole cluster from the API before giving up (sync, show).")),
), lambda v: SourceOptions(
    cluster_file=v.get("cluster_file"), kubeconfig=v.get("kubeconfig"),
    # kubelet names a Node after the lower-cased hostname
    node_name=parse_node_name(v.get("node_name") or socket.gethostname().lower()),
    node_ips=parse_node_ips(v.get("node_ip") or []),
    allow_partial=v.get("allow_partial", False),
    api_timeout=parse_seconds(v.get("api_timeout", 10.0), "--api-timeout")))

RUN = Group("run", (
    Param("dry_run", bool, _option(False, "--dry-run", "-n", envvar="KIPVS_DRY_RUN",
                                   help="Print the exact commands on stdout, one per line, and change nothing.")),
    Param("output", Output, _option(Output.text, "--output", "-o", envvar="KIPVS_OUTPUT",
                                    help="Summary format: text on stderr, or one JSON document on stdout.")),
    Param("command_timeout", float, _option(60.0, "--command-timeout", envvar="KIPVS_COMMAND_TIMEOUT",
                                            help="Seconds before an ip/ipvsadm call is abandoned.")),
    Param("lock_file", str, _option(
        DEFAULT_LOCK_FILE, "--lock-file", envvar="KIPVS_LOCK_FILE",
        help="Lock shared by every kipvs that changes this node (watch, sync, fix-routes, cleanup).")),
    Param("lock_timeout", float, _option(30.0, "--lock-timeout", envvar="KIPVS_LOCK_TIMEOUT",
                                         help="Seconds to wait for another kipvs to finish before giving up.")),
), lambda v: RunOptions(
    dry_run=v.get("dry_run", False), json=v.get("output", Output.text) is Output.json,
    command_timeout=parse_seconds(v.get("command_timeout", 60.0), "--command-timeout"),
    lock_file=check_lock_file(v.get("lock_file", DEFAULT_LOCK_FILE)) if not v.get("dry_run") else
    v.get("lock_file", DEFAULT_LOCK_FILE),
    lock_timeout=parse_seconds(v.get("lock_timeout", 30.0), "--lock-timeout", allow_zero=True)))


def current_environment(ctx: typer.Context) -> Environment:
    """The Environment a caller (a test) passed as the context object, else the process's own."""
    root = ctx.find_root()
    if not isinstance(root.obj, Environment):
        root.obj = Environment()
    return root.obj


def command(app: typer.Typer, name: str, *groups: Group, writes: bool = True):
    """Register `func(env, <own params>, <group keywords>) -> ExitStatus` as a typer command.

    `writes`: the command changes the kernel unless --dry-run, so it needs root or CAP_NET_ADMIN."""
    def decorate(func: Callable[..., ExitStatus]):
        own = [p for p in inspect.signature(func, eval_str=True).parameters.values()
               if p.name != "env" and p.name not in {g.keyword for g in groups}]
        added = [inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=p.option, annotation=p.annotation)
                 for g in groups for p in g.params]
        parameters = [inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)] + \
            [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + added

        def run(ctx: typer.Context, **values) -> None:
            env = current_environment(ctx)
            try:
                built = {g.keyword: g.build({p.name: values.pop(p.name) for p in g.params}) for g in groups}
                run_options = built.get("run")
                if writes and not (run_options is not None and run_options.dry_run) and not env.privileged():
                    raise PermissionDenied("kipvs must run as root (or with CAP_NET_ADMIN)")
                status = func(env=env, **values, **built)
            except KipvsError as exc:
                print(f"kipvs: error: {exc}".replace("\n", " "), file=env.stderr)
                raise typer.Exit(int(exc.status)) from None
            raise typer.Exit(int(status))

        run.__signature__ = inspect.Signature(parameters)
        run.__annotations__ = {p.name: p.annotation for p in parameters}
        run.__name__ = func.__name__
        run.__doc__ = func.__doc__
        app.command(name)(run)
        return func
    return decorate


def configure_logging(env: Environment, verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    if env.stderr_isatty:
        # A person at a terminal: colours (rich honours NO_COLOR), no timestamps.
        from rich.console import Console
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(console=Console(file=env.stderr), show_time=False, show_path=False,
                                               markup=False)
    else:
        handler = logging.StreamHandler(env.stderr)
        handler.setFormatter(logging.Formatter("kipvs: %(levelname)s: %(message)s"))
    root = logging.getLogger("kipvs")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
