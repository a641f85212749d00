"""The wheel and sdist carry what a node needs; the installed `kipvs` runs. Built in a temporary directory."""
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
MAN_PAGES = {f"kipvs{s}.8" for s in ("", "-sync", "-watch", "-fix-routes", "-cleanup", "-show", "-config")}


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
    assert {"kipvs.service", "daemonset.yaml", "rbac.yaml", "config.yaml", "kustomization.yaml", "kipvs.cron",
            "cluster.yaml", "pyproject.toml", "kipvs", "_kipvs", "kipvs.fish"} <= names


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
    assert any(n.endswith("share/kipvs/kustomization.yaml") for n in names)
    # completion where bash-completion (also under each PATH entry's ../share), zsh and fish look
    assert {"share/bash-completion/completions/kipvs", "share/zsh/site-functions/_kipvs",
            "share/fish/vendor_completions.d/kipvs.fish"} <= {n.split(".data/data/", 1)[-1] for n in names}


def test_sdist_leaves_out_the_virtualenv(dist):
    (sdist,) = dist.glob("kipvs-*.tar.gz")
    assert not [n for n in tarfile.open(sdist).getnames() if "/.venv" in n or "/.git/" in n]


@pytest.fixture(scope="module")
def installed(dist, tmp_path_factory) -> Path:
    """The wheel installed into a fresh venv, the documented way (`pip install`); its dependencies come from
    the project's venv through PYTHONPATH (plain path entries: the editable kipvs there is not activated)."""
    (wheel,) = dist.glob("kipvs-*.whl")
    venv = tmp_path_factory.mktemp("installed") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                    "--no-deps", "--disable-pip-version-check", str(wheel)], check=True, capture_output=True,
                   timeout=300)
    return venv


def installed_env(venv: Path) -> dict[str, str]:
    return {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "LANG": "C.UTF-8", "MANWIDTH": "80",
            "PYTHONPATH": sysconfig.get_path("purelib")}


def test_installed_wheel_gives_a_working_kipvs(installed, tmp_path):
    proc = subprocess.run([installed / "bin" / "kipvs", "--version"], capture_output=True, text=True, cwd=tmp_path,
                          env=installed_env(installed), timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("kipvs 0."), proc.stderr
    proc = subprocess.run([installed / "bin" / "python", "-c", "import kipvs; print(kipvs.__file__)"],
                          capture_output=True, text=True, cwd=tmp_path, env=installed_env(installed), timeout=60)
    assert proc.stdout.startswith(str(installed)), proc.stdout + proc.stderr
    assert (installed / "share" / "man" / "man8" / "kipvs-fix-routes.8").exists()


@pytest.mark.parametrize("how", ["PATH", "MANPATH"])
def test_man_finds_the_installed_pages(installed, tmp_path, how):
    """README: with the venv's bin on PATH man finds the pages by itself (man-db derives its search path
    from PATH); with kipvs linked elsewhere, MANPATH=VENV/share/man: does it."""
    env = installed_env(installed)
    if how == "MANPATH":
        env = {**env, "PATH": "/usr/bin:/bin", "MANPATH": f"{installed / 'share' / 'man'}:"}
    where = subprocess.run(["man", "-w", "kipvs-sync"], capture_output=True, text=True, env=env, cwd=tmp_path,
                           timeout=60)
    assert where.stdout.strip() == str(installed / "share" / "man" / "man8" / "kipvs-sync.8"), where.stderr
    page = subprocess.run(["man", "kipvs-sync"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert page.returncode == 0 and "EXIT STATUS" in page.stdout and "--cluster-file" in page.stdout, page.stderr
