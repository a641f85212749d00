import threading
import time

import pytest
from kubernetes import client, config

from kipvs.reconcile import NodeIdentity, compute
from kipvs.commands.watch import Watcher, WatchSettings, api_resources
from kipvs.config import ProxyOptions
from kipvs.facts.kernel import read_kernel
from kipvs.plan import plan_sync
from kipvs.sources import Snapshot
from tests.kube.apiserver import LocalAPIServer
from tests.kube.simkernel import NODE_IP, SimKernel

NODE = NodeIdentity("node-a", (NODE_IP,))
OPTIONS = ProxyOptions()
FAST = WatchSettings(min_sync_period=0.05, sync_period=30, watch_timeout=5, read_grace=1, request_timeout=2,
                     backoff_initial=0.1, backoff_cap=1.0)


@pytest.fixture
def api():
    server = LocalAPIServer().start()
    yield server
    server.stop()


def api_client(api, tmp_path):
    configuration = client.Configuration()
    config.load_kube_config(config_file=api.kubeconfig(tmp_path / "kubeconfig"), client_configuration=configuration)
    return client.ApiClient(configuration)


class Running:
    def __init__(self, watcher: Watcher, kernel: SimKernel, api: LocalAPIServer):
        self.watcher, self.kernel, self.api = watcher, kernel, api
        self.thread = threading.Thread(target=watcher.run, daemon=True)

    def server_snapshot(self) -> Snapshot:
        store = self.api.store
        with store.cond:
            objects = {path: tuple(objs.values()) for path, objs in store.objects.items()}
        return Snapshot(objects["/api/v1/services"], objects["/apis/discovery.k8s.io/v1/endpointslices"],
                        objects["/api/v1/nodes"], "server")

    def converged(self) -> bool:
        kernel = read_kernel(self.kernel)
        desired = compute(self.server_snapshot(), NODE, OPTIONS, kernel)
        return plan_sync(desired, kernel, OPTIONS).empty

    def wait_converged(self, seconds: float = 15) -> float:
        started = time.monotonic()
        deadline = started + seconds
        while time.monotonic() < deadline:
            if self.watcher.sync_count and self.converged() and not self.watcher.dirty.is_set():
                return time.monotonic() - started
            time.sleep(0.05)
        raise AssertionError(f"not converged after {seconds}s")


@pytest.fixture
def running(api, tmp_path):
    kernel = SimKernel()
    watcher = Watcher(api_resources(api_client(api, tmp_path)), kernel, NODE, OPTIONS, FAST, origin=api.url)
    run = Running(watcher, kernel, api)
    run.thread.start()
    yield run
    watcher.shutdown()
    run.thread.join(timeout=10)
