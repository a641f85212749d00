"""The command helper: kipvs forks once while small, and every command is started from the helper.

Harmless coreutils stand in for ip/ipvsadm here (unit tests never run those)."""
import fcntl
import os
import signal
import threading
import time

import pytest

from kipvs.environment import make_runner
from kipvs.errors import CommandFailed
from kipvs.runner import DryRunRunner, Runner
from tests.unit.fakes import RecordingRunner, invoke
from tests.unit.kernel_states import node_state

PARENT_PID = ["sh", "-c", "echo $PPID"]


@pytest.fixture
def runner():
    runner = Runner(timeout=10)
    runner.start_helper()
    yield runner
    runner.close()


def forbid_fork(monkeypatch):
    def no_fork():
        raise AssertionError("kipvs forked itself")
    monkeypatch.setattr(os, "fork", no_fork)


def test_commands_start_from_the_helper_and_kipvs_never_forks_again(runner, monkeypatch):
    forbid_fork(monkeypatch)
    for _ in range(3):
        assert int(runner.run(PARENT_PID)) == runner.helper.pid != os.getpid()


def test_a_batch_and_a_large_output_go_through_the_helper_whole(runner):
    batch = "".join(f"-a -t 10.96.{i >> 8 & 255}.{i & 255}:80 -r 10.1.0.{i % 250}:8080 -m -w 1\n"
                    for i in range(60000))  # ~3 MB each way, as a 50,000-Service dump is
    result = runner._exec(["cat"], batch)
    assert result.returncode == 0 and result.stdout == batch
    failed = runner._exec(["sh", "-c", "echo out; echo err >&2; exit 3"], None)
    assert (failed.returncode, failed.stdout, failed.stderr) == (3, "out\n", "err\n")


def test_a_command_killed_at_its_timeout_leaves_the_helper_serving():
    runner = Runner(timeout=0.3)
    runner.start_helper()
    started = time.monotonic()
    with pytest.raises(CommandFailed, match="timed out after 0.3s"):
        runner.run(["sleep", "5"])
    assert time.monotonic() - started < 3
    assert int(runner.run(PARENT_PID)) == runner.helper.pid
    runner.close()


def test_while_the_helper_is_busy_another_thread_starts_its_command_itself(runner):
    with runner.helper._busy:  # a sync's command in flight
        assert int(runner.run(PARENT_PID)) == os.getpid()
    assert int(runner.run(PARENT_PID)) == runner.helper.pid


def test_concurrent_commands_all_finish_with_their_own_output(runner):
    results = {}

    def one(i):
        results[i] = runner.run(["sh", "-c", f"sleep 0.0{i % 3}; echo {i}"])
    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == {i: f"{i}\n" for i in range(8)}


def test_a_helper_that_died_idle_is_replaced_by_starting_commands_from_kipvs(runner):
    pid = runner.helper.pid
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert int(runner.run(PARENT_PID)) == os.getpid()
    assert runner.run(["echo", "still works"]) == "still works\n"


def test_a_helper_lost_in_the_middle_of_a_command_fails_that_command_only(runner, caplog):
    pid = runner.helper.pid
    threading.Timer(0.3, os.kill, (pid, signal.SIGKILL)).start()
    with pytest.raises(CommandFailed, match=f"command helper \\(pid {pid}\\) was lost while running it"):
        runner.run(["sleep", "5"])
    assert "starts its commands itself from now on" in caplog.text
    assert int(runner.run(PARENT_PID)) == os.getpid()


def test_stop_signals_are_for_kipvs_not_for_the_helper(runner):
    runner.run(["true"])
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        os.kill(runner.helper.pid, signum)
    time.sleep(0.2)
    assert int(runner.run(PARENT_PID)) == runner.helper.pid


def test_commands_started_by_the_helper_still_die_of_sigterm(runner):
    # The helper's handlers must not leave SIGTERM ignored in what it execs.
    result = runner._exec(["sh", "-c", "kill -TERM $$; sleep 5"], None)
    assert result.returncode == -signal.SIGTERM


def test_the_helper_holds_none_of_kipvss_files_such_as_the_node_lock(tmp_path):
    lock = os.open(tmp_path / "lock", os.O_CREAT | os.O_RDWR)
    fcntl.flock(lock, fcntl.LOCK_EX)
    runner = Runner()
    runner.start_helper()  # forked while the lock is held, as cleanup does
    runner.run(["true"])
    fds = {int(fd): os.readlink(f"/proc/{runner.helper.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{runner.helper.pid}/fd")}
    extra = [target for fd, target in fds.items() if fd > 2]
    assert len(extra) == 1 and extra[0].startswith("socket:"), fds  # its end of the line to kipvs, nothing else
    assert fds[0] == fds[1] == "/dev/null", fds
    os.close(lock)  # released for good: no copy of it lives on in the helper
    other = os.open(tmp_path / "lock", os.O_RDWR)
    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(other)
    runner.close()


def test_closing_the_runner_ends_and_reaps_the_helper(runner):
    pid = runner.helper.pid
    runner.close()
    assert not os.path.exists(f"/proc/{pid}")
    assert int(runner.run(PARENT_PID)) == os.getpid()  # a closed runner still works, forking itself


def test_the_cli_runners_start_their_helper_at_once():
    for dry_run in (False, True):
        runner = make_runner(dry_run, 5.0)
        assert isinstance(runner, DryRunRunner) == dry_run and runner.helper is not None
        assert int(runner.run(PARENT_PID)) == runner.helper.pid
        runner.close()


@pytest.mark.parametrize("command", [["sync", "-f", "examples/cluster.yaml"], ["show", "-f", "examples/cluster.yaml"]])
def test_sync_and_show_create_their_runner_before_loading_the_cluster(command, monkeypatch):
    import kipvs.commands.show
    import kipvs.commands.sync

    order = []
    for module in (kipvs.commands.sync, kipvs.commands.show):
        loader = module.load_cluster
        monkeypatch.setattr(module, "load_cluster", lambda source, loader=loader: (order.append("load"),
                                                                                   loader(source))[1])

    def factory(dry_run, timeout, out=None):
        order.append("runner")
        return RecordingRunner(node_state())
    invoke([*command, "--node-name", "node3"], factory)
    assert order == ["runner", "load"]
