"""How the CLI presents itself: --help, usage errors, shell completion. The options themselves live in cli.py.

typer's rich help cuts option and environment names at 80 columns or through a pipe and shows
types such as `<list[str]>` as if flags took values; its usage errors are a multi-line box; its
`--install-completion` is a flag, so `--install-completion zsh` installed completion for the
shell it detected. Here: click's plain help (wrapped, never cut), each value named after what it
is, usage errors on one line with exit 2, and completion for the shell that is asked for.
"""
from __future__ import annotations

import os
import sys
from typing import NoReturn

import typer
import typer.main
from typer.completion import completion_init

try:  # typer >= 0.20 vendors click; older ones depend on it
    from typer import _click as click
except ImportError:  # pragma: no cover - depends on the installed typer
    import click  # type: ignore[no-redef]

from kipvs.cli_options import BOOLEAN_FLAGS
from kipvs.errors import ExitStatus

# `kipvs` alone raises this (click >= 8.2) to print the help; older clicks print it themselves.
NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())

# What each option's value is, by parameter name; others show their name in capitals.
METAVARS = {
    "cluster_file": "FILE", "kubeconfig": "FILE", "lock_file": "FILE", "node_name": "NAME", "node_ip": "IP",
    "interface": "IFACE", "scheduler": "NAME", "service_node_port_range": "FIRST-LAST",
    "service_external_ip_range": "CIDR", "loadbalancer_ip_range": "CIDR", "excluded_cidrs": "CIDR",
    "command_timeout": "SECONDS", "lock_timeout": "SECONDS", "min_sync_period": "DURATION",
    "sync_period": "DURATION", "health_max_age": "DURATION", "metrics_addr": "HOST:PORT",
    "api_timeout": "SECONDS", "service_cluster_ip_range": "CIDR", "cluster_cidr": "CIDR",
    "iptables_mode": "auto|legacy|nft", "ipvs_graceful_termination": "BOOL",
    "ipvs_graceful_period": "DURATION", "drain_record": "FILE", "ipvs_tcp_timeout": "DURATION",
    "ipvs_tcpfin_timeout": "DURATION", "ipvs_udp_timeout": "DURATION", "ipvs_strict_arp": "BOOL",
    "healthz_bind_address": "HOST:PORT", "config": "FILE", "effective_config": "FILE", "metrics_port": "PORT",
    "master": "URL", "nodeport_addresses": "CIDR|primary", "proxy_mode": "MODE",
    "service": "NAMESPACE/NAME", "vip": "VIP[:PORT]", "interval": "SECONDS",
}
SHELLS = ("bash", "zsh", "fish")


def takes_value(param) -> bool:
    return getattr(param, "param_type_name", "") == "option" and not param.is_flag and not param.count


def metavar(param) -> str:
    """The word shown after a value-taking option, in --help and the man pages: `text|json` for a choice."""
    # typer >= 0.20 describes a value by type_descriptor; click's own options by type
    if set(getattr(param, "opts", ())) & BOOLEAN_FLAGS:
        return "[BOOL]"  # alone it means true
    choices = getattr(getattr(param, "type_descriptor", None) or getattr(param, "type", None), "choices", None)
    if choices:
        return "|".join(getattr(c, "value", str(c)) for c in choices)
    return METAVARS.get(param.name or "", (param.name or "value").upper())


def first_sentence(text: str) -> str:
    line = (text or "").strip().split("\n")[0]
    return line.split(". ")[0].rstrip(".") + "." if line else ""


def polish(command):
    """Name every value, and give each command a short help the command list wraps instead of cutting."""
    for param in command.params:
        if takes_value(param) and param.name not in ("install_completion", "show_completion"):
            param.metavar = metavar(param)
    for sub in getattr(command, "commands", {}).values():
        sub.short_help = sub.short_help or first_sentence(sub.help)
        polish(sub)
    return command


# ---- completion ----------------------------------------------------------------------------------

