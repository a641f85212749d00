import os

import pytest

from tests.kernel.lab import Cluster

if os.environ.get("KIPVS_LAB_GUEST") != "1":
    # Loud, not a skip: these tests create namespaces and IPVS rules, which must
    # never happen on the host. Run them with: scripts/lab -- python -m pytest tests/kernel
    raise pytest.UsageError("tests/kernel runs only inside the lab guest: scripts/lab -- python -m pytest tests/kernel")


@pytest.fixture(autouse=True)
def own_effective_config(tmp_path, monkeypatch):
    """Each test's kipvs watch writes, and its kipvs commands read, watch's settings in the test's own
    directory, not the guest's shared /run/kipvs: one test's watch must not configure the next test's sync."""
    monkeypatch.setenv("KIPVS_EFFECTIVE_CONFIG", str(tmp_path / "effective-config.yaml"))


@pytest.fixture
def cluster():
    lab = Cluster()
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture
def lab(cluster):
    """Three nodes with a web pod each and an API server process on node1 (examples/cluster.yaml)."""
    for name in ("node1", "node2", "node3"):
        node = cluster.add_node(name)
        cluster.add_pod(node, f"{name[-1]}-web")
    cluster.serve("node1", "apiserver", 6443)
    return cluster
