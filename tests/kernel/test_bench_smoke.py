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



def test_peer_comparison_runs_kipvs_beside_kube_proxy():
    """benchmarks/bench_peers.py's smoke in this guest: kipvs and kube-proxy (IPVS mode, built by
    scripts/test on the host) each converge the same small cluster served by a real kube-apiserver, take
    endpoint and Service changes, and the side-by-side table is printed. Times are not asserted; every
    cell being a measured figure (not "-") is."""
    def built(script, *names):
        proc = subprocess.run([str(REPO / "scripts" / script), *names], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"scripts/{script} (built on the host by scripts/test): {proc.stderr[-2000:]}"
        return [line.split() for line in proc.stdout.splitlines() if line.strip()]

    kube = built("kube-binaries")[-1][0]
    kube_proxy = dict(built("peer-binaries", "kube-proxy"))["kube-proxy"]
    proc = subprocess.run([PYTHON, "benchmarks/bench_peers.py", "--inside", "--smoke", "--proxies", "kipvs,kube-proxy",
                           "--kube-binaries", kube, "--peer", f"kube-proxy={kube_proxy}"],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    rows = {line.split("|")[0].strip(): [cell.strip() for cell in line.split("|")[1:]]
            for line in proc.stdout.splitlines() if line.count("|") == 2}
    for row in ("cold start -> every VS and RS in the kernel", "proxy CPU to converge (process tree)",
                "peak RSS (its own processes, sum of VmHWM)", "PSS at the end (its own processes)", "one endpoint added -> kernel, p50 / p90 / p99",
                "one new Service (+slice) -> kernel, p50 / p90 / p99", "idle CPU per 60 s"):
        assert row in rows and all(cell not in ("", "-") for cell in rows[row]), (row, proc.stdout)
    assert "(n=5" in rows["one endpoint added -> kernel, p50 / p90 / p99"][0], proc.stdout
    assert "kipvs / best peer (kube-proxy), peak RSS" in proc.stdout
    # the guest is left as the other kernel tests expect it: no bridge, no bind mounts
    assert subprocess.run(["ip", "link", "show", "lab-br"], capture_output=True).returncode != 0
    assert "xtables-nft-multi" not in open("/proc/self/mounts").read()
