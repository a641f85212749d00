"""One configuration for every command: flag > environment > file > default, resolved once, shown by
`kipvs config print`, and watch's settings reused by show and sync on the same node."""
import json

import pytest
import yaml

from kipvs import config_file
from kipvs.config import ProxyOptions
from kipvs.errors import ToolMissing
from kipvs.facts.ipvsadm import READ_CONNECTIONS, READ_RATES
from kipvs.reconcile import NodeIdentity, sync_once
from kipvs.sources.file import read_cluster_file
from tests.kube.simkernel import NODE_IP, SimKernel
from tests.unit.fakes import invoke
from tests.unit.k8s import ep, eps, node, svc

HEAD = "apiVersion: kipvs.io/v1alpha1\nkind: KipvsConfiguration\n"


def write(tmp_path, body: str, name="config.yaml"):
    path = tmp_path / name
    path.write_text(HEAD + body)
    return str(path)


def printed(result) -> dict:
    """`kipvs config print`'s rows: key -> (value, origin)."""
    assert result.exit_code == 0, result.stderr
    rows = {}
    for line in result.stdout.splitlines():
        if line.startswith("#") or line.startswith(("apiVersion", "kind")):
            continue
        text, _, origin = line.partition("  # ")
        key, _, value = text.partition(": ")
        rows[key] = (yaml.safe_load(value), origin.strip())
    return rows


def test_precedence_flag_then_environment_then_file_then_default(tmp_path):
    path = write(tmp_path, "scheduler: wlc\ninterface: kube-ipvs0\nmasqueradeAll: true\nsyncPeriod: 1m\n")
    env = {"KIPVS_SCHEDULER": "lc", "KIPVS_INTERFACE": "from-env"}
    rows = printed(invoke(["config", "print", "--config", path, "--interface", "from-flag"], env=env))
    assert rows["interface"] == ("from-flag", "flag")                # flag beats environment and file
    assert rows["scheduler"] == ("lc", "env KIPVS_SCHEDULER")        # environment beats file
    assert rows["masqueradeAll"] == (True, f"file {path}")           # file beats default
    assert rows["syncPeriod"] == ("1m", f"file {path}")
    assert rows["ipvsStrictArp"] == (True, "default")


def test_the_file_reaches_the_options_sync_plans_with(tmp_path, monkeypatch):
    seen = {}

    def fake_sync(runner, snapshot, node, options, progress=None):
        seen.update(node=node, options=options)
        raise SystemExit(0)

    monkeypatch.setattr("kipvs.commands.sync.start_sync", fake_sync)
    path = write(tmp_path, "nodeName: node3\nserviceExternalIpRange: [192.168.200.0/24]\nipvsStrictArp: false\n"
                           "excludedCidrs: 10.0.0.0/8\nipvsTcpTimeout: 900\n")
    invoke(["sync", "--dry-run", "-f", "examples/cluster.yaml", "--config", path])
    options = seen["options"]
    assert seen["node"].name == "node3" and not options.strict_arp and options.tcp_timeout == 900
    assert [str(n) for n in options.external_ip_ranges] == ["192.168.200.0/24"]
    assert [str(n) for n in options.excluded_cidrs] == ["10.0.0.0/8"]


def test_the_default_file_is_read_when_it_exists(tmp_path, monkeypatch):
    path = write(tmp_path, "scheduler: sh\n", "etc-kipvs.yaml")
    monkeypatch.setattr("kipvs.config_file.DEFAULT_CONFIG", path)
    assert printed(invoke(["config", "print"]))["scheduler"] == ("sh", f"file {path}")
    assert printed(invoke(["config", "print", "--config", ""]))["scheduler"] == ("rr", "default")


