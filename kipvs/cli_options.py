"""Option groups shared by several commands, declared once and built into one options object each.

typer has no shared option groups: `command()` adds a group's parameters to a command's
signature and hands the command the object the group builds (ProxyOptions, SourceOptions,
RunOptions), already validated. Building happens inside the error guard, so a bad option
value is one line on stderr and exit status 2, like every other kipvs error.
"""
from __future__ import annotations

import inspect
import logging
import os
import socket
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Optional

import typer
from typer.core import TyperCommand, TyperGroup

from kipvs.config import (NetfilterOptions, ProxyOptions, RunOptions, SourceOptions, WatchRequest, check_lock_file,
                          parse_bool, parse_cidrs, parse_detect_local_mode, parse_duration, parse_interface,
                          parse_iptables_mode, parse_master, parse_node_ips, parse_node_name, parse_nodeport_addresses,
                          parse_pod_interface, parse_port_range, parse_scheduler, parse_seconds, parse_timeout)
from kipvs import config_file
from kipvs.environment import Environment
from kipvs.lock import DEFAULT_DRAIN_RECORD, DEFAULT_LOCK_FILE
from kipvs.errors import ConfigError, ExitStatus, KipvsError, PermissionDenied

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


# Every spelling of a boolean option: these take `=true|false` (or the next word), and alone mean true.
BOOLEAN_FLAGS: set[str] = set()
BOOL_WORDS = frozenset({"true", "false", "t", "f", "1", "0", "yes", "no", "on", "off"})


def bool_option(default, *names: str, envvar: str | None, help: str, **extra):
    """A boolean as kube-proxy's and kube-router's pflag read it: `--flag`, `--flag=true`, `--flag=false`
    (and `--flag false`: kipvs takes no positional arguments, so the word cannot mean anything else).
    Declared as a value option (what every typer parses the same way); `pflag_args` supplies the
    `true` a bare flag implies, and the value is read by `parse_bool`."""
    BOOLEAN_FLAGS.update(names)
    return typer.Option(default, *names, envvar=envvar, help=help, **extra)


def pflag_args(args: list[str], flags: set[str]) -> list[str]:
    """`--flag` alone becomes `--flag true`; `--flag=false`, `--flag false` and everything else stay."""
    out: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--":
            return out + args[i:]
        name, equals, value = arg.partition("=")
        if equals and name in flags and not name.startswith("--"):  # `-n=false`: pflag's short form
            out += [name, value]
            continue
        out.append(arg)
        following = args[i + 1] if i + 1 < len(args) else None
        if arg in flags and (following is None or following.lower() not in BOOL_WORDS):
            out.append("true")
    return out


def _own_flags(command) -> set[str]:
    return {o for p in command.params for o in p.opts} & BOOLEAN_FLAGS


class PflagCommand(TyperCommand):
    def parse_args(self, ctx, args):
        return super().parse_args(ctx, pflag_args(args, _own_flags(self)))


class PflagGroup(TyperGroup):
    """The root (and `config`): its own booleans (-q) only; each command reads its own."""

    def parse_args(self, ctx, args):
        return super().parse_args(ctx, pflag_args(args, _own_flags(self)))


def flag(value, option: str) -> bool:
    """A boolean option's value: parse_bool for words (flags, environment), YAML's own booleans as they are."""
    return value if isinstance(value, bool) else parse_bool(value, option)


INTERFACE = Param("interface", str, _option(
    "kube-dummy-if", "--interface", "-i", envvar="KIPVS_INTERFACE",
    help="Dummy interface holding the service addresses (kube-proxy uses kube-ipvs0)."))

