"""The kube tests' API server: a real etcd + kube-apiserver started for the session (tests/kube/kubepair.py),
or an existing cluster's when KIPVS_TEST_KUBECONFIG names its kubeconfig.

Tests write through the official client as the admin, in their own namespace, and each test
leaves it empty. `kipvs watch` runs in-process (the Watcher) against a SimKernel, reaching the
server through a TCP proxy the test can cut or stall. Faults a real server cannot be made to
show (500/429 on demand) keep the protocol fake in tests/kube/apiserver.py: fixture `fake_api`.
"""
from __future__ import annotations

import copy
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kipvs.commands.watch import Watcher, WatchSettings, api_resources
from kipvs.config import ProxyOptions
from kipvs.facts.kernel import read_kernel
from kipvs.plan import plan_sync
from kipvs.reconcile import NodeIdentity, compute
from kipvs.sources.api import read_cluster_api
from tests.kube.apiserver import LocalAPIServer
from tests.kube.kubepair import KubePair, api_client_from
from tests.kube.simkernel import NODE_IP, SimKernel
from tests.kube import writes
from tests.kube.tcpproxy import TCPProxy

NODE = NodeIdentity("node-a", (NODE_IP,))
OPTIONS = ProxyOptions()
FAST = WatchSettings(min_sync_period=0.05, sync_period=30, watch_timeout=5, read_grace=1, request_timeout=2,
                     backoff_initial=0.1, backoff_cap=1.0)
NAMESPACE = "kipvs-test"
TEST_LABEL = "kipvs.test/owned"  # on the cluster-scoped objects tests create (Nodes), so cleanup finds them
EXTERNAL = os.environ.get("KIPVS_TEST_KUBECONFIG")


class Kube:
    """The API server under test, and the admin's hands on it."""

    def __init__(self, admin_kubeconfig: Path, pair: KubePair | None, workdir: Path):
        self.admin_kubeconfig = admin_kubeconfig
        self.pair = pair
        self.workdir = workdir
        self.admin = api_client_from(admin_kubeconfig)
        self.core = client.CoreV1Api(self.admin)
        self.discovery = client.DiscoveryV1Api(self.admin)
        self.url = self.admin.configuration.host
        # Node objects are made up by the tests: fine on a throw-away server, not in someone's cluster,
        # where kipvs plays one of its real nodes (it refuses to sync without its own Node).
        self.may_create_nodes = pair is not None
        self.node = NODE if pair else self._existing_node()

    def _existing_node(self) -> NodeIdentity:
        nodes = self.core.list_node(limit=1).items
        if not nodes:
            raise RuntimeError(f"{self.url} has no Node for kipvs to play (KIPVS_TEST_KUBECONFIG)")
        return NodeIdentity(nodes[0].metadata.name, (NODE_IP,))

    # --- writes as the admin, raw JSON in and out ---

    def apply(self, obj: dict) -> dict:
        obj = copy.deepcopy(obj)
        if obj["kind"] == "Node":
            obj["metadata"].setdefault("labels", {})[TEST_LABEL] = "true"
        else:
            obj["metadata"]["namespace"] = NAMESPACE
        return writes.apply(self.admin, obj)

    def delete(self, kind: str, name: str) -> None:
        writes.delete(self.admin, kind, name, NAMESPACE)

    def clear(self) -> None:
        """Leave the test namespace and the test's Nodes as a new test expects them: empty."""
        self.core.delete_collection_namespaced_service(NAMESPACE)
        self.discovery.delete_collection_namespaced_endpoint_slice(NAMESPACE)
        self.core.delete_collection_node(label_selector=TEST_LABEL)

    def snapshot(self):
        return read_cluster_api(self.admin)

    def cluster_ips(self) -> dict[str, str]:
        """name -> cluster IP of the test namespace's Services (allocated by the server)."""
        return {s.metadata.name: s.spec.cluster_ip for s in self.core.list_namespaced_service(NAMESPACE).items}

    def client(self, server: str | None = None) -> client.ApiClient:
        """An admin API client, to `server` (a proxy in front of the local server) instead of the server itself."""
        if server is None:
            return api_client_from(self.admin_kubeconfig)
        if self.pair is None:
            raise AssertionError("only the local pair can be reached through the fault proxy")
        path = Path(tempfile.mkstemp(dir=self.workdir, suffix=".kubeconfig")[1])
        return api_client_from(self.pair.kubeconfig(path, server=server))

    def token_kubeconfig(self, token: str) -> Path:
        """A kubeconfig for the same server and CA as the admin's, authenticating with a bearer token only."""
        admin = self.admin.configuration
        cluster = {"server": admin.host}
        if admin.ssl_ca_cert:
            cluster["certificate-authority"] = admin.ssl_ca_cert
        if not admin.verify_ssl:
            cluster["insecure-skip-tls-verify"] = True
        path = Path(tempfile.mkstemp(dir=self.workdir, suffix=".kubeconfig")[1])
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "sa",
            "clusters": [{"name": "c", "cluster": cluster}], "users": [{"name": "sa", "user": {"token": token}}],
            "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sa"}}]}))
        return path


