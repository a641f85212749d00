"""A real etcd + kube-apiserver on loopback for the kube tests (what controller-runtime's envtest does).

Binaries come from scripts/kube-binaries (built once from the Go modules, cached outside the
checkout). Each start gets free ports, a temporary data dir and fresh certificates; the API
server runs with RBAC authorization and service-account tokens, so kipvs's own identity can be
tested. Faults the tests need from the real thing: `compact()` (etcd's own compaction, through
etcd's JSON gateway), `kill_apiserver()` / `start_apiserver()` on the same port, data kept.
"""
from __future__ import annotations

import base64
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.kube.certs import Certificates, make_certificates

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 180  # a cold API server bootstraps in ~10 s on 2 busy cores; in the UML guest it took over 90 s once
SERVICE_CIDR = "10.96.0.0/12"


def binaries_dir() -> Path:
    """KIPVS_KUBE_BINARIES if set (scripts/test exports it), else whatever scripts/kube-binaries builds or reuses."""
    given = os.environ.get("KIPVS_KUBE_BINARIES")
    if given:
        return Path(given)
    result = subprocess.run([str(REPO / "scripts" / "kube-binaries")], capture_output=True, text=True, timeout=3600)
    if result.returncode:
        raise RuntimeError(f"scripts/kube-binaries failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


def api_client_from(kubeconfig: Path | str):
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    return client.ApiClient(configuration)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class KubePair:
    """`host`/`port`: where the API server listens (the lab puts it on a node's address); etcd stays on loopback."""

    def __init__(self, workdir: Path, binaries: Path | None = None, host: str = "127.0.0.1", port: int | None = None,
                 service_cidr: str = SERVICE_CIDR):
        self.workdir = workdir
        self.binaries = binaries or binaries_dir()
        self.host, self.service_cidr = host, service_cidr
        self.etcd_port, self.peer_port, self.port = free_port(), free_port(), port or free_port()
        self.certs: Certificates | None = None
        self.etcd: subprocess.Popen | None = None
        self.apiserver: subprocess.Popen | None = None
        self.apiserver_starts = 0

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.etcd_port}"

    # --- life cycle ---

    def start(self) -> "KubePair":
        for name in ("etcd", "kube-apiserver"):
            if not os.access(self.binaries / name, os.X_OK):
                raise RuntimeError(f"{self.binaries / name} missing: run scripts/kube-binaries")
        self.certs = make_certificates(self.workdir / "pki", tuple(dict.fromkeys(("127.0.0.1", self.host))))
        self._start_etcd()
        self.start_apiserver()
        return self

    def stop(self) -> None:
        self.kill_apiserver()  # throw-away data: no graceful drain of its watches needed
        if self.etcd and self.etcd.poll() is None:
            self.etcd.terminate()
            try:
                self.etcd.wait(10)
            except subprocess.TimeoutExpired:
                self.etcd.kill()
                self.etcd.wait(10)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _start_etcd(self) -> None:
        peer = f"http://127.0.0.1:{self.peer_port}"
        log = open(self.workdir / "etcd.log", "ab")
        self.etcd = subprocess.Popen(
            [str(self.binaries / "etcd"), "--name=default", f"--data-dir={self.workdir / 'etcd'}",
             f"--listen-client-urls={self.etcd_url}", f"--advertise-client-urls={self.etcd_url}",
             f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
             f"--initial-cluster=default={peer}", "--unsafe-no-fsync", "--log-level=warn"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready("etcd", self.etcd, self.workdir / "etcd.log",
                         lambda: json.loads(self._etcd_get("/health")).get("health") == "true")

    def start_apiserver(self) -> None:
        certs = self.certs
        # From 1.37 a loopback advertise address is refused for the endpoint reconciler (the `kubernetes`
        # Service would send every client to its own loopback); on loopback that Service gets no endpoints.
        reconciler = ["--endpoint-reconciler-type=none"] if ipaddress.ip_address(self.host).is_loopback else []
        log = open(self.workdir / "kube-apiserver.log", "ab")
        self.apiserver = subprocess.Popen(
            [str(self.binaries / "kube-apiserver"), f"--etcd-servers={self.etcd_url}",
             f"--bind-address={self.host}", f"--advertise-address={self.host}", f"--secure-port={self.port}",
             f"--tls-cert-file={certs.server_cert}", f"--tls-private-key-file={certs.server_key}",
             f"--client-ca-file={certs.ca}", "--authorization-mode=RBAC",
             "--allow-privileged=true",  # as kubeadm runs it: deploy/daemonset.yaml's privileged pod is valid
             "--service-account-issuer=https://kubernetes.default.svc",
             f"--service-account-key-file={certs.sa_public}", f"--service-account-signing-key-file={certs.sa_private}",
             f"--service-cluster-ip-range={self.service_cidr}", f"--cert-dir={self.workdir / 'apiserver-certs'}",
             # Compaction happens when a test says so (compact()), never behind its back.
             "--etcd-compaction-interval=0", "--profiling=false", "--v=1", *reconciler],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.apiserver_starts += 1
        self._wait_ready("kube-apiserver", self.apiserver, self.workdir / "kube-apiserver.log",
                         lambda: self._apiserver_get("/readyz") == "ok")

    def kill_apiserver(self) -> None:
        """SIGKILL: no graceful goodbye to open watches, as when a control-plane node dies."""
        if self.apiserver and self.apiserver.poll() is None:
            os.killpg(self.apiserver.pid, signal.SIGKILL)
            self.apiserver.wait(10)

    def _wait_ready(self, name: str, proc: subprocess.Popen, log: Path, ready) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        last = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{_tail(log)}")
            try:
                if ready():
                    return
            except (OSError, ValueError) as exc:
                last = exc
            time.sleep(0.2)
        raise RuntimeError(f"{name} not ready after {START_TIMEOUT}s ({last}):\n{_tail(log)}")

    # --- HTTP to the pair, stdlib only ---

    def _etcd_get(self, path: str) -> str:
        with urllib.request.urlopen(self.etcd_url + path, timeout=5) as response:
            return response.read().decode()

    def _etcd_post(self, path: str, body: dict) -> dict:
        request = urllib.request.Request(self.etcd_url + path, json.dumps(body).encode(),
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def _apiserver_get(self, path: str) -> str:
        context = ssl.create_default_context(cafile=str(self.certs.ca))
        context.load_cert_chain(str(self.certs.admin_cert), str(self.certs.admin_key))
        with urllib.request.urlopen(self.url + path, timeout=5, context=context) as response:
            return response.read().decode()

    def counts(self, counter: str, *labels: str, text: str | None = None) -> dict[tuple, int]:
        """A counter of this API server's own /metrics (read as the admin, or given as `text`), every
        client's since it started, summed by the values of `labels`."""
        from prometheus_client.parser import text_string_to_metric_families

        totals: dict[tuple, int] = {}
        for family in text_string_to_metric_families(text or self._apiserver_get("/metrics")):
            for sample in family.samples:
                if sample.name == counter:
                    key = tuple(sample.labels.get(label, "") for label in labels)
                    totals[key] = totals.get(key, 0) + int(sample.value)
        return totals

    def request_counts(self) -> dict[tuple, int]:
        """Requests from clients by (verb, resource): apiserver_request_total less apiserver_selfrequest_total
        (the server's own loops, such as its NodePort repair listing every Service each 3 minutes), both
        from one reading. A watch counts when it ends."""
        text = self._apiserver_get("/metrics")
        own = self.counts("apiserver_selfrequest_total", "verb", "resource", text=text)
        return {key: n - own.get(key, 0)
                for key, n in self.counts("apiserver_request_total", "verb", "resource", text=text).items()}

    def list_requests(self) -> dict[str, int]:
        """LIST requests from clients since the API server started, by resource."""
        return {resource: n for (verb, resource), n in self.request_counts().items() if verb == "LIST"}

    def cache_lists(self) -> dict[str, int]:
        """Lists its watch cache served (apiserver_cache_list_total, the server's own lists included), by resource."""
        return {resource: n for (resource,), n in self.counts("apiserver_cache_list_total", "resource").items()}

    # --- faults ---

    def etcd_revision(self) -> int:
        reply = self._etcd_post("/v3/kv/range", {"key": base64.b64encode(b"/").decode()})
        return int(reply["header"]["revision"])

    def compact(self) -> int:
        """Compact etcd's history up to now (what the API server does every 5 min by default)."""
        revision = self.etcd_revision()
        self._etcd_post("/v3/kv/compaction", {"revision": str(revision), "physical": True})
        return revision

    # --- clients ---

    def kubeconfig(self, path: Path, token: str | None = None, server: str | None = None) -> Path:
        """The admin's (client certificate in system:masters) or, with `token`, a service account's."""
        user = {"token": token} if token else {"client-certificate": str(self.certs.admin_cert),
                                               "client-key": str(self.certs.admin_key)}
        config = {"apiVersion": "v1", "kind": "Config", "current-context": "test",
                  "clusters": [{"name": "test", "cluster": {"server": server or self.url,
                                                            "certificate-authority": str(self.certs.ca)}}],
                  "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
                  "users": [{"name": "test", "user": user}]}
        path.write_text(json.dumps(config))
        return path
