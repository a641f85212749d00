"""deploy/daemonset.yaml's bootstrap on a cluster without kube-proxy, in the lab: `kipvs watch` started with
exactly the environment the DaemonSet gives its container and the files the kubelet mounts into the pod
(the service-account token, CA and namespace under /run/secrets, minted for deploy/rbac.yaml's account by the
real TokenRequest API), KUBERNETES_SERVICE_HOST at the API server's real address on node1 (nothing serves a
ClusterIP yet), converges node3; `kipvs show --check` in the same pod environment, with no flags, agrees.

One difference from a pod, said here: the kipvs-config ConfigMap is read from a file KIPVS_CONFIG names,
since the guest's /etc is the host's, read-only (the pod mounts it at /etc/kipvs/config.yaml)."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.kernel.lab import PYTHON, REPO, wait_until
from tests.kernel.test_watch import start_api_server
from tests.kube.pairctl import control

DEPLOY = REPO / "deploy"
API_HOST, API_PORT = "192.168.123.250", "6443"  # node1, where tests.kube.pairctl serves
SECRETS = Path("/run/secrets/kubernetes.io/serviceaccount")  # /var/run/secrets: the guest's own tmpfs


def deployed() -> dict:
    return {(d["kind"], d["metadata"]["name"]): d for name in ("config.yaml", "daemonset.yaml")
            for d in yaml.safe_load_all((DEPLOY / name).read_text())}


def pod_environment(node_name: str) -> dict:
    """The container's env as the kubelet resolves it, with kipvs-api-server edited as its comment says."""
    objects = deployed()
    api_server = dict(objects[("ConfigMap", "kipvs-api-server")]["data"], host=API_HOST, port=API_PORT)
    (container,) = objects[("DaemonSet", "kipvs")]["spec"]["template"]["spec"]["containers"]
    env = {}
    for entry in container["env"]:
        source = entry["valueFrom"]
        if "fieldRef" in source:
            assert source["fieldRef"]["fieldPath"] == "spec.nodeName"
            env[entry["name"]] = node_name
        else:
            ref = source["configMapKeyRef"]
            assert ref["name"] == "kipvs-api-server"
            env[entry["name"]] = api_server[ref["key"]]
    return env, container["args"]


@pytest.fixture
def pod_files():
    """The kubelet's service-account mount and the host's /run/kipvs, removed afterwards: later tests in
    this guest must not find a token, nor this watch's settings."""
    yield
    shutil.rmtree("/run/secrets", ignore_errors=True)
    shutil.rmtree("/run/kipvs", ignore_errors=True)


def test_daemonset_bootstraps_a_cluster_without_kube_proxy(cluster, tmp_path, pod_files):
    for name in ("node1", "node2", "node3"):
        cluster.add_pod(cluster.add_node(name), f"{name[-1]}-web")
    node3 = cluster.nodes["node3"]
    api, sock, _ = start_api_server(tmp_path)
    cluster.processes.append(api)
    account = control(sock, op="service_account", manifest=str(DEPLOY / "rbac.yaml"))
    SECRETS.mkdir(parents=True, exist_ok=True)
    for name, text in (("token", account["token"]), ("ca.crt", account["ca"]), ("namespace", account["namespace"])):
        (SECRETS / name).write_text(text)
    config = tmp_path / "config.yaml"
    config.write_text(deployed()[("ConfigMap", "kipvs-config")]["data"]["config.yaml"])
    env, args = pod_environment("node3")
    # A pod's environment: nothing from this test process but PATH, no kubeconfig anywhere.
    pod_env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "KIPVS_CONFIG": str(config), **env}
    assert node3.curl("https://10.254.0.1/", seconds=2) is None  # the `kubernetes` ClusterIP answers nothing yet
    log = open(tmp_path / "watch.log", "w")
    watch = subprocess.Popen(["ip", "netns", "exec", "node3", PYTHON, "-m", "kipvs", "-v", *args], stderr=log,
                             cwd=REPO, env=pod_env)
    cluster.processes.append(watch)
    converged = lambda: {"-A -t 10.254.0.20:80 -s rr", "-A -t 10.254.0.1:443 -s rr"} <= set(node3.ipvs_rules())
    assert wait_until(converged, 90), (tmp_path / "watch.log").read_text()
    # kipvs now serves the cluster's own API Service: the real server is the address the pod was given.
    assert f"-a -t 10.254.0.1:443 -r {API_HOST}:{API_PORT} -m -w 1" in node3.ipvs_rules(), node3.ipvs_rules()
    # The probes' endpoint, kube-proxy's /livez on the node's address, answers once a sync completed.
    assert wait_until(lambda: (node3.curl("http://192.168.123.249:10256/livez") or "").startswith("{"), 20)
    # What it runs with is on the host's /run/kipvs, where show and a cron sync find it.
    assert wait_until(lambda: os.path.exists("/run/kipvs/effective-config.yaml"), 10)
    effective = yaml.safe_load(open("/run/kipvs/effective-config.yaml"))
    assert effective["nodeName"] == "node3" and effective["metricsAddr"] == "127.0.0.1:9254"
    # `kubectl exec <pod> -- kipvs show --check`: the same environment, no flags, and it agrees with watch.
    show = subprocess.run(["ip", "netns", "exec", "node3", PYTHON, "-m", "kipvs", "show", "--check"],
                          cwd=REPO, env=pod_env, capture_output=True, text=True, timeout=120)
    assert show.returncode == 0, show.stderr
    assert "using the settings kipvs watch runs with on this node" not in show.stderr  # KIPVS_CONFIG was given
    show = subprocess.run(["ip", "netns", "exec", "node3", PYTHON, "-m", "kipvs", "show", "--check"], cwd=REPO,
                          env={k: v for k, v in pod_env.items() if k != "KIPVS_CONFIG"}, capture_output=True,
                          text=True, timeout=120)
    assert show.returncode == 0 and "using the settings kipvs watch runs with" in show.stderr, show.stderr
