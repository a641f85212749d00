"""Host-side tests that drive scripts/ as a newcomer would: from a fresh clone under /tmp, booting the lab."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent


def run(argv: list[str], cwd: Path, timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def system_pip_lists() -> dict[str, str]:
    """`pip list` of every system interpreter a newcomer may have: the python3 on PATH and Debian's."""
    lists = {}
    for python in sorted({shutil.which("python3", path=os.environ["PATH"].replace(str(REPO / ".venv/bin"), "")),
                          "/usr/bin/python3"} - {None}):
        proc = subprocess.run([python, "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
                              capture_output=True, text=True, timeout=120)
        lists[python] = proc.stdout if proc.returncode == 0 else f"no pip ({proc.returncode})"
    return lists


def path_without_go(path: str) -> str:
    """PATH without any directory holding a `go` (a fresh Debian machine has none): setup and the demo
    must not need it; only the kube tests build kube-apiserver and etcd."""
    kept = [d for d in path.split(os.pathsep) if d and not os.access(os.path.join(d, "go"), os.X_OK)]
    return os.pathsep.join(kept)


@dataclass
class Clone:
    path: Path
    pip_before: dict[str, str]
    first_setup: subprocess.CompletedProcess


@pytest.fixture(scope="session")
def clone() -> Clone:
    """The repository cloned into a new directory under /tmp (with this checkout's uncommitted edits on top),
    then set up there by its own scripts/setup: a newcomer's first step."""
    path = Path(tempfile.mkdtemp(prefix="kipvs-clone.", dir="/tmp"))
    try:
        subprocess.run(["git", "clone", "-q", str(REPO), str(path)], check=True, timeout=120)
        tracked = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, check=True,
                                 capture_output=True, text=True).stdout.splitlines()
        for name in tracked:
            if (REPO / name).is_file():
                (path / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / name, path / name)
        pip_before = system_pip_lists()
        # PYTHON: the interpreter the venv is built from; the one running the tests is the project's venv.
        env = {"PATH": path_without_go(os.environ["PATH"].replace(str(REPO / ".venv/bin") + ":", "")),
               "PYTHON": "python3"}
        first = run(["scripts/setup"], path, timeout=1200, env=env)  # a newcomer's machine need not have Go
        assert first.returncode == 0, first.stderr[-3000:]
        yield Clone(path, pip_before, first)
    finally:
        shutil.rmtree(path, ignore_errors=True)
