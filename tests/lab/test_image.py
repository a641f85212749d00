"""The DaemonSet's image, built here from Debian packages only (scripts/build-oci: mmdebstrap, kipvs's wheel,
umoci), unpacked as a runtime would, and kipvs run from its rootfs. No registry or container engine is used.
The base rootfs is cached in /var/cache/kipvs-image: about 5 minutes cold, about a minute after."""
import json
import shutil
import subprocess

import pytest

from kipvs import __version__
from tests.lab.conftest import REPO, run

TOOLS = ("mmdebstrap", "umoci", "chroot")
MISSING = [tool for tool in TOOLS if not shutil.which(tool)]


@pytest.mark.skipif(bool(MISSING), reason=f"{', '.join(MISSING)} not installed (scripts/setup installs them)")
def test_image_built_from_debian_packages_runs_kipvs(tmp_path):
    layout = tmp_path / "kipvs-oci"
    built = run(["scripts/build-oci", str(layout)], REPO, timeout=1800)
    assert built.returncode == 0, built.stderr[-3000:]
    index = json.loads((layout / "index.json").read_text())
    assert [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]] == [__version__]
    bundle = tmp_path / "bundle"
    unpacked = run(["umoci", "unpack", "--image", f"{layout}:{__version__}", str(bundle)], REPO, timeout=600)
    assert unpacked.returncode == 0, unpacked.stderr
    process = json.loads((bundle / "config.json").read_text())["process"]
    assert process["args"] == ["kipvs", "watch"]  # the DaemonSet's `args: [watch]` replace the command
    env = dict(item.split("=", 1) for item in process["env"])
    rootfs = bundle / "rootfs"
    version = subprocess.run(["chroot", str(rootfs), "kipvs", "--version"], capture_output=True, text=True,
                             timeout=120, env={"PATH": env["PATH"]})
    assert version.returncode == 0 and version.stdout == f"kipvs {__version__}\n", version.stderr
    # The node tools kipvs drives are Debian's, exactly scripts/setup's runtime packages.
    runtime = run(["scripts/setup", "--print-runtime-packages"], REPO, timeout=30).stdout.split()
    installed = subprocess.run(["chroot", str(rootfs), "dpkg-query", "-W", "-f", "${Package}\n", *runtime],
                               capture_output=True, text=True, timeout=60)
    assert installed.returncode == 0 and sorted(installed.stdout.split()) == sorted(runtime), installed.stderr
    help_text = subprocess.run(["chroot", str(rootfs), "kipvs", "watch", "--help"], capture_output=True, text=True,
                               timeout=120, env={"PATH": env["PATH"]})
    assert "--config" in help_text.stdout  # the whole CLI, from the wheel
