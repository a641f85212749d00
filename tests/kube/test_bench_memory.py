"""benchmarks/bench_memory.py still runs (its smoke size, seconds): its own kube-apiserver + etcd, a
`kipvs watch` child on the simulated kernel. Memory is printed, never asserted (it depends on the
machine); what is checked is that the watch converged and that both processes were measured."""
import os
import subprocess
import sys

import pytest

from tests.kube.conftest import EXTERNAL


@pytest.mark.skipif(bool(EXTERNAL), reason="starts its own kube-apiserver + etcd")
def test_memory_benchmark_runs_and_measures_kipvs_and_its_helper():
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KIPVS_CONFIG")}
    proc = subprocess.run([sys.executable, "benchmarks/bench_memory.py", "--services", "30", "--endpoints", "3",
                           "--timeout", "120"], capture_output=True, text=True, timeout=400, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert any(line.startswith("kipvs ") for line in lines), proc.stdout
    assert any(line.startswith("helper ") for line in lines), proc.stdout  # the spawn helper was forked
    assert "(31 virtual servers)" in proc.stdout, proc.stdout  # 30 Services and the API's own
