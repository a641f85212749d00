import os
import time

import pytest

from kipvs.lock import Busy, node_lock
from tests.unit.fakes import RecordingRunner, fixture_outputs, invoke


def test_second_writer_waits_then_gives_up_with_a_clear_message(tmp_path):
    path = str(tmp_path / "lock")
    with node_lock(path, 1):
        started = time.monotonic()
        with pytest.raises(Busy, match=rf"another kipvs \(pid {os.getpid()}\) is changing this node; gave up after 0.3s"):
            with node_lock(path, 0.3):
                pass
        assert time.monotonic() - started >= 0.3
    with node_lock(path, 0):  # released
        pass


def test_cli_writer_refuses_while_locked_but_dry_run_does_not_need_the_lock(tmp_path, monkeypatch):
    path = str(tmp_path / "lock")
    def factory(dry_run, timeout, out=None):
        return RecordingRunner(fixture_outputs("node-after-fix"), dry_run=dry_run, out=out)

    with node_lock(path, 1):
        busy = invoke(["fix-routes", "--lock-file", path, "--lock-timeout", "0.2"], factory)
        assert busy.exit_code == 2 and "another kipvs" in busy.stderr
        dry = invoke(["fix-routes", "--lock-file", path, "--dry-run"], factory)
        assert dry.exit_code == 0
