"""Argument lists copied from kube-proxy and kube-router work: pflag booleans, their names for kipvs's
options, and their mode flags (a note where kipvs already does it, a refusal where it does not)."""
import pytest
import typer.main

from kipvs.cli import app
from kipvs.cli_options import BOOLEAN_FLAGS, flag
from kipvs.config import metrics_address
from tests.unit.fakes import RecordingRunner, invoke
from tests.unit.kernel_states import node_state

ROOT = typer.main.get_command(app)


def commands():
    for name, command in ROOT.commands.items():
        for sub_name, sub in getattr(command, "commands", {}).items():
            yield f"{name} {sub_name}", sub
        if not getattr(command, "commands", None):
            yield name, command


BOOLEANS = [(name, command, param) for name, command in commands() for param in command.params
            if set(param.opts) & BOOLEAN_FLAGS]


def parsed(command, args: list[str], name: str):
    ctx = command.make_context(command.name, list(args), obj=None)
    return flag(ctx.params[name], name) if ctx.params[name] is not None else None


@pytest.mark.parametrize("name,command,param", BOOLEANS, ids=[f"{n} {p.opts[0]}" for n, _, p in BOOLEANS])
def test_every_boolean_takes_both_pflag_spellings(name, command, param):
    for opt in param.opts:
        assert parsed(command, [opt], param.name) is True
        assert parsed(command, [f"{opt}=true"], param.name) is True
        assert parsed(command, [f"{opt}=false"], param.name) is False
        assert parsed(command, [opt, "false"], param.name) is False  # kipvs's earlier spelling still works


def test_root_quiet_takes_both_spellings():
    assert parsed(ROOT, ["-q", "show"], "quiet") is True
    assert parsed(ROOT, ["--quiet=false", "show"], "quiet") is False
    assert parsed(ROOT, ["-q=false", "show"], "quiet") is False


def test_a_bare_flag_before_another_option_leaves_that_option_its_value():
    sync = ROOT.commands["sync"]
    ctx = sync.make_context("sync", ["--masquerade-all", "--scheduler", "wlc", "-n"])
    assert flag(ctx.params["masquerade_all"], "") and ctx.params["scheduler"] == "wlc" and flag(ctx.params["dry_run"], "")


def test_a_boolean_that_is_not_one_is_one_line():
    result = invoke(["sync", "--dry-run", "-f", "examples/cluster.yaml", "--masquerade-all=maybe"])
    assert result.exit_code == 2 and "--masquerade-all 'maybe': expected true or false" in result.stderr


def plan(*flags: str) -> tuple:
    """What `kipvs sync --dry-run` plans on node3 with these flags: its commands, node and options."""
    import kipvs.commands.sync as sync
    from _pytest.monkeypatch import MonkeyPatch

    seen = {}
    start = sync.start_sync

    def recording(runner, snapshot, node, options, progress=None):
        seen.update(node=node, options=options)
        return start(runner, snapshot, node, options, progress)

    def factory(dry_run, timeout, out=None):
        return RecordingRunner(node_state(), dry_run=dry_run, out=out)
    args = ["sync", "--dry-run", "-f", "examples/cluster.yaml", *flags]
    if "--hostname-override" not in flags:
        args += ["--node-name", "node3"]
    with MonkeyPatch.context() as patch:
        patch.setattr(sync, "start_sync", recording)
        result = invoke(args, factory)
    assert result.exit_code == 0, result.stderr
    return result.stdout, seen["node"], seen["options"]


# (kube-proxy's or kube-router's spelling, kipvs's own); each pair changes the plan from the default.
ALIASES = [
    (["--ipvs-scheduler", "wlc"], ["--scheduler", "wlc"]),
    (["--ipvs-exclude-cidrs", "10.254.0.0/24"], ["--excluded-cidrs", "10.254.0.0/24"]),
    (["--nodeport-addresses", "0.0.0.0/0,::/0"], ["--nodeport-bindon-all-ip"]),
    (["--masquerade-all=true"], ["--masquerade-all"]),
    (["--ipvs-strict-arp=false"], ["--ipvs-strict-arp", "false"]),
    (["--strict-external-ip-validation=false"], ["--no-strict-external-ip-validation"]),
]


@pytest.mark.parametrize("alias,own", ALIASES, ids=[a[0] for a, _ in ALIASES])
def test_each_alias_plans_exactly_what_kipvss_own_flag_plans(alias, own):
    (commands, node, options), (own_commands, own_node, own_options) = plan(*alias), plan(*own)
    assert commands == own_commands and node == own_node
    # The same options too, but kube-proxy's --nodeport-addresses, which is its own option with the same plan.
    assert options == own_options or alias[0] == "--nodeport-addresses"


@pytest.mark.parametrize("alias,own", ALIASES, ids=[a[0] for a, _ in ALIASES])
def test_each_alias_changes_the_plan(alias, own):
    assert plan(*alias)[2] != plan()[2]  # so that the equality above means something


