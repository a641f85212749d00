import pytest


@pytest.fixture(autouse=True)
def lock_in_tmp(tmp_path, monkeypatch):
    """The node lock lives in /run on a node; tests keep theirs private."""
    monkeypatch.setenv("KIPVS_LOCK_FILE", str(tmp_path / "kipvs.lock"))
