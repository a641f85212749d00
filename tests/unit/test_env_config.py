"""Every option can come from the environment, as on a node run by systemd or a DaemonSet."""
import typer.main
from typer.testing import CliRunner

from kipvs import cli
from kipvs.cli import app
from kipvs.config import parse_duration

# --check is what show is asked, not a setting (so are show's filters and --watch, and doctor's addresses);
# the mode flags and the hidden old spelling of --strict-external-ip-validation=false only exist for copied
# argument lists.
NOT_CONFIG = {"help", "version", "install_completion", "show_completion", "check", "no_strict", "run_service_proxy",
              "run_router", "run_firewall", "proxy_mode", "service", "namespace", "vip", "watch", "interval",
              "kernel_only", "targets"}


def test_every_option_has_an_environment_variable():
    root = typer.main.get_command(app)
    commands = [root, *root.commands.values()]
    missing = [f"{c.name}: {p.name}" for c in commands for p in c.params
               if p.name not in NOT_CONFIG and not p.envvar]
    assert missing == []


def test_kube_router_flag_names_where_they_mean_the_same():
    root = typer.main.get_command(app)
    watch_opts = {o for p in root.commands["watch"].params for o in p.opts}
    assert {"--service-node-port-range", "--excluded-cidrs", "--ipvs-sync-period", "--nodeport-bindon-all-ip",
            "--service-external-ip-range", "--loadbalancer-ip-range", "--strict-external-ip-validation"} <= watch_opts


def test_environment_configures_sync(monkeypatch):
    seen = {}

    def fake_sync(runner, snapshot, node, options, progress=None):
        seen.update(node=node, options=options, dry_run=runner.dry_run)
        raise SystemExit(0)

    monkeypatch.setattr("kipvs.commands.sync.start_sync", fake_sync)
    env = {"KIPVS_CLUSTER_FILE": "examples/cluster.yaml", "NODE_NAME": "node3", "KIPVS_NODE_IP": "192.168.123.249",
           "KIPVS_SCHEDULER": "wlc", "KIPVS_SERVICE_NODE_PORT_RANGE": "31000-31999", "KIPVS_DRY_RUN": "1",
           "KIPVS_EXCLUDED_CIDRS": "10.0.0.0/8 192.168.0.0/16", "KIPVS_INTERFACE": "kube-ipvs0"}
    CliRunner().invoke(cli.app, ["sync"], env=env)
    options = seen["options"]
    assert seen["node"].name == "node3" and seen["node"].explicit_ips == ("192.168.123.249",)
    assert options.scheduler == "wlc" and options.node_port_range == (31000, 31999) and seen["dry_run"]
    assert options.interface == "kube-ipvs0" and len(options.excluded_cidrs) == 2


def test_durations_read_like_kube_routers():
    assert parse_duration("5m", "--sync-period") == 300
    assert parse_duration("1m30s", "--sync-period") == 90
    assert parse_duration("250ms", "--min-sync-period") == 0.25
    assert parse_duration("42", "--sync-period") == 42
