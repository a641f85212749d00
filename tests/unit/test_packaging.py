"""The wheel and sdist carry what a node needs; the installed `kipvs` runs. Built in a temporary directory."""
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
MAN_PAGES = {f"kipvs{s}.8" for s in ("", "-sync", "-watch", "-fix-routes", "-cleanup", "-show")}


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return out


def test_sdist_has_man_pages_service_files_and_example(dist):
    (sdist,) = dist.glob("kipvs-*.tar.gz")
    names = {Path(n).name for n in tarfile.open(sdist).getnames()}
    assert MAN_PAGES <= names
    assert {"kipvs.service", "daemonset.yaml", "kipvs.cron", "cluster.yaml", "pyproject.toml"} <= names


def test_wheel_declares_python_entry_point_and_installs_data(dist):
    (wheel,) = dist.glob("kipvs-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        metadata = zf.read(next(n for n in names if n.endswith("METADATA"))).decode()
        entry_points = zf.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "Requires-Python: >=3.11" in metadata
    for dep in ("typer", "rich", "kubernetes", "sh"):
        assert f"Requires-Dist: {dep}" in metadata
    assert "kipvs = kipvs.cli:main" in entry_points
    assert {f"share/man/man8/{p}" for p in MAN_PAGES} <= {n.split(".data/data/", 1)[-1] for n in names}
    assert any(n.endswith("share/kipvs/kipvs.service") for n in names)


def test_installed_wheel_gives_a_working_kipvs(dist, tmp_path):
    (wheel,) = dist.glob("kipvs-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    subprocess.run([venv / "bin" / "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)], check=True,
                   capture_output=True)
    proc = subprocess.run([venv / "bin" / "kipvs", "--version"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("kipvs 0."), proc.stderr
    assert (venv / "share" / "man" / "man8" / "kipvs-fix-routes.8").exists()
