"""The one place that runs a process.

Every `ip` and `ipvsadm` call goes through a Runner: reads with `run`, changes
with `apply` (batched: one `ip -batch`, one `ipvsadm -R`). `DryRunRunner`
reads the kernel like the real one but prints the changing command lines
instead of running them. Tests substitute a recording runner here and only here.
Processes are started through `sh` by kipvs.spawn, from a small helper forked at start-up.
"""
from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass
from typing import TextIO

from kipvs.bounded_read import read_regular
from kipvs.errors import CommandFailed, KipvsError, NoDummy, NoIPVS, PermissionDenied, ToolMissing
from kipvs.lock import make_runtime_dir
from kipvs.spawn import CommandHelper, HelperLost, start, which

log = logging.getLogger("kipvs.runner")

DEFAULT_TIMEOUT = 60.0
SMALL_FILE_BYTES = 1 << 20
PACKAGE_OF = {"ip": "iproute2", "ipvsadm": "ipvsadm", "ipset": "ipset"}
PACKAGE_OF.update({f"{c}-{b}-{op}": "iptables" for c in ("iptables", "ip6tables") for b in ("legacy", "nft")
                   for op in ("save", "restore")})

# Batch tools: how each takes a whole batch on stdin (sysctl batches are written to /proc/sys),
# and how one batch line reads as a standalone command.
BATCH_ARGV = {"ip": ["ip", "-force", "-batch", "-"], "ipvsadm": ["ipvsadm", "-R"]}
LINE_PREFIX = {"ip": "ip", "ipvsadm": "ipvsadm", "sysctl": "sysctl -w", "ipset": "ipset"}
BATCH_ARGV["ipset"] = ["ipset", "restore"]
# iptables-restore takes its input whole (one transaction per table); --noflush keeps everything
# the input does not name, and the legacy backend waits for the xtables lock (-w).
for _command in ("iptables", "ip6tables"):
    BATCH_ARGV[f"{_command}-legacy-restore"] = [f"{_command}-legacy-restore", "-w", "--noflush"]
    BATCH_ARGV[f"{_command}-nft-restore"] = [f"{_command}-nft-restore", "--noflush"]


@dataclass(frozen=True)
class Batch:
    """Lines for one batch tool, e.g. Batch("ip", ["route replace local 10.0.0.1 ..."])."""

    tool: str
    lines: tuple[str, ...]

    def command_lines(self) -> list[str]:
        """Each line as the standalone command it stands for (what --dry-run prints); restore input
        as a shell here-document, exactly as it is fed to the tool."""
        if self.tool not in LINE_PREFIX:
            marker = here_document_marker(self.lines)
            return [" ".join(BATCH_ARGV[self.tool]) + f" <<'{marker}'", *self.lines, marker]
        return [f"{LINE_PREFIX[self.tool]} {line}" for line in self.lines]

    def check(self) -> None:
        """BatchRefused unless every line stays one line (no line break, no NUL), in slices so that a
        dry run's 665,000 lines are never joined whole."""
        lines = self.lines
        for start in range(0, len(lines), 4096):
            part = lines[start:start + 4096]
            text = "\n".join(part)
            if text.count("\n") != len(part) - 1 or "\0" in text or "\r" in text:
                raise BatchRefused(f"a {self.tool} batch line holds a line break or NUL: nothing of it is run")

    def text(self) -> str:
        """The batch as its tool reads it on stdin: one line per planned command (checked)."""
        self.check()
        return "\n".join(self.lines) + "\n"


class BatchRefused(KipvsError):
    """A planned line that would be read as more than one (kipvs renders lines from typed values, so this is
    a bug; refusing is what keeps it from becoming a command)."""


def here_document_marker(lines) -> str:
    """`EOF`, or the first of EOF1, EOF2, ... that is no line of the document: the body never ends it early."""
    taken = set(lines)
    marker, n = "EOF", 0
    while marker in taken:
        n += 1
        marker = f"EOF{n}"
    return marker


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float = 0.0

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    @property
    def clean(self) -> bool:
        """Exit 0 and nothing on stderr: a batch tool applied every line (`ipvsadm -R` exits 0 after a
        failing line but prints why; `ip -force -batch` and the restores print it and exit non-zero)."""
        return self.returncode == 0 and not self.error_lines


def classify_failure(argv: list[str], returncode: int | None, stderr: str) -> Exception:
    """Turn a failed command into the error an operator can act on."""
    text = stderr.lower()
    if "operation not permitted" in text or "permission denied" in text:
        return PermissionDenied(f"`{' '.join(argv)}`: permission denied: run as root (needs CAP_NET_ADMIN)")
    if argv[0] == "ipvsadm" and ("can't initialize ipvs" in text or "protocol not available" in text):
        return NoIPVS("the kernel has no IPVS: load the ip_vs module (modprobe ip_vs) or use a kernel with IPVS")
    if argv[0] == "ip" and "unknown device type" in text:
        return NoDummy("the kernel cannot create dummy interfaces: modprobe dummy (or use a kernel with "
                       "CONFIG_DUMMY)")
    return CommandFailed(argv, returncode, stderr)


