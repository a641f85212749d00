import pytest


@pytest.fixture(autouse=True)
def lock_in_tmp(tmp_path, monkeypatch):
    """The node lock lives in /run on a node; tests keep theirs private."""
    monkeypatch.setenv("KIPVS_LOCK_FILE", str(tmp_path / "kipvs.lock"))


@pytest.fixture(autouse=True)
def config_in_tmp(tmp_path, monkeypatch):
    """No test reads this host's /etc/kipvs/config.yaml or a watch's /run/kipvs/effective-config.yaml,
    nor writes one: both point into the test's own directory (absent until a test writes them)."""
    monkeypatch.setattr("kipvs.config_file.DEFAULT_CONFIG", str(tmp_path / "etc-kipvs-config.yaml"))
    monkeypatch.setenv("KIPVS_EFFECTIVE_CONFIG", str(tmp_path / "effective-config.yaml"))
    monkeypatch.delenv("KIPVS_CONFIG", raising=False)
