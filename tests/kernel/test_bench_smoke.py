"""The lab benchmark still runs on a real kernel (small N, seconds); its own assertions check that a
no-op resync writes nothing and one added endpoint is exactly one IPVS write. Times are not asserted."""
import subprocess

from tests.kernel.lab import PYTHON, REPO


def test_lab_benchmark_runs_and_prints_its_table():
    proc = subprocess.run([PYTHON, "benchmarks/bench_lab.py", "--services", "12", "--endpoints", "2",
                           "--naive-sample", "10", "--rounds", "1"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    for row in ("floor: raw ipvsadm -R", "kipvs full sync from empty", "kipvs no-op resync (0 writes)",
                "kipvs one endpoint added (1 IPVS write)", "naive: one process per rule",
                "netfilter: raw iptables-restore (its floor)", "netfilter: kipvs (detect+plan+apply+verify)"):
        assert row in text, text

