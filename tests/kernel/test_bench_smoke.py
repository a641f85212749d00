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


def test_data_path_benchmark_runs_and_kipvs_rules_on_the_path_do_not_grow():
    proc = subprocess.run([PYTHON, "benchmarks/bench_datapath.py", "--sizes", "3,9", "--count", "3"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    path = {}
    for line in proc.stdout.splitlines()[2:]:
        words = line.split()
        arrow = words.index("->")
        path[line[:20].split()[0], "VIP" in line[:20]] = (int(words[arrow - 1]), int(words[arrow + 1]))
    # Rules on the path at the small -> large size (times are printed, never asserted): kipvs's do not grow.
    assert path["kipvs", False] == path["kipvs", True] == (6, 6), proc.stdout
    assert path["none", False] == (0, 0) and path["old", True] == (10, 28), proc.stdout
