import os
import time

import pytest
from typer.testing import CliRunner

from kipvs import cli
from kipvs.lock import Busy, node_lock
from tests.unit.fakes import RecordingRunner, fixture_outputs


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
    monkeypatch.setattr(cli, "make_runner", lambda dry_run, timeout: RecordingRunner(
        fixture_outputs("node-after-fix"), dry_run=dry_run))
    with node_lock(path, 1):
        busy = CliRunner().invoke(cli.app, ["fix-routes", "--lock-file", path, "--lock-timeout", "0.2"])
        assert busy.exit_code == 2 and "another kipvs" in busy.stderr
        dry = CliRunner().invoke(cli.app, ["fix-routes", "--lock-file", path, "--dry-run"])
        assert dry.exit_code == 0
