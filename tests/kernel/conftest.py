import os

import pytest

from tests.kernel.lab import Cluster

if os.environ.get("KIPVS_LAB_GUEST") != "1":
    # Loud, not a skip: these tests create namespaces and IPVS rules, which must
    # never happen on the host. Run them with: scripts/lab -- python -m pytest tests/kernel
    raise pytest.UsageError("tests/kernel runs only inside the lab guest: scripts/lab -- python -m pytest tests/kernel")


@pytest.fixture
def cluster():
    lab = Cluster()
    try:
        yield lab
    finally:
        lab.close()
