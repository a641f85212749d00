"""Completion for bash, zsh and fish: the shell asked for is the one installed, and each shell completes.

scripts/setup installs the three shells; a missing one fails here instead of skipping."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BIN = str(Path(sys.executable).parent)  # where the project's `kipvs` is
INSTALLED = {"bash": ".bash_completions/kipvs.sh", "zsh": ".zfunc/_kipvs",
             "fish": ".config/fish/completions/kipvs.fish"}


def env_for(home: Path) -> dict[str, str]:
    # SHELL=bash and a bash parent: the shell named on the command line must still win.
    return {"HOME": str(home), "PATH": f"{BIN}:/usr/bin:/bin", "SHELL": "/bin/bash", "LANG": "C.UTF-8"}


def shell(name: str, script: str, home: Path) -> str:
    assert shutil.which(name), f"{name} is missing (scripts/setup installs it)"
    flags = {"bash": ["--norc", "--noprofile"], "zsh": ["-f"], "fish": []}[name]  # fish: HOME is empty, so no user config
    proc = subprocess.run([name, *flags, "-c", script], capture_output=True, text=True, env=env_for(home),
                          cwd=home, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("name", ["bash", "zsh", "fish"])
def test_install_completion_installs_for_the_shell_named(name, tmp_path):
    proc = subprocess.run(["bash", "-c", f"kipvs --install-completion {name}"], capture_output=True, text=True,
                          env=env_for(tmp_path), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"{name} completion installed" in proc.stderr
    assert [other for other, path in INSTALLED.items() if (tmp_path / path).exists()] == [name]


def installed(name: str, home: Path) -> Path:
    subprocess.run([f"{BIN}/kipvs", "--install-completion", name], check=True, capture_output=True,
                   env=env_for(home), timeout=60)
    return home / INSTALLED[name]


def test_bash_completes_commands_and_options(tmp_path):
    script = installed("bash", tmp_path)
    out = shell("bash", f"source {script}; complete -p kipvs; "
                "COMP_WORDS=(kipvs fix-r); COMP_CWORD=1; _kipvs_completion kipvs; echo \"${COMPREPLY[@]}\"; "
                "COMP_WORDS=(kipvs sync --cluster-f); COMP_CWORD=2; _kipvs_completion kipvs; echo \"${COMPREPLY[@]}\"",
                tmp_path)
    registration, commands, options = out.splitlines()
    assert registration.endswith("_kipvs_completion kipvs")
    assert commands == "fix-routes"
    assert options == "--cluster-file"


def test_zsh_loads_the_completion_and_completes(tmp_path):
    installed("zsh", tmp_path)
    # compinit finds the #compdef file on fpath; _arguments is stubbed to print what the completion offers.
    out = shell("zsh", "fpath=(~/.zfunc $fpath); autoload -Uz compinit; compinit -u -d ~/.zcompdump; "
                "print -r -- ${_comps[kipvs]}; source ~/.zfunc/_kipvs; _arguments() { print -r -- \"$@\" }; "
                "words=(kipvs fix-routes --inter); CURRENT=3; _kipvs_completion", tmp_path)
    registered, offered = out.splitlines()[0], out.splitlines()[1:]
    assert registered == "_kipvs"
    assert offered and '"--interface":"Dummy interface' in offered[0]


def test_fish_completes_commands_and_options(tmp_path):
    installed("fish", tmp_path)  # fish loads ~/.config/fish/completions/kipvs.fish by itself
    out = shell("fish", "complete -C 'kipvs fix-r'; complete -C 'kipvs sync --node-n'", tmp_path)
    assert [line.split("\t")[0] for line in out.splitlines()] == ["fix-routes", "--node-name"]


@pytest.mark.parametrize("name, marker", [("bash", "complete -o default -F _kipvs_completion kipvs"),
                                          ("zsh", "#compdef kipvs"), ("fish", "complete --command kipvs")])
def test_show_completion_prints_the_named_shells_script(name, marker, tmp_path):
    proc = subprocess.run([f"{BIN}/kipvs", "--show-completion", name], capture_output=True, text=True,
                          env=env_for(tmp_path), timeout=60)
    assert proc.returncode == 0 and marker in proc.stdout, proc.stderr


def test_an_unknown_shell_is_a_usage_error(tmp_path):
    proc = subprocess.run([f"{BIN}/kipvs", "--install-completion", "tcsh"], capture_output=True, text=True,
                          env=env_for(tmp_path), timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "bash, zsh or fish" in proc.stderr
    assert not os.listdir(tmp_path)
