import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kipvs import __version__
from kipvs.cli import app

REPO = Path(__file__).resolve().parent.parent.parent


def test_man_pages_match_the_cli():
    proc = subprocess.run([sys.executable, "scripts/gen_man.py", "--check"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("page", sorted(p.name for p in (REPO / "man").glob("*.8")))
def test_man_pages_render_without_warnings(page):
    assert shutil.which("man"), "man-db is required (scripts/setup installs it)"
    proc = subprocess.run(["man", "--warnings", "-l", str(REPO / "man" / page)], capture_output=True, text=True,
                          env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert "SEE ALSO" in proc.stdout and "ipvsadm(8)" in proc.stdout


def test_every_option_of_every_command_is_in_its_man_page():
    import typer.main

    root = typer.main.get_command(app)
    for name, command in root.commands.items():
        text = (REPO / "man" / f"kipvs-{name}.8").read_text()
        if getattr(command, "commands", None):  # `kipvs config print`: the page of the group's one command
            ((_, command),) = command.commands.items()
        for param in command.params:
            for opt in param.opts if not param.hidden else ():  # hidden: an old spelling, said in another's help
                assert opt.replace("-", "\\-") in text, (name, opt)


def test_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"kipvs {__version__}\n"
