"""The shipped service files say what the brief promises: minimal RBAC, host network, SIGTERM keeps rules."""
from pathlib import Path

import yaml

SCRIPTS = Path(__file__).resolve().parent.parent.parent / "scripts"


def test_daemonset_rbac_is_read_only_on_three_resources():
    docs = list(yaml.safe_load_all((SCRIPTS / "daemonset.yaml").read_text()))
    role = next(d for d in docs if d["kind"] == "ClusterRole")
    granted = {(group, res, verb) for rule in role["rules"] for group in rule["apiGroups"]
               for res in rule["resources"] for verb in rule["verbs"]}
    assert granted == {(g, r, v) for g, r in [("", "services"), ("", "nodes"), ("discovery.k8s.io", "endpointslices")]
                       for v in ("get", "list", "watch")}
    pod = next(d for d in docs if d["kind"] == "DaemonSet")["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    container = pod["containers"][0]
    assert container["args"][0] == "watch"
    # /proc/sys/net must be writable for the IPVS sysctls: privileged, as kube-router and kube-proxy run.
    assert container["securityContext"] == {"privileged": True}


def test_daemonset_shares_the_node_lock_with_cron_and_the_cli():
    from kipvs.config import RunOptions

    docs = list(yaml.safe_load_all((SCRIPTS / "daemonset.yaml").read_text()))
    pod = next(d for d in docs if d["kind"] == "DaemonSet")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert not any(e["name"] == "KIPVS_LOCK_FILE" for e in container.get("env", []))
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == RunOptions().lock_file)
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["hostPath"] == {"path": RunOptions().lock_file, "type": "FileOrCreate"}


def test_systemd_unit_runs_watch_and_restarts():
    unit = (SCRIPTS / "kipvs.service").read_text()
    assert "ExecStart=/usr/local/bin/kipvs watch" in unit and "Restart=always" in unit
    assert "KillSignal=SIGTERM" in unit


def test_cron_example_uses_existing_commands():
    lines = [line for line in (SCRIPTS / "kipvs.cron").read_text().splitlines() if line and not line.startswith("#")]
    assert lines and all(" kipvs " in line or "/kipvs " in line for line in lines)
