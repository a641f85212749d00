"""scripts/lab --flavour qemu keeps the UML flavour's contract: the command runs as root from the current
directory with our interpreter first on PATH, its output streams back and its status becomes ours; one guest
of any flavour at a time; a guest that cannot boot or overruns its time fails with 125."""
from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

from tests.lab.conftest import REPO, Clone, run

LAB = [sys.executable, str(REPO / "scripts" / "lab")]
LAB_LOCK = "/run/lock/kipvs-lab.lock"
GUEST_SCRIPT = """
import os, subprocess, sys
print('cwd', os.getcwd())
print('prefix', sys.prefix)
print('uid', os.getuid(), 'flavour', os.environ['KIPVS_LAB_FLAVOUR'])
print('release', os.uname().release)
print('ipvs', subprocess.run(['ipvsadm', '-L', '-n'], capture_output=True, text=True).stdout.splitlines()[0])
print('ipv6', os.path.isdir('/proc/sys/net/ipv6'))
print('nft', subprocess.run(['nft', 'add', 'table', 'inet', 'probe']).returncode)
print('writable', os.access('.', os.W_OK), os.listdir('/tmp'))
open(os.path.join(os.environ['KIPVS_LAB_OUT'], 'written'), 'w').write('from the guest')
sys.exit(7)
"""


def test_qemu_guest_runs_the_command_like_the_uml_one_after_waiting_for_the_lab_lock(tmp_path: Path):
    out = tmp_path / "out"
    with open(LAB_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another guest (of any flavour) is running
        proc = subprocess.Popen([*LAB, "--out", str(out), "--", sys.executable, "-c", GUEST_SCRIPT], cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "KIPVS_LAB_FLAVOUR": "qemu"})
        assert "another guest is running" in proc.stderr.readline()
        assert proc.poll() is None  # it waits rather than boot beside the other guest
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 7, stdout[-2000:] + stderr[-2000:]  # the command's status, not the guest's
    lines = stdout.splitlines()
    assert f"cwd {REPO}" in lines and f"prefix {sys.prefix}" in lines
    assert "uid 0 flavour qemu" in lines
    cache = Path(os.environ.get("KIPVS_QEMU_CACHE", "/var/cache/kipvs-qemu"))
    release = (cache / "current" / "release").read_text().strip()
    assert f"release {release}" in lines  # Debian's stock kernel, its modules loaded on demand
    assert "ipvs IP Virtual Server version 1.2.1 (size=4096)" in lines
    assert "ipv6 True" in lines and "nft 0" in lines  # what the UML kernel lacks
    # The checkout is read-only; /tmp is the guest's own, empty but for a checkout under /tmp mounted there again.
    under_tmp = [REPO.relative_to("/tmp").parts[0]] if REPO.is_relative_to("/tmp") else []
    assert f"writable False {under_tmp}" in lines, lines
    assert "\r" not in stdout  # the serial console adds no carriage returns
    assert (out / "written").read_text() == "from the guest"
    assert "guest ran for" in stderr


def test_qemu_flavour_runs_from_a_clone_under_tmp(clone: Clone):
    """/tmp in the guest is a tmpfs: the checkout is mounted there again from the host, read-only."""
    script = "import kipvs, os; print('kipvs', kipvs.__file__); print('writable', os.access('.', os.W_OK))"
    proc = run([".venv/bin/python", "scripts/lab", "--flavour", "qemu", "--timeout", "600", "--",
                ".venv/bin/python", "-c", script], clone.path, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"kipvs {clone.path}/kipvs/__init__.py\n" in proc.stdout
    assert "writable False\n" in proc.stdout


def test_a_qemu_guest_that_overruns_its_time_is_killed_with_125():
    proc = run([*LAB, "--flavour", "qemu", "--timeout", "2", "--", "sleep", "60"], REPO, timeout=900)
    assert proc.returncode == 125 and "guest still running after 2s: killed" in proc.stderr, proc.stderr


def test_a_qemu_guest_that_cannot_boot_fails_with_125(tmp_path: Path):
    kernel = tmp_path / "current"
    kernel.mkdir()
    (kernel / "ready").write_text("test\n")
    (kernel / "release").write_text("0.0.0-broken\n")
    (kernel / "root" / "lib" / "modules" / "0.0.0-broken").mkdir(parents=True)
    (kernel / "root" / "lib" / "modules" / "0.0.0-broken" / "modules.dep").write_text("")
    (kernel / "vmlinux").write_bytes(b"not a kernel")
    (kernel / "initramfs").write_bytes(b"")
    proc = run([*LAB, "--flavour", "qemu", "--", "true"], REPO, timeout=900, env={"KIPVS_QEMU_CACHE": str(tmp_path)})
    assert proc.returncode == 125 and "without reporting a status" in proc.stderr, proc.stderr
    missing = run([*LAB, "--flavour", "qemu", "--", "true"], REPO, timeout=900,
                  env={"KIPVS_QEMU_CACHE": str(tmp_path / "none")})
    assert missing.returncode == 125 and "run scripts/setup" in missing.stderr, missing.stderr
