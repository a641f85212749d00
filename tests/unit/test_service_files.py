"""The shipped deployment (deploy/): a DaemonSet that boots a cluster without kube-proxy, least-privilege RBAC,
one configuration for the pod, cron and the CLI, a hardened systemd unit, a cron file that runs under cron."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from kipvs import config_file
from kipvs.config import RunOptions
from kipvs.lock import DEFAULT_DRAIN_RECORD
from tests.unit.fakes import invoke

REPO = Path(__file__).resolve().parent.parent.parent
DEPLOY = REPO / "deploy"
ETC_CONFIG = config_file.DEFAULT_CONFIG  # read at import: the tests' fixture moves the module's into tmp


def manifests() -> list[dict]:
    """Every object kustomization.yaml applies, in its order."""
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    return [doc for name in kustomization["resources"] for doc in yaml.safe_load_all((DEPLOY / name).read_text())]


def of_kind(kind: str) -> dict:
    (found,) = [d for d in manifests() if d["kind"] == kind and d["metadata"]["name"].startswith("kipvs")][:1]
    return found


def pod() -> dict:
    return of_kind("DaemonSet")["spec"]["template"]["spec"]


def volume_at(path: str) -> dict:
    container = pod()["containers"][0]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == path)
    return next(v for v in pod()["volumes"] if v["name"] == mount["name"])


def test_kustomization_lists_every_manifest_and_names_the_image_placeholder():
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in DEPLOY.glob("*.yaml")
                                                        if p.name != "kustomization.yaml")
    (image,) = kustomization["images"]
    assert pod()["containers"][0]["image"].split(":")[0] == image["name"] == "kipvs"


def test_rbac_is_read_only_on_three_resources():
    role = of_kind("ClusterRole")
    granted = {(group, res, verb) for rule in role["rules"] for group in rule["apiGroups"]
               for res in rule["resources"] for verb in rule["verbs"]}
    assert granted == {(g, r, v) for g, r in [("", "services"), ("", "nodes"), ("discovery.k8s.io", "endpointslices")]
                       for v in ("get", "list", "watch")}
    assert pod()["serviceAccountName"] == of_kind("ServiceAccount")["metadata"]["name"]


def test_the_pod_reaches_the_real_api_server_not_a_cluster_ip():
    env = {e["name"]: e for e in pod()["containers"][0]["env"]}
    api = next(d for d in manifests() if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "kipvs-api-server")
    for name, key in (("KUBERNETES_SERVICE_HOST", "host"), ("KUBERNETES_SERVICE_PORT", "port")):
        ref = env[name]["valueFrom"]["configMapKeyRef"]
        assert ref["name"] == "kipvs-api-server" and ref["key"] in api["data"]
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}


def test_the_pod_shares_the_hosts_run_kipvs_xtables_lock_and_modules():
    assert volume_at(config_file.RUNTIME_DIR)["hostPath"] == {"path": "/run/kipvs", "type": "DirectoryOrCreate"}
    for path in (RunOptions().lock_file, DEFAULT_DRAIN_RECORD, config_file.EFFECTIVE_CONFIG):
        assert os.path.dirname(path) == config_file.RUNTIME_DIR  # all three in the shared directory
    assert volume_at("/run/xtables.lock")["hostPath"] == {"path": "/run/xtables.lock", "type": "FileOrCreate"}
    assert volume_at("/lib/modules")["hostPath"]["path"] == "/lib/modules"
    assert pod()["hostNetwork"] is True and pod()["containers"][0]["securityContext"] == {"privileged": True}


def test_the_config_map_is_the_file_watch_reads_and_metrics_stay_on_loopback(tmp_path):
    assert volume_at(os.path.dirname(ETC_CONFIG))["configMap"] == {"name": "kipvs-config"}
    data = next(d for d in manifests() if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "kipvs-config")["data"]
    assert set(data) == {os.path.basename(ETC_CONFIG)}
    path = tmp_path / "config.yaml"
    path.write_text(data["config.yaml"])
    result = invoke(["config", "print", "--config", str(path)])
    assert result.exit_code == 0, result.stderr  # every key is one kipvs knows, every value one it accepts
    assert 'metricsAddr: "127.0.0.1:9254"' in result.stdout
    container = pod()["containers"][0]
    assert container["args"] == ["watch"]  # everything else from the ConfigMap, which kubectl exec sees too
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 9254, "healthz": 10256}
    for probe in ("startupProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/livez", "port": "healthz"}


def test_the_header_says_what_the_pod_can_do():
    header = (DEPLOY / "daemonset.yaml").read_text().split("apiVersion")[0]
    assert "root on every node" in header and "privileged" in header and "placeholder" in header


UNIT = (DEPLOY / "kipvs.service").read_text()


def test_systemd_unit_runs_watch_and_restarts():
    assert "ExecStart=/opt/kipvs/bin/kipvs watch" in UNIT and "Restart=always" in UNIT  # README's install path
    assert "KillSignal=SIGTERM" in UNIT and "RuntimeDirectory=kipvs" in UNIT
    assert "ProtectHome=read-only" in UNIT  # ~root/.kube/config, the default kubeconfig, stays readable


def installed_unit(tmp_path) -> Path:
    """The unit with ExecStart at this checkout's kipvs: verify checks that the command is executable."""
    path = tmp_path / "kipvs.service"
    path.write_text(UNIT.replace("/opt/kipvs/bin/kipvs", str(Path(shutil.which("kipvs") or
                                                                   REPO / ".venv" / "bin" / "kipvs"))))
    return path


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed (systemd)")
def test_systemd_unit_verifies_clean(tmp_path):
    env = {**os.environ, "MANPATH": str(REPO / ".venv" / "share" / "man")}  # Documentation=man:kipvs-watch(8)
    proc = subprocess.run(["systemd-analyze", "verify", str(installed_unit(tmp_path))], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path, env=env)
    assert proc.returncode == 0 and proc.stdout + proc.stderr == "", proc.stdout + proc.stderr


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed (systemd)")
def test_systemd_unit_is_hardened():
    proc = subprocess.run(["systemd-analyze", "security", "--offline=true", "--threshold=40",
                           str(DEPLOY / "kipvs.service")], capture_output=True, text=True, timeout=60, cwd=DEPLOY)
    last = proc.stdout.strip().splitlines()[-1]
    exposure = float(last.split("kipvs.service: ")[1].split()[0])
    assert proc.returncode == 0 and exposure <= 4.0, last


