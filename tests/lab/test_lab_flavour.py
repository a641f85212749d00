"""scripts/lab without --flavour boots UML where Debian's UML kernel runs, and QEMU where it cannot (a CPU whose
FPU state is larger than that kernel knows: AMX). The probe boots UML once; its answer is kept per CPU, host
kernel and package version, and a kept answer for another machine is not trusted."""
from __future__ import annotations

import sys
from pathlib import Path

from tests.lab.conftest import REPO, run

LAB = [sys.executable, str(REPO / "scripts" / "lab")]


def which(record: Path, **env: str) -> tuple[str, str]:
    proc = run([*LAB, "--which"], REPO, timeout=600, env={"KIPVS_UML_PROBE": str(record), "KIPVS_LAB_FLAVOUR": "",
                                                          **env})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip(), proc.stderr


def test_the_default_flavour_follows_the_kept_probe(tmp_path: Path):
    record = tmp_path / "probe"
    probed, _ = which(record)  # boots UML once: this machine's real answer
    assert probed in ("uml", "qemu")
    key, answer = record.read_text().splitlines()
    assert answer == {"uml": "runs", "qemu": "refused"}[probed]
    assert key.count(" ") >= 2  # package version, CPU flags' digest, host kernel release

    record.write_text(f"{key}\nrefused\n")
    flavour, notice = which(record)
    assert flavour == "qemu"
    assert "UML kernel cannot run on this CPU" in notice and "using the QEMU flavour" in notice

    record.write_text(f"{key}\nruns\n")
    assert which(record) == ("uml", "")

    # Kept for another CPU (or kernel, or package): probed again, and the real answer kept.
    record.write_text(f"0 0 0\n{'runs' if probed == 'qemu' else 'refused'}\n")
    assert which(record)[0] == probed
    assert record.read_text().splitlines() == [key, answer]

    # An explicit flavour needs no probe.
    record.unlink()
    assert which(record, KIPVS_LAB_FLAVOUR="uml") == ("uml", "")
    assert not record.exists()
