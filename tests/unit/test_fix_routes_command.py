import json

import pytest
from kipvs.commands.fix_routes import fix_routes
from kipvs.errors import ConfigError
from tests.unit.fakes import RecordingRunner, fixture_outputs, invoke

BEFORE = fixture_outputs("node-before-fix")
AFTER = fixture_outputs("node-after-fix")


def test_fixes_wrong_routes_in_one_batch_and_verifies():
    runner = RecordingRunner(BEFORE, AFTER)
    report = fix_routes(runner, "kube-dummy-if", [])
    assert [b.tool for b in runner.batches] == ["ip"] and len(runner.batches[0].lines) == 5
    assert runner.batches[0].lines[-1] == "neigh flush nud incomplete"  # after the routes, in the same batch
    assert (report.checked, report.fixed, report.already_correct, report.failed) == (3, 3, 0, [])
    assert runner.reads.count("ip -j -d -batch -") == 2  # read, then verified


def test_converged_node_runs_nothing():
    runner = RecordingRunner(AFTER)
    report = fix_routes(runner, "kube-dummy-if", [])
    assert runner.batches == [] and report.commands == [] and report.already_correct == 3
    assert report.summary().endswith("nothing to change")


def test_routes_still_wrong_after_apply_are_reported():
    runner = RecordingRunner(BEFORE, BEFORE)  # the kernel ignored us
    report = fix_routes(runner, "kube-dummy-if", [])
    assert not report.ok and report.failed == ["10.254.0.1", "10.254.0.10", "fd00:254::10"]
    assert "3 still wrong" in report.summary()


def test_dry_run_prints_exact_commands():
    runner = RecordingRunner(BEFORE, dry_run=True)
    report = fix_routes(runner, "kube-dummy-if", [])
    assert runner.batches == []
    assert runner.out.getvalue().splitlines()[0] == (
        "ip route replace local 10.254.0.1 dev kube-dummy-if proto kernel scope host src 192.168.123.249 table local")
    assert report.commands == runner.out.getvalue().splitlines()


def test_missing_interface_is_a_clear_error():
    with pytest.raises(ConfigError, match="interface kube-ipvs0 does not exist"):
        fix_routes(RecordingRunner(BEFORE), "kube-ipvs0", [])


@pytest.fixture
def cli_runner():
    states = {"runner": None}

    def make_runner(dry_run, timeout, out=None):
        states["runner"] = RecordingRunner(*states["kernel"], dry_run=dry_run, out=out)
        return states["runner"]

    states["invoke"] = lambda args, **kw: invoke(args, make_runner, **kw)
    return states


def test_cli_json_summary_and_exit_status(cli_runner):
    cli_runner["kernel"] = [BEFORE, AFTER]
    result = cli_runner["invoke"](["fix-routes", "--output", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["fixed"] == 3 and data["ok"] is True and data["node_ips"] == {"ipv4": "192.168.123.249",
                                                                            "ipv6": "fd00:123::249"}


def test_cli_exit_1_when_routes_stay_wrong(cli_runner):
    cli_runner["kernel"] = [BEFORE, BEFORE]
    result = cli_runner["invoke"](["fix-routes"])
    assert result.exit_code == 1 and "still wrong" in result.stderr


def test_cli_error_is_one_line_and_exit_2(cli_runner):
    cli_runner["kernel"] = [BEFORE]
    result = cli_runner["invoke"](["fix-routes", "--node-ip", "10.1.1.1"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "kipvs: error: node IP 10.1.1.1 is not configured on this host: the kernel would refuse it as a route "
        "source (Invalid prefsrc address); pass --node-ip with a local address"]


def test_cli_dry_run_stdout_is_only_commands(cli_runner):
    cli_runner["kernel"] = [BEFORE]
    result = cli_runner["invoke"](["fix-routes", "--dry-run"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert len(lines) == 5 and all(line.startswith("ip route ") for line in lines[:4])
    assert lines[4] == "ip neigh flush nud incomplete"
    assert "5 command(s) planned (dry run)" in result.stderr


def test_interface_from_environment(cli_runner):
    cli_runner["kernel"] = [BEFORE]
    result = cli_runner["invoke"](["fix-routes"], env={"KIPVS_INTERFACE": "kube-ipvs0"})
    assert result.exit_code == 2 and "interface kube-ipvs0 does not exist" in result.stderr