PROXY = Group("options", (
    INTERFACE,
    Param("scheduler", str, _option("rr", "--scheduler", "--ipvs-scheduler", envvar="KIPVS_SCHEDULER",
                                    help="IPVS scheduler for services without a scheduler annotation.")),
    Param("service_node_port_range", str, _option(
        "30000-32767", "--service-node-port-range", envvar="KIPVS_SERVICE_NODE_PORT_RANGE",
        help="NodePort range; NodePort virtual servers in it on node addresses are kipvs's.")),
    Param("nodeport_bindon_all_ip", str, bool_option(
        False, "--nodeport-bindon-all-ip", envvar="KIPVS_NODEPORT_BINDON_ALL_IP",
        help="Serve NodePorts on every local address, not only the node IP.")),
    Param("nodeport_addresses", Optional[list[str]], _option(
        None, "--nodeport-addresses", envvar="KIPVS_NODEPORT_ADDRESSES",
        help="kube-proxy's flag: serve NodePorts on the local addresses inside these CIDRs (repeatable or "
             "comma-separated), or 'primary' for the node IPs (kipvs's default). kube-proxy without it "
             "serves every local address: 0.0.0.0/0,::/0 here, as --nodeport-bindon-all-ip.")),
    Param("service_external_ip_range", Optional[list[str]], _option(
        None, "--service-external-ip-range", envvar="KIPVS_SERVICE_EXTERNAL_IP_RANGE",
        help="CIDR allowed for spec.externalIPs (repeatable).")),
    Param("loadbalancer_ip_range", Optional[list[str]], _option(
        None, "--loadbalancer-ip-range", envvar="KIPVS_LOADBALANCER_IP_RANGE",
        help="CIDR allowed for status.loadBalancer.ingress IPs (repeatable).")),
    Param("strict_external_ip_validation", str, bool_option(
        True, "--strict-external-ip-validation",
        envvar="KIPVS_STRICT_EXTERNAL_IP_VALIDATION",
        help="Program external and load-balancer IPs only inside the ranges above (CVE-2020-8554); "
             "--no-strict-external-ip-validation, the older spelling of =false, still works.")),
    # kipvs's earlier spelling of --strict-external-ip-validation=false, still accepted.
    Param("no_strict", bool, typer.Option(False, "--no-strict-external-ip-validation", hidden=True)),
    Param("excluded_cidrs", Optional[list[str]], _option(
        None, "--excluded-cidrs", "--ipvs-exclude-cidrs", envvar="KIPVS_EXCLUDED_CIDRS",
        help="CIDRs kipvs never touches, even on its own interface (repeatable or comma-separated).")),
    Param("service_cluster_ip_range", Optional[list[str]], _option(
        None, "--service-cluster-ip-range", envvar="KIPVS_SERVICE_CLUSTER_IP_RANGE",
        help="The cluster's Service CIDRs (repeatable): external and load-balancer IPs inside them are "
             "refused, so they can never shadow a ClusterIP.")),
    Param("iptables_mode", str, _option(
        "auto", "--iptables-mode", envvar="KIPVS_IPTABLES_MODE",
        help="iptables backend for kipvs's netfilter rules: legacy, nft, or auto (the backend already "
             "holding rules, else one the kernel can run; watch decides once per run).")),
    Param("masquerade_all", str, bool_option(
        False, "--masquerade-all", envvar="KIPVS_MASQUERADE_ALL",
        help="SNAT all IPVS traffic to the node IP, pod traffic too (kube-router's flag).")),
    Param("cluster_cidr", Optional[list[str]], _option(
        None, "--cluster-cidr", envvar="KIPVS_CLUSTER_CIDR",
        help="The cluster's pod CIDRs (repeatable; kube-proxy's flag): IPVS traffic from outside them is "
             "SNATed to the node IP. Default: this Node's spec.podCIDRs.")),
    Param("detect_local_mode", str, _option(
        "auto", "--detect-local-mode", envvar="KIPVS_DETECT_LOCAL_MODE",
        help="How pod traffic is told apart (kube-proxy's flag): ClusterCIDR, NodeCIDR, BridgeInterface, "
             "InterfaceNamePrefix, or auto (ClusterCIDR with --cluster-cidr, else NodeCIDR). Pod traffic to a "
             "ClusterIP keeps its source; other ClusterIP traffic is SNATed.")),
    Param("pod_bridge_interface", str, _option(
        "", "--pod-bridge-interface", envvar="KIPVS_POD_BRIDGE_INTERFACE",
        help="The bridge pods' traffic comes in on (--detect-local-mode BridgeInterface).")),
    Param("pod_interface_name_prefix", str, _option(
        "", "--pod-interface-name-prefix", envvar="KIPVS_POD_INTERFACE_NAME_PREFIX",
        help="The name prefix of the interfaces pods' traffic comes in on (--detect-local-mode "
             "InterfaceNamePrefix).")),
    Param("ipvs_permit_all", str, bool_option(
        False, "--ipvs-permit-all", envvar="KIPVS_IPVS_PERMIT_ALL",
        help="Accept every port on service addresses: turns off the firewall that rejects ports that are "
             "not a Service's (kube-router's flag).")),
    Param("hairpin_mode", str, bool_option(
        False, "--hairpin-mode", envvar="KIPVS_HAIRPIN_MODE",
        help="Accepted for kube-router compatibility and ignored: kipvs always programs hairpin.")),
    Param("ipvs_graceful_termination", str, bool_option(
        True, "--ipvs-graceful-termination", envvar="KIPVS_IPVS_GRACEFUL_TERMINATION",
        help="true: a TCP or SCTP real server kipvs removes first drains at weight 0 while the kernel counts "
             "connections to it; false: it is deleted at once (its connections reset).")),
    Param("ipvs_graceful_period", str, _option(
        "30s", "--ipvs-graceful-period", envvar="KIPVS_IPVS_GRACEFUL_PERIOD",
        help="Longest drain once the endpoint has left its EndpointSlice (a still-listed terminating or "
             "unready endpoint drains until its connections end).")),
    Param("drain_record", str, _option(
        DEFAULT_DRAIN_RECORD, "--drain-record", envvar="KIPVS_DRAIN_RECORD",
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
    Param("ipvs_strict_arp", str, bool_option(
        True, "--ipvs-strict-arp", envvar="KIPVS_IPVS_STRICT_ARP",
        help="true: set net.ipv4.conf.all.arp_ignore=1 and arp_announce=2 so the node answers ARP only for "
             "addresses on the asking interface, never for service addresses on the dummy interface "
             "(kube-router always does; needed beside MetalLB layer 2); false: leave them alone.")),
), lambda v: ProxyOptions(
    interface=parse_interface(v.get("interface", "kube-dummy-if")),
    scheduler=parse_scheduler(v.get("scheduler", "rr")),
    node_port_range=parse_port_range(v.get("service_node_port_range", "30000-32767")),
    nodeport_bindon_all_ip=flag(v.get("nodeport_bindon_all_ip", False), "--nodeport-bindon-all-ip"),
    nodeport_addresses=parse_nodeport_addresses(v.get("nodeport_addresses") or []),
    external_ip_ranges=parse_cidrs(v.get("service_external_ip_range") or [], "--service-external-ip-range"),
    loadbalancer_ip_ranges=parse_cidrs(v.get("loadbalancer_ip_range") or [], "--loadbalancer-ip-range"),
    strict_external_ip_validation=flag(v.get("strict_external_ip_validation", True), "--strict-external-ip-validation")
    and not v.get("no_strict"),
    excluded_cidrs=parse_cidrs(v.get("excluded_cidrs") or [], "--excluded-cidrs"),
    cluster_ip_ranges=parse_cidrs(v.get("service_cluster_ip_range") or [], "--service-cluster-ip-range"),
    netfilter=NetfilterOptions(
        mode=parse_iptables_mode(v.get("iptables_mode", "auto")), masquerade_all=flag(v.get("masquerade_all", False), "--masquerade-all"),
        cluster_cidrs=parse_cidrs(v.get("cluster_cidr") or [], "--cluster-cidr"),
        firewall=not flag(v.get("ipvs_permit_all", False), "--ipvs-permit-all"),
        detect_local_mode=parse_detect_local_mode(v.get("detect_local_mode", "auto")),
        pod_bridge_interface=parse_pod_interface(v.get("pod_bridge_interface", ""), "--pod-bridge-interface"),
        pod_interface_name_prefix=parse_pod_interface(v.get("pod_interface_name_prefix", ""),
                                                      "--pod-interface-name-prefix")),
    graceful_termination=flag(v.get("ipvs_graceful_termination", True), "--ipvs-graceful-termination"),
    graceful_period=parse_duration(v.get("ipvs_graceful_period", "30s"), "--ipvs-graceful-period"),
    drain_record=v.get("drain_record", DEFAULT_DRAIN_RECORD),
    tcp_timeout=parse_timeout(v.get("ipvs_tcp_timeout", "0"), "--ipvs-tcp-timeout"),
    tcpfin_timeout=parse_timeout(v.get("ipvs_tcpfin_timeout", "0"), "--ipvs-tcpfin-timeout"),
    udp_timeout=parse_timeout(v.get("ipvs_udp_timeout", "0"), "--ipvs-udp-timeout"),
    strict_arp=flag(v.get("ipvs_strict_arp", True), "--ipvs-strict-arp")))

SOURCE = Group("source", (
    Param("cluster_file", Optional[str], _option(
        None, "--cluster-file", "-f", envvar="KIPVS_CLUSTER_FILE",
        help="Read Services, EndpointSlices and Nodes from this `kubectl get services,endpointslices,nodes -A "
             "-o json|yaml` dump (a regular file, or '-' for stdin: a pipe) instead of the API.")),
    Param("kubeconfig", Optional[str], _option(
        None, "--kubeconfig", envvar="KUBECONFIG",
        help="kubeconfig file (default: in-cluster config, else ~/.kube/config).")),
    Param("master", Optional[str], _option(
        None, "--master", envvar="KIPVS_MASTER",
        help="The API server's URL, overriding the kubeconfig's or in-cluster one (kube-proxy's and "
             "kube-router's flag), e.g. https://10.0.0.1:6443 on a cluster without kube-proxy.")),
    Param("node_name", Optional[str], _option(None, "--node-name", "--hostname-override", envvar="NODE_NAME",
                                               help="This node's name (default: the hostname).")),
    Param("node_ip", Optional[list[str]], _option(
        None, "--node-ip", envvar="KIPVS_NODE_IP",
        help="This node's IP, one per family (repeat for dual stack). Default: the Node object's InternalIPs, "
             "else the default-route interface's address.")),
    Param("allow_partial", str, bool_option(
        False, "--allow-partial", envvar="KIPVS_ALLOW_PARTIAL",
        help="Sync even from a cluster file without EndpointSlices or Nodes, or without this node's Node "
             "(normally refused: it would remove every real server or NodePort).")),
    Param("api_timeout", float, _option(
        10.0, "--api-timeout", envvar="KIPVS_API_TIMEOUT",
        help="Seconds to read the whole cluster from the API before giving up (sync, show).")),
), lambda v: SourceOptions(
    cluster_file=v.get("cluster_file"), kubeconfig=v.get("kubeconfig"), master=parse_master(v.get("master")),
    # kubelet names a Node after the lower-cased hostname
    node_name=parse_node_name(v.get("node_name") or socket.gethostname().lower()),
    node_ips=parse_node_ips(v.get("node_ip") or []),
    allow_partial=flag(v.get("allow_partial", False), "--allow-partial"),
    api_timeout=parse_seconds(v.get("api_timeout", 10.0), "--api-timeout")))

RUN = Group("run", (
    Param("dry_run", str, bool_option(False, "--dry-run", "-n", envvar="KIPVS_DRY_RUN",
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
    dry_run=flag(v.get("dry_run", False), "--dry-run"), json=v.get("output", Output.text) is Output.json,
    command_timeout=parse_seconds(v.get("command_timeout", 60.0), "--command-timeout"),
    lock_file=check_lock_file(v.get("lock_file", DEFAULT_LOCK_FILE)) if not flag(v.get("dry_run", False), "--dry-run") else
    v.get("lock_file", DEFAULT_LOCK_FILE),
    lock_timeout=parse_seconds(v.get("lock_timeout", 30.0), "--lock-timeout", allow_zero=True)))


def _watch_request(v: dict) -> WatchRequest:
    return WatchRequest(v.get("min_sync_period", "200ms"), v.get("sync_period", "5m"), v.get("metrics_addr"),
                        v.get("health_max_age", "15m"), flag(v.get("cleanup_on_exit", False), "--cleanup-on-exit"),
                        v.get("healthz_bind_address", "0.0.0.0:10256"), v.get("metrics_port"),
                        v.get("effective_config", config_file.EFFECTIVE_CONFIG))


WATCH = Group("request", (
    Param("min_sync_period", str, _option(
        "200ms", "--min-sync-period", "--ipvs-min-sync-period", envvar="KIPVS_MIN_SYNC_PERIOD",
        help="Least time between two syncs: a burst of changes becomes one sync; also the longest a new "
             "Service waits for its first EndpointSlice.")),
    Param("sync_period", str, _option(
        "5m", "--sync-period", "--ipvs-sync-period", envvar="KIPVS_SYNC_PERIOD",
        help="Full resync at least this often, also repairing drift made by hand.")),
    Param("metrics_addr", Optional[str], _option(
        None, "--metrics-addr", "--metrics-bind-address", envvar="KIPVS_METRICS_ADDR",
        help="Serve Prometheus /metrics and /healthz here, e.g. 127.0.0.1:9254 or [::1]:9254 (kube-proxy's "
             "--metrics-bind-address). An address without a port takes --metrics-port (kube-router's pair).")),
    Param("metrics_port", Optional[int], _option(
        None, "--metrics-port", envvar="KIPVS_METRICS_PORT",
        help="kube-router's flag: the port of --metrics-addr when that names only an address (alone: every "
             "address, as kube-router; 0: no metrics).")),
    Param("health_max_age", str, _option(
        "15m", "--health-max-age", envvar="KIPVS_HEALTH_MAX_AGE",
        help="/healthz fails when the last converged sync is older than this.")),
    Param("healthz_bind_address", str, _option(
        "0.0.0.0:10256", "--healthz-bind-address", envvar="KIPVS_HEALTHZ_BIND_ADDRESS",
        help="Serve kube-proxy's node /healthz and /livez here for load balancers ('' to turn off). "
             "LoadBalancer Services with externalTrafficPolicy Local get their healthCheckNodePort on "
             "the node IPs whatever this says.")),
    Param("cleanup_on_exit", str, bool_option(
        False, "--cleanup-on-exit", envvar="KIPVS_CLEANUP_ON_EXIT",
        help="On SIGTERM/SIGINT remove what kipvs owns (default: leave the rules in place so traffic flows "
             "while kipvs restarts).")),
    Param("effective_config", str, _option(
        config_file.EFFECTIVE_CONFIG, "--effective-config", envvar=config_file.EFFECTIVE_ENV,
        help="Write the settings watch runs with here, as a configuration file that show, sync, cleanup and "
             "fix-routes on this node read by default (they find it by the same environment variable; "
             "'' to write none).")),
), _watch_request)


def _modes(v: dict) -> tuple[str, ...]:
    """kube-router's and kube-proxy's mode flags: a note where kipvs already does what they ask, a refusal
    where they ask for what kipvs does not do."""
    notes = []
    proxy, router, firewall, mode = (v.get(k) for k in ("run_service_proxy", "run_router", "run_firewall",
                                                         "proxy_mode"))
    if proxy is False:
        raise ConfigError("--run-service-proxy=false: kipvs is only the service proxy; run kube-router alone "
                          "for routing and network policy")
    if router:
        raise ConfigError("--run-router=true: kipvs does not route pod networks (BGP); keep kube-router for that "
                          "with --run-service-proxy=false (docs/migration.md)")
    if firewall:
        raise ConfigError("--run-firewall=true: kipvs does not enforce NetworkPolicy; keep kube-router for that "
                          "with --run-service-proxy=false (docs/migration.md)")
    if mode not in (None, "", "ipvs"):
        raise ConfigError(f"--proxy-mode {mode!r}: kipvs programs IPVS only; --proxy-mode=ipvs or none")
    notes += ["--run-service-proxy=true: kipvs is the service proxy, nothing to turn on"] if proxy else []
    notes += ["--run-router=false: kipvs never routes pod networks, nothing to turn off"] if router is False else []
    notes += ["--run-firewall=false: kipvs never enforces NetworkPolicy, nothing to turn off"] \
        if firewall is False else []
    notes += ["--proxy-mode=ipvs: kipvs programs IPVS, nothing to choose"] if mode == "ipvs" else []
    return tuple(notes)


def _mode_flag(name: str, what: str):
    return bool_option(None, name, envvar=None, help=f"kube-router's flag, for copied argument lists: {what}.")


# Accepted from copied kube-router and kube-proxy argument lists (watch only): a note or a refusal, no setting.
MODE = Group("notes", (
    Param("run_service_proxy", Optional[str], _mode_flag("--run-service-proxy", "true (a note) or false (refused)")),
    Param("run_router", Optional[str], _mode_flag("--run-router", "false (a note) or true (refused: no routing)")),
    Param("run_firewall", Optional[str], _mode_flag(
        "--run-firewall", "false (a note) or true (refused: no NetworkPolicy)")),
    Param("proxy_mode", Optional[str], typer.Option(
        None, "--proxy-mode", help="kube-proxy's flag, for copied argument lists: ipvs (a note); any other mode "
                                   "is refused.")),
), _modes)


# ---- the configuration file: flag > environment > file > default, resolved here once per command ----------

# What to do now rather than how the node is set up: never read from a file nor written to one.
NOT_IN_FILE = frozenset({"help", "version", "install_completion", "show_completion", "config", "check", "dry_run",
                         "output", "kube_router_leftovers", "verbose", "quiet", "effective_config", "no_strict",
                         "service", "namespace", "vip", "kernel_only", "watch", "interval", "targets",  # show, doctor
                         *(p.name for p in MODE.params)})
# Where the API is and who asks differ between watch's pod and the host: each reader keeps its own.
NOT_EXPORTED = frozenset({"kubeconfig", "master"})
CONFIG_META = "kipvs.config"


def in_file(param) -> bool:
    return getattr(param, "param_type_name", "") == "option" and param.name not in NOT_IN_FILE


def file_params(command) -> dict:
    """key -> click parameter, for every option any kipvs command reads from the file."""
    found = {}
    for sub in getattr(command, "commands", {}).values():
        found.update(file_params(sub))
    found.update({config_file.key_of(p.name): p for p in command.params if in_file(p)})
    return found


@dataclass
class ConfigChoice:
    path: str | None = None
    note: str = ""
    error: ConfigError | None = None


def _file_defaults(ctx, settings: dict, path: str) -> dict:
    """The file's values for this command's options, each checked as its option's type checks it."""
    defaults = {}
    for param in ctx.command.params:
        key = config_file.key_of(param.name or "")
        if not in_file(param) or settings.get(key) is None:
            continue
        value = settings[key]
        if param.multiple and not isinstance(value, list):
            value = [value]
        if isinstance(value, dict) or (isinstance(value, list) and not param.multiple) or \
                (isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value)):
            raise ConfigError(f"--config {path}: {key}: expected " +
                              ("a list of values" if param.multiple else "one value, not a list or mapping"))
        defaults[param.name] = [str(v) for v in value] if isinstance(value, list) else value
    return defaults


def _read_config(ctx: typer.Context, value: Optional[str]) -> Optional[str]:
    """--config's callback, run before every other option (eager): the file's values become click's
    default map, which click consults after the flag and the environment, before the default."""
    choice = ConfigChoice()
    choice.path, choice.note = config_file.choose(value, ctx.command.name == "watch")
    if choice.path:
        try:
            settings = config_file.load(choice.path, set(file_params(ctx.find_root().command)))
            ctx.default_map = _file_defaults(ctx, settings, choice.path)
        except ConfigError as exc:
            choice.error = exc
    ctx.meta[CONFIG_META] = choice
    return value


CONFIG = Param("config", Optional[str], typer.Option(
    None, "--config", envvar="KIPVS_CONFIG", is_eager=True, callback=_read_config,
    help=f"Configuration file (kind {config_file.KIND}, each option's long name in camelCase; '' for none). "
         f"Default: for show, sync, cleanup and fix-routes the settings watch runs with on this node "
         f"({config_file.EFFECTIVE_CONFIG}) when it exists, else {config_file.DEFAULT_CONFIG} when it exists. "
         "A flag beats the environment, which beats the file."))


def _plain(value, param):
    """A value as the file writes it: booleans as booleans, lists as lists, unset as null."""
    if value is None:
        return None
    if set(param.opts) & BOOLEAN_FLAGS:
        return flag(value, param.opts[0])
    if isinstance(value, (list, tuple)):
        return [v.value if isinstance(v, Enum) else v for v in value]
    return value.value if isinstance(value, Enum) else value


def _origin(ctx, param, path: str | None) -> str:
    source = ctx.get_parameter_source(param.name).name
    if source == "COMMANDLINE":
        return "flag"
    if source == "ENVIRONMENT":
        names = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or ())
        return f"env {next((n for n in names if n in os.environ), names[0] if names else '')}".rstrip()
    if source == "DEFAULT_MAP":
        return f"file {path}"
    return "default"


@dataclass(frozen=True)
class Settings:
    """A command's file-able settings as resolved: (key, value, where it came from)."""

    path: str | None
    rows: tuple[tuple[str, Any, str], ...]

    def render(self, header: str = "", exported_only: bool = False) -> str:
        rows = [r for r in self.rows if not exported_only or r[0] not in {config_file.key_of(n) for n in NOT_EXPORTED}]
        return config_file.render(rows, header)


def resolved_settings(ctx, values: dict) -> Settings:
    choice = ctx.meta.get(CONFIG_META) or ConfigChoice()
    rows = tuple((config_file.key_of(p.name), _plain(values[p.name], p), _origin(ctx, p, choice.path))
                 for p in ctx.command.params if in_file(p) and p.name in values)
    return Settings(choice.path, rows)


def current_environment(ctx: typer.Context) -> Environment:
    """The Environment a caller (a test) passed as the context object, else the process's own."""
    root = ctx.find_root()
    if not isinstance(root.obj, Environment):
        root.obj = Environment()
    return root.obj


def command(app: typer.Typer, name: str, *groups: Group, writes: bool = True):
    """Register `func(env, <own params>, <group keywords>) -> ExitStatus` as a typer command.

    Every command takes --config. `writes`: the command changes the kernel unless --dry-run, so it
    needs root or CAP_NET_ADMIN. A `settings` parameter receives the resolved Settings; the MODE
    group's notes are printed, not passed."""
    def decorate(func: Callable[..., ExitStatus]):
        wanted = inspect.signature(func, eval_str=True).parameters
        own = [p for p in wanted.values()
               if p.name not in ("env", "settings") and p.name not in {g.keyword for g in groups}]
        added = [inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=p.option, annotation=p.annotation)
                 for p in (CONFIG, *(p for g in groups for p in g.params))]
        parameters = [inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)] + \
            [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + added

        def run(ctx: typer.Context, **values) -> None:
            env = current_environment(ctx)
            try:
                choice = ctx.meta.get(CONFIG_META) or ConfigChoice()
                if choice.error:
                    raise choice.error
                values.update({p.name: flag(values[p.name], p.opts[0]) for p in ctx.command.params
                               if set(p.opts) & BOOLEAN_FLAGS and values.get(p.name) is not None})
                settings = resolved_settings(ctx, values)
                values.pop("config", None)
                built = {g.keyword: g.build({p.name: values.pop(p.name) for p in g.params}) for g in groups}
                notes = [choice.note, *built.pop("notes", ())]
                for note in filter(None, notes):
                    if not env.quiet:
                        print(f"kipvs: note: {note}", file=env.stderr)
                if "settings" in wanted:
                    built["settings"] = settings
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
        app.command(name, cls=PflagCommand)(run)
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