def current_shell() -> str:
    """The shell kipvs was started from: its parent process if shellingham tells, else $SHELL."""
    try:
        import shellingham  # a typer dependency

        return shellingham.detect_shell()[0]
    except Exception:  # detection failure of any kind: fall back to the login shell
        return os.path.basename(os.environ.get("SHELL", "")) or "bash"


def completion_script(shell: str, prog_name: str = "kipvs") -> str:
    from typer._completion_shared import get_completion_script

    return get_completion_script(prog_name=prog_name, complete_var=f"_{prog_name.upper()}_COMPLETE", shell=shell)


def completion_request(args: list[str]) -> tuple[str, str] | None:
    """(`install` or `show`, shell) for `--install-completion [SHELL]` / `--show-completion [SHELL]`.

    typer declares both as flags, so a shell named after one was taken for a command and the
    detected shell won; they are read here, before click parses anything."""
    for i, arg in enumerate(args):
        if arg == "--" or (not arg.startswith("-") and arg not in SHELLS):
            return None  # a command: the options belong to the top level only
        for action in ("install", "show"):
            flag = f"--{action}-completion"
            if arg == flag:
                following = args[i + 1] if i + 1 < len(args) else ""
                return action, following if following and not following.startswith("-") else current_shell()
            if arg.startswith(flag + "="):
                return action, arg.split("=", 1)[1]
    return None


def complete(action: str, shell: str) -> int:
    if shell not in SHELLS:
        print(f"kipvs: error: cannot complete for {shell!r}: bash, zsh or fish", file=sys.stderr)
        return int(ExitStatus.ERROR)
    if action == "show":
        print(completion_script(shell))
        return 0
    from typer._completion_shared import install

    completion_init()
    _, path = install(shell=shell, prog_name="kipvs", complete_var="_KIPVS_COMPLETE")
    print(f"kipvs: {shell} completion installed in {path}; it takes effect in a new shell", file=sys.stderr)
    return 0


def describe_completion_options(command):
    help_texts = {
        "install_completion": "Install completion for the current shell, or for the shell named after this option "
                              "(bash, zsh or fish), in the user's start-up files.",
        "show_completion": "Print the completion script for the current shell, or for the one named after it, "
                           "e.g. to save as /usr/share/bash-completion/completions/kipvs.",
    }
    for param in command.params:
        param.help = help_texts.get(param.name, param.help)
    return command


# ---- entry point ---------------------------------------------------------------------------------

def one_line(exc) -> str:
    """A usage error as one line naming what to read: `kipvs: error: No such option: --x (kipvs sync --help)`."""
    message = " ".join(exc.format_message().split())
    path = exc.ctx.command_path if getattr(exc, "ctx", None) else "kipvs"
    return f"kipvs: error: {message} (see '{path} --help')"


def build(app: typer.Typer):
    completion_init()  # typer's completion classes answer the shells' requests
    return describe_completion_options(polish(typer.main.get_command(app)))


def run(app: typer.Typer, args: list[str] | None = None) -> NoReturn:
    """Run the CLI; usage errors are one line on stderr with exit 2, like kipvs's own errors."""
    args = sys.argv[1:] if args is None else args
    request = completion_request(args)
    if request:
        sys.exit(complete(*request))
    command = build(app)
    try:
        status = command.main(args=args, prog_name="kipvs", standalone_mode=False)
    except NO_ARGS_IS_HELP as exc:  # `kipvs` alone: the help, as a usage error
        print(exc.format_message(), file=sys.stderr)
        sys.exit(int(ExitStatus.ERROR))
    except click.exceptions.UsageError as exc:
        print(one_line(exc), file=sys.stderr)
        sys.exit(int(ExitStatus.ERROR))
    except click.exceptions.ClickException as exc:
        print(f"kipvs: error: {' '.join(exc.format_message().split())}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("kipvs: aborted", file=sys.stderr)
        sys.exit(1)
    sys.exit(status if isinstance(status, int) else 0)
