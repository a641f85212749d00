"""deploy/'s manifests are valid Kubernetes objects: the real API server accepts each one as
`kubectl apply --server-side -k deploy/` sends it, in a dry run (nothing is created); server-side apply
also refuses any field the schema does not declare, as kubectl's validation would."""
import yaml
from kubernetes.dynamic.exceptions import DynamicApiError
from kubernetes.dynamic import DynamicClient

from tests.kube.kubepair import REPO


def manifests() -> list[dict]:
    kustomization = yaml.safe_load((REPO / "deploy" / "kustomization.yaml").read_text())
    return [d for name in kustomization["resources"]
            for d in yaml.safe_load_all((REPO / "deploy" / name).read_text()) if d]


def dry_run_apply(kube, doc: dict):
    """Server-side apply, dry run: the object as the server would store it (nothing is stored)."""
    client = DynamicClient(kube.admin)
    resource = client.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
    return client.server_side_apply(resource, body=doc, name=doc["metadata"]["name"],
                                    namespace=doc["metadata"].get("namespace"), field_manager="kipvs-test",
                                    dry_run="All")


def test_every_manifest_is_accepted_by_the_api_server(kube):
    accepted = []
    for doc in manifests():
        obj = dry_run_apply(kube, doc)
        accepted.append((obj.kind, obj.metadata.name))
    assert sorted(accepted) == sorted((d["kind"], d["metadata"]["name"]) for d in manifests())
    assert ("DaemonSet", "kipvs") in accepted


def test_a_broken_manifest_is_refused_so_the_check_means_something(kube):
    daemonset = next(d for d in manifests() if d["kind"] == "DaemonSet")
    daemonset["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["mountpath"] = "/typo"
    try:
        dry_run_apply(kube, daemonset)
    except DynamicApiError as exc:  # server-side apply: "field not declared in schema"
        assert "mountpath" in str(exc.body) and "not declared in schema" in str(exc.body)
    else:
        raise AssertionError("the API server accepted an unknown field")