@pytest.fixture(scope="session")
def kube_session(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("kube")
    if EXTERNAL:
        kube = Kube(Path(EXTERNAL), None, workdir)
    else:
        pair = KubePair(workdir / "pair").start()  # fails loudly (not a skip) when the pair cannot start
        kube = Kube(pair.kubeconfig(workdir / "admin.kubeconfig"), pair, workdir)
    try:
        kube.core.create_namespace({"metadata": {"name": NAMESPACE}})
    except ApiException as exc:
        if exc.status != 409:
            raise
    yield kube
    if kube.pair:
        kube.pair.stop()
    else:
        kube.clear()
        kube.core.delete_namespace(NAMESPACE)


@pytest.fixture
def kube(kube_session):
    pair = kube_session.pair
    if pair and pair.apiserver.poll() is not None:  # a test that killed it failed before restarting it
        pair.start_apiserver()
    yield kube_session
    if pair and pair.apiserver.poll() is not None:
        pair.start_apiserver()
    kube_session.clear()


@pytest.fixture
def pair(kube) -> KubePair:
    """The local pair itself, for tests that kill, restart or compact it."""
    if kube.pair is None:
        pytest.skip("needs the local etcd + kube-apiserver (KIPVS_TEST_KUBECONFIG points at an existing cluster)")
    return kube.pair


@pytest.fixture
def proxy(kube):
    """The fault proxy in front of the local server (None on an existing cluster: tests that cut or
    stall connections also ask for `pair`, so they skip there)."""
    if kube.pair is None:
        yield None
        return
    proxy = TCPProxy(("127.0.0.1", kube.pair.port))
    yield proxy
    proxy.close()


def through(kube: Kube, proxy: TCPProxy | None) -> client.ApiClient:
    """kipvs's API client: through the fault proxy when there is one."""
    return kube.client(server=f"https://127.0.0.1:{proxy.port}" if proxy else None)


class Running:
    """A Watcher in a thread, with the check the tests wait for: the kernel matches what the server holds."""

    def __init__(self, watcher: Watcher, kernel: SimKernel, kube: Kube):
        self.watcher, self.kernel, self.kube = watcher, kernel, kube
        self.thread = threading.Thread(target=watcher.run, daemon=True)

    def converged(self) -> bool:
        kernel = read_kernel(self.kernel)
        desired = compute(self.kube.snapshot(), self.kube.node, OPTIONS, kernel)
        return plan_sync(desired, kernel, OPTIONS).empty

    def wait_converged(self, seconds: float = 20) -> float:
        started = time.monotonic()
        deadline = started + seconds
        while time.monotonic() < deadline:
            if self.watcher.sync_count and not self.watcher.dirty.is_set() and self.converged():
                return time.monotonic() - started
            time.sleep(0.1)
        kernel = read_kernel(self.kernel)
        left = plan_sync(compute(self.kube.snapshot(), self.kube.node, OPTIONS, kernel), kernel, OPTIONS)
        raise AssertionError(f"not converged after {seconds}s: {left.command_lines()[:10]}")

    def stop(self) -> None:
        self.watcher.shutdown()
        self.thread.join(timeout=10)


def start_watcher(kube: Kube, api_client, settings: WatchSettings = FAST) -> Running:
    kernel = SimKernel()
    watcher = Watcher(api_resources(api_client, kube.node.name), kernel, kube.node, OPTIONS, settings,
                      origin=api_client.configuration.host)
    run = Running(watcher, kernel, kube)
    run.thread.start()
    return run


@pytest.fixture
def running(kube, proxy):
    """`kipvs watch` (in-process) reaching the real server through the fault proxy."""
    run = start_watcher(kube, through(kube, proxy))
    yield run
    run.stop()


@pytest.fixture
def fake_api():
    """The protocol fake, only for faults a real server cannot be made to show on demand."""
    server = LocalAPIServer().start()
    yield server
    server.stop()


def fake_api_client(api: LocalAPIServer, tmp_path) -> client.ApiClient:
    return api_client_from(api.kubeconfig(tmp_path / "kubeconfig"))


@pytest.fixture(autouse=True)
def config_in_tmp(tmp_path, monkeypatch):
    """Commands run here never read this host's /etc/kipvs or /run/kipvs, nor write watch's settings there."""
    monkeypatch.setattr("kipvs.config_file.DEFAULT_CONFIG", str(tmp_path / "etc-kipvs-config.yaml"))
    monkeypatch.setenv("KIPVS_EFFECTIVE_CONFIG", str(tmp_path / "effective-config.yaml"))
    monkeypatch.delenv("KIPVS_CONFIG", raising=False)
