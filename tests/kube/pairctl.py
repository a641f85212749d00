"""A real etcd + kube-apiserver for the lab's watch test, driven over a unix socket.

The lab's node namespaces are not reachable from the guest's root namespace, where the test runs,
so the test starts this inside node1's namespace (`ip netns exec node1 ...`) and writes through
the control socket (`control()` below): apply, delete, kill_apiserver. kipvs gets a kubeconfig for
the server's address.

    python -m tests.kube.pairctl --host 192.168.123.250 --port 6443 --control SOCK --kubeconfig OUT \\
        --workdir DIR --service-cidr 10.254.0.0/16,fd00:254::/112 --load examples/cluster.yaml
"""
from __future__ import annotations

import argparse
import json
import signal
import socket
import socketserver
import sys
from pathlib import Path

import yaml
from kubernetes.client.exceptions import ApiException

from tests.kube import writes
from tests.kube.kubepair import KubePair, api_client_from


class PairControl:
    """What the control socket can ask: the fake's `apply`/`delete` requests, and `kill_apiserver`."""

    def __init__(self, pair: KubePair, admin):
        self.pair, self.admin = pair, admin

    def control(self, request: dict):
        op = request["op"]
        if op == "apply":
            return writes.apply(self.admin, request["object"])
        if op == "delete":
            return writes.delete(self.admin, request["kind"], request["name"], request.get("namespace", "default"))
        if op == "kill_apiserver":
            return self.pair.kill_apiserver()
        if op == "service_account":
            return self.service_account(request["manifest"])
        raise ValueError(f"unknown op {op}")


    def service_account(self, manifest: str) -> dict:
        """Create the objects of an RBAC manifest (deploy/rbac.yaml) and mint its ServiceAccount a token with
        the TokenRequest API: what the kubelet mounts into the pod, token and CA, as the pod would see them."""
        from kubernetes import client, utils

        docs = [d for d in yaml.safe_load_all(open(manifest)) if d]
        for doc in docs:
            utils.create_from_dict(self.admin, doc)
        account = next(d for d in docs if d["kind"] == "ServiceAccount")["metadata"]
        token = client.CoreV1Api(self.admin).create_namespaced_service_account_token(
            account["name"], account["namespace"], {"spec": {"expirationSeconds": 3600}}).status.token
        return {"token": token, "ca": Path(self.pair.certs.ca).read_text(), "namespace": account["namespace"]}


class ControlHandler(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            try:
                result = {"ok": True, "result": self.server.target.control(json.loads(line))}
            except Exception as exc:  # report to the caller, keep serving
                result = {"ok": False, "error": f"{type(exc).__name__}: {getattr(exc, 'body', None) or exc}"}
            self.wfile.write(json.dumps(result).encode() + b"\n")


class ControlServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, target: PairControl):
        self.target = target
        super().__init__(path, ControlHandler)


def control(path: str, **request):
    """Client side of the control socket (the lab test, in the guest's root namespace)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(path)
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    reply = json.loads(data)
    if not reply["ok"]:
        raise RuntimeError(reply["error"])
    return reply["result"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--control", required=True)
    parser.add_argument("--kubeconfig", required=True, help="written for kipvs: the admin identity")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--service-cidr", required=True)
    parser.add_argument("--binaries", required=True)
    parser.add_argument("--load", help="a kubectl List to start with; objects the server rejects are reported")
    args = parser.parse_args()
    pair = KubePair(Path(args.workdir), Path(args.binaries), args.host, args.port, args.service_cidr)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # run the finally below: no orphaned servers
    try:
        pair.start()
        admin = api_client_from(pair.kubeconfig(Path(args.workdir) / "admin.kubeconfig"))
        for obj in (yaml.safe_load(open(args.load))["items"] if args.load else []):
            try:
                writes.apply(admin, obj)
            except ApiException as exc:  # e.g. the example's deliberately invalid Service: the server says no
                print(f"pairctl: {obj['kind']} {obj['metadata']['name']} rejected: {exc.status} {exc.reason}",
                      file=sys.stderr)
        pair.kubeconfig(Path(args.kubeconfig))
        server = ControlServer(args.control, PairControl(pair, admin))
        print("ready", flush=True)
        server.serve_forever()
    finally:
        pair.stop()


if __name__ == "__main__":
    main()
