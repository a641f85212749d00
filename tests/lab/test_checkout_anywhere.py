"""A checkout under /tmp works, and scripts/setup changes nothing outside it but Debian packages."""
from __future__ import annotations

import os
from pathlib import Path

from tests.lab.conftest import Clone, run, system_pip_lists


def fingerprint(root: Path) -> dict[str, tuple]:
    """Every file and directory under `root` with its size, mode and modification time."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            found[os.path.relpath(os.path.join(dirpath, name), root)] = (st.st_size, st.st_mode, st.st_mtime_ns)
    return found


def test_setup_leaves_the_system_python_alone(clone: Clone):
    assert "creating .venv" in clone.first_setup.stderr
    assert system_pip_lists() == clone.pip_before
    # The venv is built from python3 and holds kipvs, editable from this clone.
    proc = run([".venv/bin/python", "-c", "import kipvs; print(kipvs.__file__)"], clone.path, timeout=60)
    assert proc.stdout.strip() == str(clone.path / "kipvs" / "__init__.py"), proc.stderr


def test_setup_run_twice_changes_nothing_the_second_time(clone: Clone):
    before = fingerprint(clone.path)
    dpkg_before = Path("/var/lib/dpkg/status").read_text()
    second = run(["scripts/setup"], clone.path, timeout=300, env={"PYTHON": "python3"})
    assert second.returncode == 0 and second.stderr == "" and second.stdout == "", second.stderr
    assert fingerprint(clone.path) == before
    assert Path("/var/lib/dpkg/status").read_text() == dpkg_before
    assert system_pip_lists() == clone.pip_before


def test_a_lab_command_runs_from_a_clone_under_tmp(clone: Clone):
    """The guest mounts its own tmpfs over /tmp; the lab mounts the checkout into it again, read-only."""
    assert str(clone.path).startswith("/tmp/")
    script = ("import kipvs, os, subprocess, sys; print('cwd', os.getcwd()); print('kipvs', kipvs.__file__); "
              "print('prefix', sys.prefix); print(subprocess.run(['ipvsadm', '-L', '-n'], capture_output=True, "
              "text=True).stdout); print('writable', os.access('.', os.W_OK))")
    proc = run([".venv/bin/python", "scripts/lab", "--timeout", "600", "--", ".venv/bin/python", "-c", script],
               clone.path, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"cwd {clone.path}\n" in proc.stdout
    assert f"kipvs {clone.path}/kipvs/__init__.py\n" in proc.stdout
    assert f"prefix {clone.path}/.venv\n" in proc.stdout  # the venv, not its base interpreter
    assert "IP Virtual Server version" in proc.stdout  # the guest's kernel, with IPVS
    assert "writable False" in proc.stdout  # the host's checkout stays read-only in the guest



def test_man_finds_the_pages_with_the_venv_on_path(clone: Clone):
    """README: `. .venv/bin/activate` (or .venv/bin on PATH), then `man kipvs-sync`."""
    env = {"PATH": f"{clone.path / '.venv' / 'bin'}:/usr/bin:/bin", "MANWIDTH": "80", "LANG": "C.UTF-8"}
    proc = run(["man", "kipvs-sync"], clone.path, timeout=60, env=env)
    assert proc.returncode == 0 and "kipvs-sync - " in proc.stdout and "EXIT STATUS" in proc.stdout, proc.stderr
