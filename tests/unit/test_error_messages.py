"""Each error names the file, path or value it tried and the fix that applies (never the flag just given)."""
import json

from tests.unit.fakes import RecordingRunner, invoke
from tests.unit.kernel_states import node_state


def factory(dry_run, timeout, out=None):
    return RecordingRunner(node_state(dummy_ips=("10.96.0.10",)), dry_run=dry_run, out=out)


def test_a_mistyped_kubeconfig_is_named_and_told_apart_from_none_at_all(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    result = invoke(["sync", "--dry-run", "--node-name", "node3", "--kubeconfig", str(tmp_path / "confg")], factory)
    assert result.exit_code == 2
    assert f"kubeconfig {tmp_path / 'confg'} (--kubeconfig or KUBECONFIG) does not exist" in result.stderr
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr("kubernetes.config.KUBE_CONFIG_DEFAULT_LOCATION", "~/.kube/config")
    result = invoke(["sync", "--dry-run", "--node-name", "node3"], factory)
    assert result.exit_code == 2
    assert f"no Kubernetes client configuration: not in a pod (no in-cluster service account) and no " \
           f"{tmp_path}/.kube/config; pass --kubeconfig FILE, or --cluster-file" in result.stderr


def test_an_unreachable_api_server_says_why_without_urllib3_reprs(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1", "insecure-skip-tls-verify": True}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}], "users": [{"name": "u", "user": {}}]}))
    result = invoke(["sync", "--dry-run", "--node-name", "node3", "--kubeconfig", str(kubeconfig)], factory)
    assert result.exit_code == 2
    assert result.stderr.strip() == ("kipvs: error: API server https://127.0.0.1:1 unreachable: Failed to establish "
                                     "a new connection: [Errno 111] Connection refused")


def test_a_wrong_node_name_lists_the_nodes_found():
    result = invoke(["sync", "--dry-run", "-f", "examples/cluster.yaml", "--node-name", "nodee3"], factory)
    assert result.exit_code == 2
    assert result.stderr.strip() == ("kipvs: error: examples/cluster.yaml: no Node named 'nodee3' (--node-name, "
                                     "default the hostname); Nodes found: node1, node2, node3: pass --node-name "
                                     "with one of them")
    assert "--allow-partial" not in result.stderr


def test_fix_routes_never_suggests_the_interface_it_was_given():
    def bare(dry_run, timeout, out=None):
        return RecordingRunner(node_state(), dry_run=dry_run, out=out)  # no dummy interface at all
    result = invoke(["fix-routes", "--interface", "kube-ipvs0"], bare)
    assert result.exit_code == 2 and "interface kube-ipvs0 does not exist on this node" in result.stderr
    assert "--interface kube-ipvs0" not in result.stderr and "--interface kube-dummy-if" in result.stderr
    result = invoke(["fix-routes", "--interface", "kube-ipvs0"], factory)  # kube-dummy-if is there
    assert result.stderr.strip().endswith("its dummy interfaces: kube-dummy-if: pass --interface kube-dummy-if")


def test_the_readmes_first_command_warns_only_about_the_broken_service_and_the_missing_pod_cidrs():
    from tests.unit.test_sync_command import NoIPVSRunner

    def no_ipvs(dry_run, timeout, out=None):
        saves = {f"{tool}-{backend}-save": "" for tool in ("iptables", "ip6tables") for backend in ("nft", "legacy")}
        return NoIPVSRunner({**node_state(), **saves, "ipset save": ""}, dry_run=dry_run, out=out)
    result = invoke(["sync", "--dry-run", "--cluster-file", "examples/cluster.yaml", "--node-name", "node3",
                     "--service-external-ip-range", "192.168.200.0/24", "--loadbalancer-ip-range",
                     "192.168.201.0/24"], no_ipvs)
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("kipvs: WARNING: cannot read the kernel")
    # The example's Nodes carry no spec.podCIDRs (so that the demo's #376 hang is not hidden by SNAT): said once.
    assert lines[1].startswith("kipvs: WARNING: --detect-local-mode NodeCIDR: the Node has no spec.podCIDRs")
    assert [line.split(":")[2].strip() for line in lines[2:-1]] == ["problem", "problem"]
    assert all("Service default/broken" in line for line in lines[2:-1]) and lines[-1].startswith("sync: ")
    assert "ERROR" not in result.stderr