def test_hostname_override_is_node_name():
    assert plan("--hostname-override", "node3") == plan("--node-name", "node3")
    assert plan("--hostname-override", "node3")[1].name == "node3"


def test_nodeport_addresses_primary_is_kipvss_default_and_cidrs_filter_local_addresses():
    assert plan("--nodeport-addresses", "primary") == plan()
    everywhere = plan("--nodeport-bindon-all-ip")[0]
    only_node_ip = plan("--nodeport-addresses", "192.168.123.0/24")[0]
    assert "ipvsadm -A -t 192.168.123.249:30080 -s rr" in only_node_ip.splitlines()
    assert set(only_node_ip.splitlines()) <= set(everywhere.splitlines())
    result = invoke(["sync", "--dry-run", "-f", "examples/cluster.yaml", "--nodeport-addresses", "primary,10.0.0.0/8"])
    assert result.exit_code == 2 and "'primary' cannot be combined with CIDRs" in result.stderr


def printed(*args: str) -> dict:
    result = invoke(["config", "print", *args])
    assert result.exit_code == 0, result.stderr
    return {line.split(":")[0]: line.split(": ", 1)[1].split("  #")[0].strip() for line in result.stdout.splitlines()
            if not line.startswith(("#", "apiVersion", "kind"))}


@pytest.mark.parametrize("alias,own", [
    (["--ipvs-min-sync-period", "1s"], ["--min-sync-period", "1s"]),
    (["--ipvs-sync-period", "1m"], ["--sync-period", "1m"]),
    (["--metrics-bind-address", "127.0.0.1:10249"], ["--metrics-addr", "127.0.0.1:10249"]),
    (["--hostname-override", "node3"], ["--node-name", "node3"]),
])
def test_watch_aliases_set_what_kipvss_own_flags_set(alias, own):
    assert printed(*alias) == printed(*own) != printed()


def test_kube_routers_metrics_address_and_port_pair():
    assert metrics_address("127.0.0.1", 9254) == "127.0.0.1:9254"
    assert metrics_address("::1", 9254) == "[::1]:9254"
    assert metrics_address(None, 9254) == ":9254"  # kube-router listens on every address
    assert metrics_address("127.0.0.1:8080", 9254) == "127.0.0.1:8080"
    assert metrics_address("127.0.0.1:8080", None) == "127.0.0.1:8080"
    assert metrics_address("0.0.0.0", 0) is None  # kube-router: port 0 turns metrics off


def test_master_overrides_the_kubeconfigs_server(tmp_path):
    import json

    from kipvs.sources.api import load_client_config

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "https://10.96.0.1:443"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}], "users": [{"name": "u", "user": {}}]}))
    assert load_client_config(str(kubeconfig)).configuration.host == "https://10.96.0.1:443"
    assert load_client_config(str(kubeconfig), "https://192.168.1.5:6443").configuration.host == \
        "https://192.168.1.5:6443"
    result = invoke(["sync", "--master", "10.0.0.1:6443"])
    assert result.exit_code == 2 and "--master '10.0.0.1:6443': expected the API server's URL" in result.stderr


class StartedWatcher:
    origins: dict = {}

    def __init__(self, *args, **kwargs):
        pass

    def run(self):
        pass


def watch(monkeypatch, tmp_path, *flags):
    monkeypatch.setattr("kipvs.commands.watch.Watcher", StartedWatcher)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text('{"apiVersion": "v1", "kind": "Config", "current-context": "c", "clusters": [{"name": "c", '
                          '"cluster": {"server": "http://127.0.0.1:9"}}], "contexts": [{"name": "c", "context": '
                          '{"cluster": "c", "user": "u"}}], "users": [{"name": "u", "user": {}}]}')
    return invoke(["watch", "--kubeconfig", str(kubeconfig), "--healthz-bind-address", "", "--node-name", "n",
                   *flags], lambda dry_run, timeout, out=None: RecordingRunner({}))


def test_mode_flags_kipvs_already_honours_are_notes(monkeypatch, tmp_path):
    result = watch(monkeypatch, tmp_path, "--run-service-proxy=true", "--run-router=false", "--run-firewall=false",
                   "--proxy-mode=ipvs")
    assert result.exit_code == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith("kipvs: note:")]
    assert [n.split(": ")[2].split("=")[0] for n in notes] == ["--run-service-proxy", "--run-router",
                                                              "--run-firewall", "--proxy-mode"]


@pytest.mark.parametrize("flags,reason", [
    (["--proxy-mode=iptables"], "kipvs programs IPVS only"),
    (["--proxy-mode", "nftables"], "kipvs programs IPVS only"),
    (["--run-router"], "kipvs does not route pod networks"),
    (["--run-firewall=true"], "kipvs does not enforce NetworkPolicy"),
    (["--run-service-proxy=false"], "kipvs is only the service proxy"),
])
def test_mode_flags_asking_what_kipvs_does_not_do_are_refused_with_the_reason(monkeypatch, tmp_path, flags, reason):
    result = watch(monkeypatch, tmp_path, *flags)
    assert result.exit_code == 2 and reason in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