CRON = (DEPLOY / "kipvs.cron").read_text()


def test_cron_file_sets_a_path_where_kipvs_and_ipvsadm_are():
    path = next(line for line in CRON.splitlines() if line.startswith("PATH="))
    dirs = path.split("=", 1)[1].split(":")
    assert "/usr/sbin" in dirs and "/opt/kipvs/bin" in dirs  # ipvsadm, ip, iptables; the README's venv


def test_cron_lines_use_existing_commands_and_tell_drift_from_error():
    jobs = [job for job in (line.lstrip("# ") for line in CRON.splitlines()) if job[:1] and job[0] in "*0123456789"]
    assert len(jobs) == 4 and all(" root kipvs " in job for job in jobs)
    check = next(job for job in jobs if "show --check" in job)
    assert "[ $s -eq 1 ]" in check and "[ $s -ge 2 ]" in check and "||" not in check
    # the monitoring line, run by sh as cron would, with kipvs answering 0, 1 and 2
    command = check.split(" root ", 1)[1].replace("logger -t kipvs", "echo").replace("-p daemon.err ", "")
    for status, said in ((0, ""), (1, "node drifted from the cluster"), (2, "show --check failed (exit 2)")):
        proc = subprocess.run(["sh", "-c", f"kipvs() {{ return {status}; }}; {command}"], capture_output=True,
                              text=True, timeout=10)
        assert proc.returncode == 0 and proc.stdout.strip() == said, (status, proc.stdout)
