"""Least privilege, proven on the real API server with RBAC on: kipvs watch works with exactly the
ServiceAccount, ClusterRole and binding that deploy/rbac.yaml ships, and nothing more is allowed."""
import time

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kipvs.sources.api import load_client_config
from tests.kube.conftest import NAMESPACE, start_watcher
from tests.kube.kubepair import REPO
from tests.kube.test_watch import programmed, seed
from tests.unit.k8s import svc

NAME = "kipvs-test-rbac"  # not `kipvs`: on an existing cluster, never clobber a real installation's RBAC


def shipped_rbac() -> dict:
    """The shipped RBAC objects, renamed into the test's namespace and name."""
    docs = {d["kind"]: d for d in yaml.safe_load_all((REPO / "deploy" / "rbac.yaml").read_text())}
    account, role, binding = docs["ServiceAccount"], docs["ClusterRole"], docs["ClusterRoleBinding"]
    account["metadata"] = {"name": NAME, "namespace": NAMESPACE}
    role["metadata"] = {"name": NAME}
    binding["metadata"] = {"name": NAME}
    binding["roleRef"]["name"] = NAME
    binding["subjects"] = [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}]
    return {"account": account, "role": role, "binding": binding}


@pytest.fixture
def kipvs_identity(kube):
    """A token for the shipped identity, minted by the real TokenRequest API; RBAC objects removed after."""
    rbac_api = client.RbacAuthorizationV1Api(kube.admin)
    objects = shipped_rbac()
    kube.core.create_namespaced_service_account(NAMESPACE, objects["account"])
    rbac_api.create_cluster_role(objects["role"])
    rbac_api.create_cluster_role_binding(objects["binding"])
    token = kube.core.create_namespaced_service_account_token(
        NAME, NAMESPACE, {"spec": {"expirationSeconds": 3600}}).status.token
    yield load_client_config(str(kube.token_kubeconfig(token)))  # the CLI's own way in
    rbac_api.delete_cluster_role_binding(NAME)
    rbac_api.delete_cluster_role(NAME)
    kube.core.delete_namespaced_service_account(NAME, NAMESPACE)


def forbidden(call, *args) -> bool:
    try:
        call(*args)
    except ApiException as exc:
        return exc.status == 403
    return False


def test_watch_works_with_the_shipped_rbac_and_nothing_more_is_allowed(kube, kipvs_identity):
    core = client.CoreV1Api(kipvs_identity)
    deadline = time.monotonic() + 10  # RBAC objects reach the authorizer's cache within moments
    while forbidden(core.list_service_for_all_namespaces) and time.monotonic() < deadline:
        time.sleep(0.2)
    seed(kube)
    run = start_watcher(kube, kipvs_identity)
    try:
        run.wait_converged()
        assert programmed(run, kube) == {f"s{i}" for i in range(5)}
        assert sum(r.stats.errors for r in run.watcher.reflectors) == 0  # no 403 on any list or watch
    finally:
        run.stop()
    # What kipvs never needs is denied: reading Secrets, writing Services or Nodes, reading Pods.
    assert forbidden(core.list_namespaced_secret, NAMESPACE)
    assert forbidden(core.list_secret_for_all_namespaces)
    assert forbidden(core.create_namespaced_service, NAMESPACE, svc("intruder", cluster_ips=(), namespace=NAMESPACE))
    assert forbidden(core.delete_namespaced_service, "s0", NAMESPACE)
    assert forbidden(core.patch_node, "node-a", {"metadata": {"labels": {"owned": "yes"}}})
    assert forbidden(core.list_pod_for_all_namespaces)
    assert "s0" in kube.cluster_ips()  # the denied delete really changed nothing
