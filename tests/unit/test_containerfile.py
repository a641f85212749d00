"""The Containerfile builds the image the DaemonSet names, with exactly scripts/setup's runtime packages.

No container engine is needed: the file is linted here (no linter is installable from Debian), and
scripts/build-image is what builds it."""
import re
import subprocess
from pathlib import Path

import yaml

from kipvs import __version__

REPO = Path(__file__).resolve().parent.parent.parent
INSTRUCTIONS = {"FROM", "RUN", "COPY", "ARG", "ENV", "ENTRYPOINT", "CMD", "LABEL", "WORKDIR", "USER"}


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (REPO / "Containerfile").read_text())
    found = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, args = line.strip().partition(" ")
            found.append((keyword, " ".join(args.split())))
    return found


def apt_installed() -> list[str]:
    run = " && ".join(args for keyword, args in instructions() if keyword == "RUN")
    match = re.search(r"apt-get install ((?:-\S+ )*)([^&]+)", run)
    assert match, "no apt-get install in the Containerfile"
    return match.group(2).split()


def test_lint():
    found = instructions()
    keywords = [k for k, _ in found]
    assert set(keywords) <= INSTRUCTIONS, set(keywords) - INSTRUCTIONS
    assert keywords[0] == "FROM" and keywords.count("FROM") == 1
    base = found[0][1]
    assert re.fullmatch(r"debian:[a-z]+-slim", base), f"a pinned Debian slim release, not {base}"
    for keyword, args in found:
        if keyword == "RUN" and "apt-get install" in args:
            assert "apt-get update" in args, "update and install in one layer, or the install uses a stale list"
            assert "--no-install-recommends" in args and " -y " in f" {args} "
            assert "rm -rf /var/lib/apt/lists/*" in args, "the package lists stay out of the image"
        if keyword == "RUN" and "pip install" in args:
            assert "--no-cache-dir" in args
        if keyword in ("ENTRYPOINT", "CMD"):
            assert args.startswith("["), f"{keyword} in exec form, so SIGTERM reaches kipvs (graceful exit)"
    assert ("ENTRYPOINT", '["kipvs"]') in found


def test_packages_match_setup_runtime_packages():
    proc = subprocess.run(["bash", "scripts/setup", "--print-runtime-packages"], cwd=REPO, capture_output=True,
                          text=True, timeout=30)
    runtime = proc.stdout.split()
    assert {"ipvsadm", "iproute2", "iptables", "ipset", "conntrack"} <= set(runtime)
    assert sorted(set(apt_installed()) - {"python3", "python3-venv"}) == sorted(runtime)


def test_kipvs_comes_from_the_wheel_build_image_builds():
    found = instructions()
    assert ("COPY", "dist/${KIPVS_WHEEL} /tmp/") in found
    script = (REPO / "scripts" / "build-image").read_text()
    assert 'wheel="kipvs-${version}-py3-none-any.whl"' in script and "-f Containerfile" in script
    assert '--build-arg "KIPVS_WHEEL=$wheel"' in script and '-t "${IMAGE:-kipvs:$version}"' in script


def test_image_is_the_one_the_daemonset_runs():
    docs = list(yaml.safe_load_all((REPO / "deploy" / "daemonset.yaml").read_text()))
    daemonset = next(d for d in docs if d["kind"] == "DaemonSet")
    (container,) = daemonset["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"kipvs:{__version__}"  # what scripts/build-image tags by default
    assert container["args"][0] == "watch"  # arguments to the image's kipvs entry point
