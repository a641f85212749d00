"""The host benchmark still runs (CI smoke: small N, seconds). Times are printed, never asserted."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent


def test_host_benchmark_runs_and_prints_its_table():
    proc = subprocess.run([sys.executable, "benchmarks/bench_host.py", "--sizes", "50,100", "--endpoints", "3",
                           "--event-sizes", "50,100", "--watch-services", "100", "--yaml-services", "100"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = proc.stdout.splitlines()
    assert rows[0].startswith("host: pure Python") and rows[4] == ""
    assert rows[2].split()[0] == "50" and rows[3].split()[0] == "100"
    text = proc.stdout
    for section in ("file mode:", "watch: one endpoint added", "watch: informer caches", "YAML vs JSON dump"):
        assert section in text, text
    # Each event recomputed exactly one Service (the bench asserts the single IPVS write itself).
    events = text.split("watch: one endpoint added")[1].splitlines()[2:4]
    assert [row.split()[-1] for row in events] == ["1", "1"], events


def test_shapes_benchmark_runs_every_generator_and_every_shape_takes_the_fast_loop():
    """File mode per endpoint shape (CI smoke: small N, one round); its goal lines are printed."""
    proc = subprocess.run([sys.executable, "benchmarks/bench_shapes.py", "--services", "60", "--endpoints", "4",
                           "--rounds", "1"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = proc.stdout.splitlines()
    shapes = [row.split()[0] for row in rows[2:7]]
    assert shapes == ["synthetic", "bare", "controller", "hints", "dual-stack"], proc.stdout
    # The last column: endpoints of the sample that went through the general reader, of those parsed.
    assert [row.split()[-3:] for row in rows[2:7]] == [["0", "of", "240"]] * 4 + [["0", "of", "480"]], proc.stdout
    assert rows[7].startswith("goal: every shape <= 5 s") and rows[8].startswith("goal: per-endpoint cost")
    # Every shape is read by the fast decoder (msgspec: a dependency), and the decoders are compared per shape.
    assert [row.split()[-4] for row in rows[2:7]] == ["msgspec"] * 5, proc.stdout
    assert rows[10].startswith("JSON decoders") and [row.split()[0] for row in rows[12:17]] == shapes, proc.stdout