@pytest.mark.parametrize("body,message", [
    ("schedular: wlc\n", "unknown key 'schedular'"),
    ("interface: [a, b]\n", "interface: expected one value"),
])
def test_bad_files_are_refused_on_one_line_naming_the_key(tmp_path, body, message):
    result = invoke(["sync", "--dry-run", "-f", "examples/cluster.yaml", "--config", write(tmp_path, body)])
    assert result.exit_code == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("text,message", [
    ("apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: ipvs\n",
     "a kube-proxy KubeProxyConfiguration"),
    ("apiVersion: v1\nkind: ConfigMap\n", "expected apiVersion: kipvs.io/v1alpha1 and kind: KipvsConfiguration"),
    ("- a\n", "expected a mapping of settings"),
    ("a: [\n", "not YAML"),
])
def test_other_documents_are_refused(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    result = invoke(["show", "-f", "examples/cluster.yaml", "--config", str(path)])
    assert result.exit_code == 2 and message in result.stderr and str(path) in result.stderr


def test_a_missing_named_file_is_an_error_but_a_missing_default_is_not(tmp_path):
    result = invoke(["config", "print", "--config", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "nope.yaml: No such file or directory" in result.stderr
    assert invoke(["config", "print"]).exit_code == 0


def test_config_print_is_itself_a_configuration_file_every_command_accepts(tmp_path):
    first = invoke(["config", "print", "--scheduler", "wlc", "--service-external-ip-range", "192.168.200.0/24",
                    "--masquerade-all", "--metrics-addr", "127.0.0.1:9254"])
    path = tmp_path / "printed.yaml"
    path.write_text(first.stdout)
    again = printed(invoke(["config", "print", "--config", str(path)]))
    assert {k: v for k, (v, _) in again.items()} == {k: v for k, (v, _) in printed(first).items()}
    # every value now comes from the file, but the lock file the test harness sets in the environment
    assert {k for k, (v, origin) in again.items() if origin != f"file {path}" and v is not None} == {"lockFile"}
    for command in (["sync", "--dry-run"], ["show"], ["cleanup", "--dry-run"], ["fix-routes", "--dry-run"]):
        result = invoke([*command, "--config", str(path), "--help"])
        assert result.exit_code == 0, (command, result.stderr)


def test_every_option_any_command_reads_has_a_key_config_print_lists():
    import typer.main

    from kipvs.cli import app
    from kipvs.cli_options import file_params

    root = typer.main.get_command(app)
    keys = set(file_params(root))
    listed = set(printed(invoke(["config", "print"])))
    assert keys == listed  # an option without a default is listed as null
    for name in ("service_external_ip_range", "ipvs_graceful_period", "min_sync_period", "cleanup_on_exit"):
        assert config_file.key_of(name) in keys


class NoNetfilterKernel(SimKernel):
    """The kernel stand-in, on a node without iptables: IPVS, addresses and routes only."""

    def run(self, argv, stdin=None):
        if argv[0].startswith(("iptables", "ip6tables")):
            raise ToolMissing(f"`{argv[0]}` not found on PATH")
        if argv in (READ_CONNECTIONS, READ_RATES):
            return ""  # no connections, no traffic
        return super().run(argv, stdin)


def test_show_check_with_no_flags_agrees_with_watch(tmp_path, monkeypatch):
    """watch runs with flags; it writes what it runs with; show --check, given none of them, agrees."""
    seen = {}

    class StartedWatcher:
        origins: dict = {}

        def __init__(self, resources, runner, node, options, settings, metrics, origin):
            seen.update(node=node, options=options)

        def run(self):
            pass

    monkeypatch.setattr("kipvs.commands.watch.Watcher", StartedWatcher)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}], "users": [{"name": "u", "user": {}}]}))
    flags = ["--node-name", "node3", "--node-ip", NODE_IP, "--service-external-ip-range", "192.168.200.0/24",
             "--loadbalancer-ip-range", "192.168.201.0/24", "--scheduler", "wlc", "--ipvs-strict-arp=false"]
    cluster_path = str(tmp_path / "cluster.json")
    with open(cluster_path, "w") as handle:  # one Service with an external IP, on node3 (the stand-in's node IP)
        json.dump({"kind": "List", "items": [svc("web", externalIPs=["192.168.200.10"]),
                                             eps("web", [ep("10.1.0.5", node="node3")]), node("node3", NODE_IP)]},
                  handle)
    watch = invoke(["watch", "--kubeconfig", str(kubeconfig), "--healthz-bind-address", "", *flags],
                   lambda dry_run, timeout, out=None: NoNetfilterKernel())
    assert watch.exit_code == 0, watch.stderr
    effective = config_file.effective_path()
    written = yaml.safe_load(open(effective))
    assert written["serviceExternalIpRange"] == ["192.168.200.0/24"] and written["nodeName"] == "node3"
    assert "kubeconfig" not in written  # how the pod reaches the API is not the host's business

    kernel = NoNetfilterKernel()  # the node as watch converges it
    cluster = read_cluster_file(cluster_path)
    assert sync_once(kernel, cluster, seen["node"], seen["options"]).converged
    assert "192.168.200.10" in (kernel.dummy or {})  # the external IP the ranges allow is programmed

    show = invoke(["show", "--check", "-f", cluster_path], lambda dry_run, timeout, out=None: kernel)
    assert show.exit_code == 0, show.stderr
    assert f"using the settings kipvs watch runs with on this node ({effective})" in show.stderr
    assert len(show.stderr.strip().splitlines()) == 1
    # Without watch's settings the same node is drift (its external IPs are not wanted): the check means something.
    alone = invoke(["show", "--check", "-f", cluster_path, "--node-name", "node3", "--node-ip", NODE_IP,
                    "--config", ""], lambda dry_run, timeout, out=None: kernel)
    assert alone.exit_code == 1, alone.stderr
    # A flag still beats watch's file.
    assert invoke(["show", "--check", "-f", cluster_path, "--scheduler", "rr"],
                  lambda dry_run, timeout, out=None: kernel).exit_code == 1


def test_watch_reads_the_default_file_not_its_own_output(tmp_path, monkeypatch):
    effective = write(tmp_path, "scheduler: wlc\n", "effective.yaml")
    monkeypatch.setenv("KIPVS_EFFECTIVE_CONFIG", effective)
    assert printed(invoke(["config", "print"]))["scheduler"] == ("wlc", f"file {effective}")
    from kipvs.config_file import choose

    assert choose(None, is_watch=True) == (None, "")


def test_the_effective_file_is_replaced_atomically(tmp_path):
    path = tmp_path / "run" / "effective.yaml"
    config_file.write_atomically(str(path), "a: 1\n")
    config_file.write_atomically(str(path), "a: 2\n")
    assert path.read_text() == "a: 2\n" and [p.name for p in path.parent.iterdir()] == ["effective.yaml"]
    assert oct(path.stat().st_mode & 0o777) == "0o644"


def test_proxy_options_default_equals_an_empty_file(tmp_path, monkeypatch):
    seen = {}

    def fake_sync(runner, snapshot, node, options, progress=None):
        seen["options"] = options
        raise SystemExit(0)

    monkeypatch.setattr("kipvs.commands.sync.start_sync", fake_sync)
    invoke(["sync", "--dry-run", "-f", "examples/cluster.yaml", "--node-name", "node3", "--config", write(tmp_path, "")])
    plain = seen.pop("options")
    invoke(["sync", "--dry-run", "-f", "examples/cluster.yaml", "--node-name", "node3", "--config", ""])
    assert plain == seen["options"] and isinstance(plain, ProxyOptions)
