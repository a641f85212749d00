"""Generate man/kipvs.8 and man/kipvs-COMMAND.8 from the CLI definition, so they never drift from --help,
and the shell completion scripts the wheel installs (completions/: bash, zsh, fish).

    python scripts/gen_man.py          # write man/
    python scripts/gen_man.py --check  # exit 1 if man/ differs from what the CLI says now
"""
from __future__ import annotations

import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kipvs import __version__  # noqa: E402
from kipvs.cli import app  # noqa: E402
from kipvs.cli_help import build, completion_script, metavar, takes_value  # noqa: E402  - as --help says

MAN = Path(__file__).resolve().parent.parent / "man"
COMPLETIONS = MAN.parent / "completions"
COMPLETION_FILES = {"kipvs": "bash", "_kipvs": "zsh", "kipvs.fish": "fish"}
DATE = "2026-11"

EXIT_STATUS = {
    "kipvs": [("0", "done; for show --check: in sync"),
              ("1", "the kernel does not match what was wanted afterwards; for show --check: drift"),
              ("2", "error: bad input, a missing tool, no permission, the API unreachable")],
    "fix-routes": [("0", "every local route of the interface's addresses is correct afterwards"),
                   ("1", "some route is still wrong"), ("2", "error: missing interface, node IP not on this "
                                                          "host, no permission, ip missing")],
    "sync": [("0", "the kernel matches the cluster afterwards"), ("1", "differences remain after applying"),
             ("2", "error: the cluster or the kernel could not be read; nothing was changed")],
    "show": [("0", "shown (with --check: in sync)"), ("1", "with --check: drift"), ("2", "error")],
    "cleanup": [("0", "nothing kipvs owns is left"), ("1", "something could not be removed"), ("2", "error")],
    "watch": [("0", "stopped by SIGTERM or SIGINT (rules left in place unless --cleanup-on-exit)"),
              ("2", "error at start: no usable kubeconfig, bad options")],
}
EXAMPLES = {
    "fix-routes": ["kipvs fix-routes", "kipvs fix-routes --interface kube-ipvs0 --dry-run",
                   "kipvs fix-routes --node-ip 192.168.123.249 --node-ip fd00:123::249 --output json",
                   "# /etc/cron.d/kipvs: */5 * * * * root kipvs -q fix-routes"],
    "sync": ["kipvs sync --node-name $(hostname)", "kipvs sync --cluster-file cluster.yaml --dry-run",
             "kubectl get services,endpointslices,nodes -A -o yaml | kipvs sync -f - --node-name node3",
             "# /etc/cron.d/kipvs: * * * * * root kipvs -q sync"],
    "show": ["kipvs show", "kipvs show --check || kipvs sync", "kipvs show --output json | jq .drift"],
    "cleanup": ["kipvs cleanup --dry-run", "kipvs cleanup"],
    "watch": ["kipvs watch --node-name $(hostname) --metrics-addr 127.0.0.1:9254",
              "systemctl enable --now kipvs   # with deploy/kipvs.service installed",
              "kubectl apply -k deploy/   # the DaemonSet, its RBAC and its ConfigMaps"],
    "config": ["kipvs config print", "kipvs config print --config /etc/kipvs/config.yaml --scheduler wlc",
               "kipvs config print --config '' > /etc/kipvs/config.yaml   # start a file from the defaults"],
}


FILES = [
    ("/etc/kipvs/config.yaml", "The configuration file (--config)."),
    ("~/.kube/config", "The kubeconfig used outside a pod when neither --kubeconfig nor KUBECONFIG names one."),
    ("/run/kipvs/kipvs.lock", "The node lock (--lock-file): every kipvs that changes the node (sync, watch, "
                              "fix-routes, cleanup) holds it while it does, so a cron job never interleaves with watch."),
    ("/run/kipvs/draining.json", "The drain record (--drain-record): when each draining real server's endpoint "
                                 "left its EndpointSlice, so every kipvs on the node agrees on the grace period; "
                                 "sync and watch write it, show and doctor read it. On tmpfs: it lives as long "
                                 "as the IPVS table."),
    ("/run/kipvs/effective-config.yaml", "The settings kipvs watch runs with, which show, sync, cleanup and "
                                         "fix-routes read by default."),
]
TOOLS = ("kipvs runs ip, ipvsadm, iptables-save and iptables-restore (and the ip6tables ones; the legacy or nft "
         "backend, detected), ipset (cleanup --kube-router-leftovers) and conntrack (doctor), each through sh "
         "with a timeout; it sets the IPVS and ARP sysctls by writing /proc/sys/net, as sysctl -w does.")
SEE_ALSO = {"show": ["kipvs\\-doctor(8)"], "doctor": ["kipvs\\-show(8)", "kipvs\\-fix\\-routes(8)"],
            "fix-routes": ["ip\\-neighbour(8)"], "watch": ["kipvs\\-sync(8)"], "sync": ["kipvs\\-show(8)"]}


