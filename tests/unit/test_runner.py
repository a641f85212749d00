import io

import pytest

from kipvs.errors import CommandFailed, NoIPVS, PermissionDenied, ToolMissing
from kipvs.runner import Batch, DryRunRunner, Runner, classify_failure


def test_missing_tool_names_the_package():
    with pytest.raises(ToolMissing, match="`kipvs-no-such-tool` not found on PATH"):
        Runner().run(["kipvs-no-such-tool", "-j"])


def test_failures_are_classified_for_the_operator():
    assert isinstance(classify_failure(["ip", "route"], 2, "RTNETLINK answers: Operation not permitted"),
                      PermissionDenied)
    no_ipvs = classify_failure(["ipvsadm", "-S", "-n"], 2, "Can't initialize ipvs: Protocol not available\n")
    assert isinstance(no_ipvs, NoIPVS) and "modprobe ip_vs" in str(no_ipvs)
    failed = classify_failure(["ip", "-batch", "-"], 1, "Error: Invalid prefsrc address.\nCommand failed -:1\n")
    assert isinstance(failed, CommandFailed) and str(failed).endswith("Command failed -:1")


def test_a_command_that_fails_raises_with_its_stderr(tmp_path):
    # `false`-like tool from coreutils: no ip/ipvsadm is executed in unit tests.
    with pytest.raises(CommandFailed, match="exit status 1"):
        Runner().run(["false"])


def test_timeout_is_reported():
    with pytest.raises(CommandFailed, match="timed out after"):
        Runner(timeout=0.2).run(["sleep", "5"])


def test_batch_lines_read_as_whole_commands():
    assert Batch("ipvsadm", ("-A -t 10.0.0.1:80 -s rr",)).command_lines() == ["ipvsadm -A -t 10.0.0.1:80 -s rr"]


def test_dry_run_prints_and_runs_nothing():
    out = io.StringIO()
    assert DryRunRunner(out=out).apply([Batch("ip", ("route replace local 10.0.0.1 dev d table local",))]) == []
    assert out.getvalue() == "ip route replace local 10.0.0.1 dev d table local\n"


def test_dry_run_prints_restore_input_as_a_here_document():
    out = io.StringIO()
    DryRunRunner(out=out).apply([Batch("ip", ("route replace local 10.0.0.1 dev d table local",)),
                                 Batch("iptables-legacy-restore", ("*nat", ":KIPVS-POSTROUTING - [0:0]", "COMMIT"))])
    assert out.getvalue().splitlines() == [
        "ip route replace local 10.0.0.1 dev d table local",
        "iptables-legacy-restore -w --noflush <<'EOF'", "*nat", ":KIPVS-POSTROUTING - [0:0]", "COMMIT", "EOF"]


def test_batch_feeds_stdin_and_reports_failed_lines(caplog):
    # `cat` stands in for a batch tool here so the seam's plumbing is tested without ip/ipvsadm.
    runner = Runner()
    result = runner._exec(["cat"], "a\nb\n")
    assert result.stdout == "a\nb\n" and result.returncode == 0


def test_sysctl_batches_are_written_to_proc_without_a_process(tmp_path, caplog):
    (tmp_path / "net" / "ipv4" / "vs").mkdir(parents=True)
    runner = Runner()
    runner.proc_sys = str(tmp_path)
    [result] = runner.apply([Batch("sysctl", ("net.ipv4.vs.conntrack=1", "net.ipv4.vs.absent/x=1"))])
    assert (tmp_path / "net" / "ipv4" / "vs" / "conntrack").read_text() == "1\n"
    assert result.returncode == 1 and "cannot set net.ipv4.vs.absent/x" in caplog.text


def test_a_sysctl_write_refused_for_permission_raises_like_the_tools(tmp_path, monkeypatch):
    # Tests run as root here, which writes any file: the refusal a non-root user gets is simulated.
    def refused(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", path)

    runner = Runner()
    runner.proc_sys = str(tmp_path)
    monkeypatch.setattr("builtins.open", refused)
    with pytest.raises(PermissionDenied, match="permission denied: run as root"):
        runner.apply([Batch("sysctl", ("net.ipv4.vs.conntrack=1",))])
