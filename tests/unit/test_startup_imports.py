"""Start-up imports only what a command uses: every kipvs run starts a Python process (cron, a
DaemonSet's loop), and in the lab guest each module costs tens of milliseconds."""
import subprocess
import sys

import yaml

from kipvs.sources.file import yaml_loader

PROBE = """
import sys
from kipvs.cli import app
from kipvs.commands.sync import run_sync
from kipvs.sources.file import read_cluster_file
import kipvs.reconcile, kipvs.commands.show, kipvs.commands.watch
print(" ".join(sorted({m.split('.')[0] for m in sys.modules} & {"kubernetes", "rich", "yaml", "urllib3"})))
"""


def test_sync_from_a_json_dump_imports_neither_the_api_client_nor_rich_nor_yaml():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    assert out.split() == [], out


ONE_SHOT = """
import sys
from kipvs.cli import app
from kipvs.commands.sync import run_sync
from kipvs.commands.cleanup import run_cleanup
from kipvs.commands.fix_routes import run_fix_routes
import kipvs.reconcile, kipvs.commands.show, kipvs.sources.api, kipvs.sources.reflector
print("prometheus_client" in sys.modules)
"""


def test_only_watch_mode_imports_the_prometheus_client():
    one_shot = subprocess.run([sys.executable, "-c", ONE_SHOT], capture_output=True, text=True, check=True).stdout
    assert one_shot.split() == ["False"], one_shot
    watch = subprocess.run([sys.executable, "-c", "import sys, kipvs.commands.watch; "
                            "print('prometheus_client' in sys.modules)"], capture_output=True, text=True, check=True)
    assert watch.stdout.split() == ["True"]  # the check above is not vacuous


def test_yaml_dumps_use_libyaml_when_pyyaml_has_it():
    assert yaml_loader() is (yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader)


PARSE = """
import sys
from typer.testing import CliRunner
from kipvs.cli import app
result = CliRunner().invoke(app, ["config", "print"])
print(result.exit_code, "pydantic" in sys.modules)
"""


def test_parsing_a_command_line_imports_no_pydantic():
    # typer 0.29 imports pydantic at every parse (seconds per run in the lab guest): pinned below it.
    out = subprocess.run([sys.executable, "-c", PARSE], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["0", "False"], out


WATCH_START = """
import sys
from kipvs.cli import app
import kipvs.commands.watch as watch
from kipvs.sources.api import load_client_config
client = load_client_config(sys.argv[1])
watch.api_resources(client, "node-a")
heavy = ("kubernetes.client.api", "kubernetes.client.api.core_v1_api", "kubernetes.client.models.v1_service",
         "kubernetes.client.models.v1_endpoint_slice", "sh", "asyncio", "rich")
print(" ".join(name for name in heavy if name in sys.modules) or "none")
"""


def test_watch_start_up_loads_neither_the_generated_api_classes_nor_sh(tmp_path):
    # CoreV1Api and DiscoveryV1Api import ~250 modules (~22 MB in a watch): watch lists with
    # kipvs.sources.api.ListCall; sh (asyncio, ~10 MB) is the command helper's, imported when a
    # command starts. The Service and EndpointSlice caches hold parsed values, so no model is needed.
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:6443', insecure-skip-tls-verify: true}}]\n"
        "users: [{name: u, user: {token: abc}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n")
    out = subprocess.run([sys.executable, "-c", WATCH_START, str(kubeconfig)], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["none"], out


def test_the_runner_imports_sh_only_to_start_a_command():
    probe = ("import sys, kipvs.runner, kipvs.spawn; before = 'sh' in sys.modules; "
             "kipvs.runner.Runner()._exec(['true'], None); print(before, 'sh' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"], out