def metrics() -> list[str]:
    """What /metrics serves, from the code that serves it (one paragraph per series)."""
    from kipvs.metrics import Metrics
    from kipvs.service_metrics import TrafficMetrics

    traffic = TrafficMetrics(None, dict, clock=lambda: 0.0)
    traffic.read_at = 0.0  # never read the kernel here
    metrics = Metrics()
    metrics.add_collector(traffic)
    found = [line.split(" ", 3)[2:] for line in metrics.render().splitlines() if line.startswith("# HELP ")]
    intro = ("On --metrics-addr, /metrics serves these series (Prometheus text format); the kipvs_service_* ones, "
             "kube-router's kube_router_service_* renamed, are labelled namespace, service, vip, protocol and "
             "port, for kipvs's own virtual servers only, and read from the kernel at most every 5 s. /healthz "
             "answers 503 when the last converged sync is older than --health-max-age.")
    return [intro] + [f"{name}: {text}" for name, text in found]


SHOW_JSON = [
    'With --output json, one document whose "schema" is 2 (1 was the unversioned layout): "mode" is "cluster", '
    'or "kernel" when the cluster could not be read (then "cluster" has "available": false and the "reason"); '
    '"node" (name, ips, interface); "masquerade", the node-wide SNAT rule; "services", each with namespace, '
    'name, notes, netfilter (client_ip_kept, hairpin, firewall, source_ranges) and "virtual_servers".',
    'A virtual server has protocol (tcp, udp, sctp), address, port, label ("TCP 10.0.0.1:80"), kind, '
    'port_name, scheduler, flags, persistent, options, state (ok, missing, different; "kernel" in kernel mode), '
    '"kernel" (the same fields as the kernel has them, or null), "differences" (a list of field, wanted, '
    'kernel) and "real_servers". A real server has address, port, label, pod, node, weight and kernel_weight, '
    'forward and kernel_forward (null where a side has none), differences, active, inactive, cps, in_bps, '
    'out_bps, state (ok, missing, extra, different, draining) and drain (since, deadline, endpoint_listed, or null).',
    'Also "virtual_servers" (kernel mode: every virtual server kipvs owns, Services unknown), "routes" (address, '
    'src, expected_src, ok), "drift" (missing, different and extra virtual servers as labels, missing and extra '
    'addresses, wrong routes, and the commands a sync would run), "netfilter" (backend, unavailable, commands, '
    'leftovers; in kernel mode "rules", kipvs\'s chains as read), "drain_record" (kernel mode), '
    '"foreign_virtual_servers", "problems" (kind, namespace, name, field, message, text), "skipped", "in_sync" '
    '(null in kernel mode) and, with a filter, "filter". --service, --namespace and --vip narrow services, '
    'virtual servers and routes; in_sync and --check still speak for the whole node.',
]
DOCTOR_JSON = [
    'With --output json, one document: "schema" 1, "node", "cluster" (whether the cluster could be read), '
    '"sound", and "targets", one per address asked about, each with address, port (null: every port), sound '
    'and "hops": hop (address, route src, virtual server, real servers, firewall, masquerade, conntrack), ok '
    '(true, false, or null when not judged), evidence and fix (the command, or null).',
]
SECTIONS = {"show": {"JSON OUTPUT": SHOW_JSON}, "doctor": {"JSON OUTPUT": DOCTOR_JSON},
            "watch": {"METRICS": metrics}}


def esc(text: str) -> str:
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + line if line.startswith((".", "'")) else line) for line in text.split("\n"))


def option_block(param) -> list[str]:
    """One .TP entry per option (typer vendors click, so options are recognised by shape, not class)."""
    if getattr(param, "param_type_name", "") != "option" or param.hidden:
        return []
    names = ", ".join(f"\\fB{esc(o)}\\fR" for o in param.opts + param.secondary_opts)
    if takes_value(param):
        names += f" \\fI{esc(metavar(param))}\\fR"
    lines = [".TP", names, esc(param.help or "")]
    extra = []
    if param.envvar:
        extra.append(f"Environment: {param.envvar}.")
    if param.multiple:
        extra.append("May be repeated.")
    if param.default not in (None, False, 0, (), []) and not param.is_flag and not callable(param.default):
        default = param.default.value if hasattr(param.default, "value") else param.default
        extra.append(f"Default: {default}.")
    if extra:
        lines.append(esc(" ".join(extra)))
    return lines


