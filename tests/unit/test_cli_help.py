"""--help reads whole at 80 columns and through a pipe; usage errors are one line with exit 2."""
import os
import re
import subprocess
import sys

import pytest
import typer.main

from kipvs.cli import app
from kipvs.cli_help import takes_value

ROOT = typer.main.get_command(app)
COMMANDS = [[]] + [[name] for name in ROOT.commands]


def kipvs(*args: str, columns: str | None = "80") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns:
        env["COLUMNS"] = columns
    return subprocess.run([sys.executable, "-m", "kipvs", *args], capture_output=True, text=True, env=env,
                          timeout=60)  # stdout is a pipe, as in `kipvs sync --help | less`


def params_of(words: list[str]):
    command = ROOT.commands[words[0]] if words else ROOT
    return [p for p in command.params if getattr(p, "param_type_name", "") == "option" and not p.hidden]


@pytest.mark.parametrize("words", COMMANDS, ids=lambda w: " ".join(w) or "kipvs")
@pytest.mark.parametrize("columns", ["80", None], ids=["COLUMNS=80", "no-COLUMNS"])
def test_help_is_complete_and_fits_80_columns(words, columns):
    proc = kipvs(*words, "--help", columns=columns)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text and "╭" not in text
    for param in params_of(words):
        for name in param.opts + param.secondary_opts:
            assert re.search(rf"(^|[ ,/]){re.escape(name)}([ ,\n]|$)", text, re.M), name  # whole, never cut
        if param.envvar:
            assert param.envvar in text.replace("\n", " "), param.envvar  # env names have no hyphen to break at


@pytest.mark.parametrize("words", COMMANDS, ids=lambda w: " ".join(w) or "kipvs")
def test_flags_show_no_value_and_values_are_named(words):
    text = kipvs(*words, "--help").stdout
    assert not re.search(r"<(bool|str|int|float|list\[.*?\])>", text), text
    for param in params_of(words):
        long = max(param.opts, key=len)
        line = next(line for line in text.splitlines()
                    if line.startswith("  -") and re.search(rf"(^ +|, ){re.escape(long)}( |$)", line))
        after = line.split(long, 1)[1]
        word = after.split("  ")[0].strip()
        if takes_value(param):
            assert word and (word.upper() == word or "|" in word), (param.name, line)  # FILE, IP, text|json
        else:
            assert not word or word.startswith("/"), (param.name, line)  # a flag (or its --no- twin)


def test_choice_values_are_listed():
    assert "-o, --output text|json" in kipvs("sync", "--help").stdout


@pytest.mark.parametrize("args, fragment", [
    (["sync", "--bogus"], "No such option: --bogus"),
    (["sync", "--output", "xml"], "'xml' is not one of 'text', 'json'"),
    (["sync", "--lock-timeout", "soon"], "Invalid value for '--lock-timeout'"),
    (["frobnicate"], "No such command 'frobnicate'"),
    (["fix-routes", "--interface"], "Option '--interface' requires an argument"),
])
def test_usage_errors_are_one_line_with_exit_2(args, fragment):
    proc = kipvs(*args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("kipvs: error: "), proc.stderr
    assert fragment in proc.stderr and "--help" in proc.stderr


def test_kipvs_alone_prints_the_help_and_exits_2():
    proc = kipvs()
    assert proc.returncode == 2 and "Usage: kipvs [OPTIONS] COMMAND" in proc.stderr and "fix-routes" in proc.stderr
