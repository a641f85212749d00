"""The runner seam for unit tests: recorded tool output in, recorded batches out. Nothing is executed."""
from __future__ import annotations

import io
import json
from pathlib import Path

from kipvs.errors import ToolMissing
from kipvs.runner import Batch, Result, Runner

NETFILTER_TOOLS = ("iptables-", "ip6tables-", "ipset ")

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def fixture_outputs(name: str) -> dict[str, str]:
    """{command line: output} captured in the lab by scripts/capture-fixtures."""
    return json.loads((FIXTURES / f"{name}.json").read_text())["outputs"]


class RecordingRunner(Runner):
    """Answers reads from a list of kernel states; each apply moves to the next state (if any)."""

    def __init__(self, *states: dict[str, str], dry_run: bool = False, out=None, stderr: dict[str, str] | None = None):
        """`stderr`: what a batch tool prints when it applies (by tool; none by default). As the real
        tools do, `ipvsadm -R` still exits 0 then, the others (ip -force -batch, the restores) exit 1."""
        super().__init__()
        self.states = list(states)
        self.stderr = stderr or {}
        self.dry_run = dry_run
        self.reads: list[str] = []
        self.batches: list[Batch] = []
        self.written: dict[str, str] = {}
        self.out = out if out is not None else io.StringIO()

    def run(self, argv: list[str], stdin: str | None = None) -> str:
        key = " ".join(argv)
        self.reads.append(key)
        if argv[-2:] == ["-batch", "-"] and argv[0] == "ip":
            # `ip -j [-6] -batch -`: answer each line from the per-command captures.
            family = "-6" if "-6" in argv else "-4"
            return "".join(self.answer(f"ip -j {line}" if line.startswith("addr") else f"ip -j {family} {line}")
                           for line in stdin.splitlines() if line)
        return self.answer(key)

    def answer(self, key: str) -> str:
        if key.startswith(NETFILTER_TOOLS) and key not in self.states[0]:
            # A recorded node without iptables: netfilter is reported unavailable, IPVS goes on.
            raise ToolMissing(f"`{key.split()[0]}` not found on PATH: install the iptables package")
        if key not in self.states[0]:
            raise AssertionError(f"unexpected command: {key}")
        return self.states[0][key]

    def read_file(self, path: str) -> str | None:
        self.reads.append(f"read {path}")
        if path in self.written:
            return self.written[path]
        return self.states[0].get(f"read {path}")

    def write_file(self, path: str, text: str) -> None:
        self.written[path] = text

    def apply(self, batches: list[Batch]) -> list[Result]:
        batches = [b for b in batches if b.lines]
        if self.dry_run:
            for batch in batches:
                self.out.write("".join(line + "\n" for line in batch.command_lines()))
            return []
        self.batches += batches
        if batches and len(self.states) > 1:
            self.states.pop(0)
        return [Result((b.tool,), int(b.tool in self.stderr and b.tool != "ipvsadm"), "", self.stderr.get(b.tool, ""))
                for b in batches]

    @property
    def applied_lines(self) -> list[str]:
        return [line for b in self.batches for line in b.command_lines()]


def invoke(args: list[str], runner_factory=None, privileged: bool = True, **kwargs):
    """The CLI in-process, with the runner seam (and root or not) injected through its Environment."""
    from typer.testing import CliRunner

    from kipvs.cli import app
    from kipvs.environment import Environment

    env = Environment(privileged=lambda: privileged)
    if runner_factory is not None:
        env.runner_factory = runner_factory
    return CliRunner().invoke(app, args, obj=env, **kwargs)
