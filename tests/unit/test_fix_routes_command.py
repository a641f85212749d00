import json

import pytest
from kipvs.commands.fix_routes import fix_routes
from kipvs.errors import ConfigError
from tests.unit.fakes import RecordingRunner, fixture_outputs, invoke
from tests.unit.netsim import FakeNode, SimRunner

BEFORE = fixture_outputs("node-before-fix")
AFTER = fixture_outputs("node-after-fix")


def test_adds_first_then_removes_what_the_read_back_shows_replaced():
    node = FakeNode()
    runner = SimRunner(node)
    report = fix_routes(runner, "kube-dummy-if", [])
    adds, removes, flush = [b.lines for b in runner.batches]
    assert flush == ("neigh flush nud incomplete",) and node.neighbour_flushes == 1  # last: see routes.py
    assert all(" append " in line or " replace " in line for line in adds) and len(adds) == 3
    assert removes == (
        "route del local 10.254.0.1 dev kube-dummy-if table local proto kernel src 10.254.0.1 metric 0",
        "route del local 10.254.0.10 dev kube-dummy-if table local proto kernel src 10.254.0.10 metric 0",
        "route del local fd00:254::10 dev kube-dummy-if table local proto kernel metric 0")
    assert (report.checked, report.fixed, report.already_correct, report.failed) == (3, 3, 0, [])
    assert node.routes_for("10.254.0.10") == [("kube-dummy-if", "192.168.123.249", 0)]
    assert node.routes_for("fd00:254::10") == [("kube-dummy-if", "fd00:123::249", 1024)]
    assert runner.reads.count("ip -j -d -batch -") == 3 and node.errors == []


def test_converged_node_runs_nothing():
    node = FakeNode()
    fix_routes(SimRunner(node), "kube-dummy-if", [])
    runner = SimRunner(node)
    report = fix_routes(runner, "kube-dummy-if", [])
    assert runner.batches == [] and report.commands == [] and report.already_correct == 3
    assert report.summary().endswith("nothing to change")


def test_a_failed_add_removes_nothing():
    node = FakeNode()
    node.run_line = lambda line: node.errors.append(line)  # the kernel refuses every change
    before = list(node.routes)
    report = fix_routes(SimRunner(node), "kube-dummy-if", [])
    assert node.routes == before and not report.ok
    assert report.failed == ["10.254.0.1", "10.254.0.10", "fd00:254::10"] and "3 still wrong" in report.summary()
    assert not any("route del" in line for line in report.commands)


def test_dry_run_prints_the_adds_and_the_removals_that_would_follow():
    runner = SimRunner(FakeNode(), dry_run=True)
    report = fix_routes(runner, "kube-dummy-if", [])
    assert runner.batches == []
    lines = runner.out.getvalue().splitlines()
    assert lines[0] == (
        "ip route append local 10.254.0.1 dev kube-dummy-if proto kernel scope host src 192.168.123.249 table local")
    assert lines[-2] == "ip route del local fd00:254::10 dev kube-dummy-if table local proto kernel metric 0"
    assert lines[-1] == "ip neigh flush nud incomplete"
    assert report.commands == lines and len(lines) == 7
    assert [c["address"] for c in report.changes] == ["10.254.0.1", "10.254.0.10", "fd00:254::10"]
    assert report.changes[2]["lines"] == [line[3:] for line in lines if "fd00:254::10" in line]


def test_missing_interface_is_a_clear_error():
    with pytest.raises(ConfigError, match="interface kube-ipvs0 does not exist"):
        fix_routes(RecordingRunner(BEFORE), "kube-ipvs0", [])


@pytest.fixture
def cli():
    """The CLI in-process against a simulated node: cli.node is that node, cli(args) runs kipvs."""
    class Cli:
        node = FakeNode()
        runner = None

        def __call__(self, args, **kwargs):
            def make_runner(dry_run, timeout, out=None):
                self.runner = SimRunner(self.node, dry_run=dry_run, out=out)
                return self.runner
            return invoke(args, make_runner, **kwargs)
    return Cli()


def test_cli_json_summary_and_exit_status(cli):
    result = cli(["fix-routes", "--output", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["fixed"] == 3 and data["ok"] is True and data["node_ips"] == {"ipv4": "192.168.123.249",
                                                                            "ipv6": "fd00:123::249"}


def test_cli_exit_1_when_routes_stay_wrong(cli):
    cli.node.run_line = lambda line: None  # the kernel ignores us
    result = cli(["fix-routes"])
    assert result.exit_code == 1 and "still wrong" in result.stderr


def test_cli_error_is_one_line_and_exit_2(cli):
    result = cli(["fix-routes", "--node-ip", "10.1.1.1"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "kipvs: error: node IP 10.1.1.1 is not configured on this host: the kernel would refuse it as a route "
        "source (Invalid prefsrc address); pass --node-ip with a local address"]


def test_cli_dry_run_stdout_is_only_commands(cli):
    before = list(cli.node.routes)
    result = cli(["fix-routes", "--dry-run"])
    assert result.exit_code == 0 and cli.node.routes == before
    lines = result.stdout.splitlines()
    assert len(lines) == 7 and all(line.startswith("ip route ") for line in lines[:-1])
    assert lines[-1] == "ip neigh flush nud incomplete"
    assert "7 command(s) planned (dry run)" in result.stderr


def test_cli_dry_run_json_is_one_document_saying_what_would_change(cli):
    result = cli(["fix-routes", "--dry-run", "--output", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # one document, nothing else on stdout
    assert data["dry_run"] is True and len(data["commands"]) == 7
    assert {c["address"]: c["change"] for c in data["changes"]} == {
        "10.254.0.1": "repair", "10.254.0.10": "repair", "fd00:254::10": "repair"}


def test_cli_quiet_prints_nothing_on_success(cli):
    result = cli(["-q", "fix-routes"])
    assert result.exit_code == 0 and result.stdout == "" and result.stderr == ""
    assert cli(["fix-routes"]).stderr.strip().endswith("nothing to change")


def test_interface_from_environment(cli):
    result = cli(["fix-routes"], env={"KIPVS_INTERFACE": "kube-ipvs0"})
    assert result.exit_code == 2 and "interface kube-ipvs0 does not exist" in result.stderr
