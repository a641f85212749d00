"""Output helpers shared by the commands: one JSON document, a progress line, problem reports."""
from __future__ import annotations

import json
import logging
from contextlib import contextmanager

from kipvs.environment import Environment

log = logging.getLogger("kipvs")


def emit_json(env: Environment, data: dict) -> None:
    json.dump(data, env.stdout, indent=2, sort_keys=True)
    env.stdout.write("\n")
    env.stdout.flush()


def summary(env: Environment, text: str) -> None:
    """The one-line outcome, on stderr; -q silences it (cron mails whatever a job prints)."""
    if not env.quiet:
        env.stderr.write(text + "\n")
        env.stderr.flush()


@contextmanager
def progress_reporter(env: Environment):
    """A spinner with the current phase on a terminal; plain log lines (-v) when stderr is not one."""
    if not env.stderr_isatty:
        yield lambda phase: log.info("%s", phase)
        return
    from rich.console import Console

    with Console(file=env.stderr).status("starting") as status:
        yield lambda phase: status.update(phase)


def report_problems(problems) -> None:
    """Every problem of a one-shot run, one line each: a warning about an object (the rest was done), never
    an error (errors are for what failed: red on success teaches operators to ignore red)."""
    for problem in problems:
        log.warning("problem: %s", problem)


class ProblemLog:
    """For the long-running service: a problem is logged when it appears and when it goes away,
    not on every sync (a broken object would otherwise fill the journal)."""

    def __init__(self) -> None:
        self.current: set[str] = set()

    def update(self, problems) -> None:
        now = {str(p) for p in problems}
        for line in sorted(now - self.current):
            log.warning("problem: %s", line)
        for line in sorted(self.current - now):
            log.warning("resolved: %s", line)
        self.current = now