def page(name: str, command, summary: str, global_options: list, invoked: str = "") -> str:
    """`invoked`: the words after kipvs, when they differ from the page's name (`config print`)."""
    title = "kipvs" if name == "kipvs" else f"kipvs-{name}"
    help_text = (command.help or "").strip()
    first, _, rest = help_text.partition("\n")
    out = [f'.TH {title.upper()} 8 "{DATE}" "kipvs {__version__}" "System Administration"', ".SH NAME",
           f"{esc(title)} \\- {esc(summary or first)}", ".SH SYNOPSIS"]
    if name == "kipvs":
        out.append("\\fBkipvs\\fR [\\fIGLOBAL OPTIONS\\fR] \\fICOMMAND\\fR [\\fIOPTIONS\\fR]")
    else:
        out.append(f"\\fBkipvs\\fR [\\fIGLOBAL OPTIONS\\fR] \\fB{esc(invoked or name)}\\fR [\\fIOPTIONS\\fR]")
    out += [".SH DESCRIPTION", esc(first)]
    for paragraph in filter(None, (p.strip() for p in rest.split("\n\n"))):
        out += [".PP", esc(" ".join(paragraph.split()))]
    if name == "kipvs":
        out += [".SH COMMANDS"]
        for sub_name, sub in command.commands.items():
            out += [".TP", f"\\fB{esc(sub_name)}\\fR", esc((sub.help or "").strip().split("\n")[0]),
                    f"See \\fBkipvs\\-{esc(sub_name)}\\fR(8)."]
    options = [line for p in command.params for line in option_block(p)]
    if options:
        out += [".SH OPTIONS"] + options
    if name != "kipvs":
        out += [".SS Global options (before the command)"] + [line for p in global_options for line in option_block(p)]
    if name in EXIT_STATUS:
        out += [".SH EXIT STATUS"]
        for code, meaning in EXIT_STATUS[name]:
            out += [".TP", f"\\fB{code}\\fR", esc(meaning)]
        out += [".PP", esc("A usage error (an unknown option, a bad value) also exits 2, with one line on stderr.")]
    for title, paragraphs in SECTIONS.get(name, {}).items():
        out += [f".SH {title}"]
        for paragraph in paragraphs() if callable(paragraphs) else paragraphs:
            out += [".PP", esc(paragraph)]
    out += [".SH ENVIRONMENT", "Every option can be set by the environment variable named with it. "
            "\\fBNO_COLOR\\fR turns colours off.", ".SH FILES"]
    for path, meaning in FILES:
        out += [".TP", f"\\fI{esc(path)}\\fR", esc(meaning)]
    out += [".PP", esc(TOOLS)]
    if EXAMPLES.get(name):
        out += [".SH EXAMPLES"]
        for example in EXAMPLES[name]:
            out += [".PP", ".nf", esc(example), ".fi"]
    see = SEE_ALSO.get(name, []) + ["ipvsadm(8)", "ip\\-route(8)", "ip\\-address(8)", "iptables(8)",
                                    "iptables\\-restore(8)", "ipset(8)", "conntrack(8)", "sysctl(8)"]
    if name != "kipvs":
        see.insert(0, "kipvs(8)")
    else:
        see = [f"kipvs\\-{esc(n)}(8)" for n in command.commands] + see
    out += [".SH SEE ALSO", ", ".join(f"\\fB{s.split('(')[0]}\\fR({s.split('(')[1]}" for s in see)]
    return "\n".join(out) + "\n"


def pages() -> dict[str, str]:
    root = build(app)  # the CLI as `kipvs` runs it (kipvs/cli_help.py)
    globals_ = [p for p in root.params if p.name not in ("install_completion", "show_completion")]
    result = {"kipvs.8": page("kipvs", root, "node agent for Kubernetes services on IPVS", [])}
    for name, command in root.commands.items():
        if getattr(command, "commands", None):  # a group of one command (`kipvs config print`): its page
            ((sub_name, sub),) = command.commands.items()
            result[f"kipvs-{name}.8"] = page(name, sub, "", globals_, f"{name} {sub_name}")
            continue
        result[f"kipvs-{name}.8"] = page(name, command, "", globals_)
    return result


def completions() -> dict[str, str]:
    """Each shell's script; they ask kipvs itself for the words, so they never drift from the CLI."""
    return {name: completion_script(shell) + "\n" for name, shell in COMPLETION_FILES.items()}


def main() -> int:
    wanted = pages()
    scripts = completions()
    if "--check" in sys.argv:
        stale = [name for name, text in scripts.items()
                 if not (COMPLETIONS / name).exists() or (COMPLETIONS / name).read_text() != text]
        if stale:
            print(f"completions out of date: {', '.join(stale)}; run python scripts/gen_man.py", file=sys.stderr)
            return 1
    else:
        COMPLETIONS.mkdir(exist_ok=True)
        for name, text in scripts.items():
            (COMPLETIONS / name).write_text(text)
    if "--check" in sys.argv:
        stale = [name for name, text in wanted.items()
                 if not (MAN / name).exists() or (MAN / name).read_text() != text]
        extra = [p.name for p in MAN.glob("*.8") if p.name not in wanted]
        if stale or extra:
            print(f"man pages out of date: {', '.join(stale + extra)}; run python scripts/gen_man.py", file=sys.stderr)
            return 1
        return 0
    MAN.mkdir(exist_ok=True)
    for name, text in wanted.items():
        (MAN / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
