"""Where a command's output goes and how it runs processes, injected so that tests run the CLI in-process.

stdout carries the product (tables, one JSON document, or the exact commands of a dry run);
stderr carries logs, progress and the summary. Deciding both in one place keeps a dry run,
JSON and a progress spinner from ever interleaving on the same stream.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Callable, TextIO

from kipvs.runner import DryRunRunner, Runner

CAP_NET_ADMIN = 12


def has_net_admin() -> bool:
    """Root, or the capability that ip and ipvsadm need (a DaemonSet may grant only that)."""
    if os.geteuid() == 0:
        return True
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    except (OSError, ValueError):
        pass
    return False


def make_runner(dry_run: bool, timeout: float, out: TextIO | None = None) -> Runner:
    """A runner whose command helper is forked now: commands create runners before loading cluster state."""
    runner = DryRunRunner(out=out, timeout=timeout) if dry_run else Runner(timeout=timeout)
    runner.start_helper()
    return runner


def terminal_width(default: int = 200) -> int:
    """COLUMNS when it is a sensible number, else `default` (COLUMNS=abc must not crash anything)."""
    try:
        value = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        return default
    return value if 20 <= value <= 10000 else default


@dataclass
class Environment:
    """Streams left as None are the process's own, looked up when used (so a test harness that swaps
    sys.stdout, like typer's CliRunner, still captures them)."""

    out: TextIO | None = None
    err: TextIO | None = None
    out_isatty: bool | None = None
    err_isatty: bool | None = None
    runner_factory: Callable[..., Runner] = make_runner
    privileged: Callable[[], bool] = has_net_admin
    quiet: bool = False

    @property
    def stdout(self) -> TextIO:
        return self.out or sys.stdout

    @property
    def stderr(self) -> TextIO:
        return self.err or sys.stderr

    @property
    def stdout_isatty(self) -> bool:
        return self.out_isatty if self.out_isatty is not None else _isatty(self.stdout)

    @property
    def stderr_isatty(self) -> bool:
        return self.err_isatty if self.err_isatty is not None else _isatty(self.stderr)

    def runner(self, dry_run: bool, timeout: float, collect: bool = False) -> Runner:
        """`collect`: a dry run keeps its command lines instead of printing them (for one JSON document)."""
        return self.runner_factory(dry_run, timeout, None if collect else self.stdout)


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