class Runner:
    """Runs commands for real through `sh`, with a timeout and clear errors."""

    dry_run = False

    proc_sys = "/proc/sys"  # where sysctl batches are written (tests point it elsewhere)

    def __init__(self, timeout: float = DEFAULT_TIMEOUT):
        self.timeout = timeout
        self.helper: CommandHelper | None = None

    def start_helper(self) -> None:
        """Fork the process that starts this runner's commands, now, while kipvs is small: call it
        before loading cluster state (kipvs.spawn says why). Without it, commands are forked from here."""
        if self.helper is None:
            self.helper = CommandHelper()

    def close(self) -> None:
        """Stop the helper (it also stops by itself when kipvs exits)."""
        if self.helper is not None:
            self.helper.close()

    def _exec(self, argv: list[str], stdin: str | None) -> Result:
        program = which(argv[0])
        if program is None:
            package = PACKAGE_OF.get(argv[0], argv[0])
            raise ToolMissing(f"`{argv[0]}` not found on PATH: install the {package} package") from None
        started = time.monotonic()
        data, env = stdin.encode() if stdin is not None else None, _child_env()
        outcome = None
        if self.helper is not None:
            try:
                outcome = self.helper.run(program, argv[1:], data, env, self.timeout)
            except HelperLost as exc:
                log.error("%s; kipvs starts its commands itself from now on", exc)
                raise CommandFailed(argv, None, str(exc)) from None
        if outcome is None:
            outcome = start(program, argv[1:], data, env, self.timeout)
        if outcome.timed_out:
            raise CommandFailed(argv, None, f"timed out after {self.timeout:g}s")
        if outcome.error:
            raise CommandFailed(argv, None, outcome.error)
        seconds = time.monotonic() - started
        return Result(tuple(argv), outcome.returncode, _text(outcome.stdout), _text(outcome.stderr), seconds)

    def run(self, argv: list[str], stdin: str | None = None) -> str:
        """Run a command that must succeed; return its stdout."""
        result = self._exec(argv, stdin)
        log.debug("ran %s in %.3fs", " ".join(argv), result.seconds)
        if result.returncode != 0:
            raise classify_failure(argv, result.returncode, result.stderr)
        return result.stdout

    def read_file(self, path: str) -> str | None:
        """A small file: a kernel one such as /proc/sys/net/ipv4/vs/conntrack, or kipvs's drain record.
        None when it does not exist; OSError when it is not a regular file or larger than 1 MiB
        (kipvs.bounded_read), UnicodeDecodeError when it is not ASCII."""
        try:
            return read_regular(path, SMALL_FILE_BYTES).decode("ascii")
        except FileNotFoundError:
            return None

    def write_file(self, path: str, text: str) -> None:
        """Replace a small state file of kipvs's own (the drain record) atomically."""
        directory = os.path.dirname(os.path.abspath(path))
        make_runtime_dir(path)
        with tempfile.NamedTemporaryFile("w", dir=directory, prefix=".kipvs-", delete=False, encoding="utf-8") as f:
            f.write(text)
        os.replace(f.name, path)

    def apply(self, batches: list[Batch]) -> list[Result]:
        """Run each non-empty batch once. A failing line does not stop the batch
        (`ip -force`, and `ipvsadm -R` carries on by itself): callers verify the
        kernel afterwards. Permission and missing-IPVS failures still raise."""
        results = []
        for batch in batches:
            if not batch.lines:
                continue
            if log.isEnabledFor(logging.INFO):  # 15,000 lines of a full sync: not built when not logged
                for line in batch.command_lines():
                    log.info("%s", line)
            if batch.tool == "sysctl":
                batch.check()
                results.append(self._write_sysctls(batch.lines))
                continue
            argv = BATCH_ARGV[batch.tool]
            result = self._exec(argv, batch.text())
            log.debug("%s: %d lines in %.3fs", " ".join(argv), len(batch.lines), result.seconds)
            if result.returncode != 0 or result.error_lines:
                error = classify_failure(list(argv), result.returncode, result.stderr)
                if not isinstance(error, CommandFailed):
                    raise error
                for line in result.error_lines:
                    log.error("%s: %s", argv[0], line)
            results.append(result)
        return results


    def _write_sysctls(self, lines: tuple[str, ...]) -> Result:
        """`name=value` lines written straight to /proc/sys, as `sysctl -w` does, without starting it
        (a process start is tens of ms in a guest); a refused value is logged, verification reports it."""
        started, errors = time.monotonic(), []
        for line in lines:
            name, _, value = line.partition("=")
            path = os.path.join(self.proc_sys, *name.split("."))
            try:
                with open(path, "w", encoding="ascii") as f:
                    f.write(value + "\n")
            except OSError as exc:
                errors.append(f"cannot set {name}: {exc.strerror or exc}")
        result = Result(("sysctl", "-w", *lines), 1 if errors else 0, "", "\n".join(errors),
                        time.monotonic() - started)
        if errors:
            error = classify_failure(list(result.argv), 1, result.stderr)
            if not isinstance(error, CommandFailed):  # not root: the same error as any other write
                raise error
            for line in errors:
                log.error("sysctl: %s", line)
        return result


class DryRunRunner(Runner):
    """Reads the kernel for real; prints the changes it would make, one command per line."""

    dry_run = True

    def __init__(self, out: TextIO | None = None, timeout: float = DEFAULT_TIMEOUT):
        """`out`: where the command lines go; None prints nothing (--output json prints the plan itself)."""
        super().__init__(timeout)
        self.out = out

    def write_file(self, path: str, text: str) -> None:
        """A dry run keeps no record."""

    def apply(self, batches: list[Batch]) -> list[Result]:
        if self.out is None:
            return []
        for batch in batches:
            batch.check()  # a line that would be read as two is never printed either (`| sh` runs it)
            # Line by line: 665,000 lines of a 50,000-Service dry run are not kept or joined in memory.
            prefix = LINE_PREFIX.get(batch.tool)
            if prefix is None:  # restore input: one here-document, as Batch.command_lines prints it
                self.out.writelines(f"{line}\n" for line in batch.command_lines())
            else:
                self.out.writelines(f"{prefix} {line}\n" for line in batch.lines)
        self.out.flush()
        return []


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _child_env() -> dict[str, str]:
    """The tools' output is parsed, so it must not be localised."""
    env = dict(os.environ)
    env["LC_ALL"] = "C"
    return env
