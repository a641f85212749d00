"""Certificates for a throw-away kube-apiserver, made at start with the openssl command (EC P-256: fast).

A CA, the server's certificate for 127.0.0.1, an admin client certificate in `system:masters`
(the test's own identity) and the service-account signing key pair (tokens for kipvs's
ServiceAccount come from the real TokenRequest API, signed with it).
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

LEAF = """[req]
distinguished_name = dn
prompt = no
[dn]
{subject}
[ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = {usage}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
{san}
"""
CA = """[req]
distinguished_name = dn
prompt = no
x509_extensions = ext
[dn]
CN = kipvs-test-ca
[ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
"""


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path
    admin_cert: Path
    admin_key: Path
    sa_public: Path
    sa_private: Path


def _openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=30)
    if result.returncode:
        raise RuntimeError(f"openssl {' '.join(args)}: {result.stderr.strip()}")


def _key(path: Path) -> Path:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path))
    return path


def _leaf(directory: Path, name: str, subject: str, usage: str, san: str = "") -> tuple[Path, Path]:
    key = _key(directory / f"{name}.key")
    config = directory / f"{name}.cnf"
    config.write_text(LEAF.format(subject=subject, usage=usage, san=san))
    csr, cert = directory / f"{name}.csr", directory / f"{name}.crt"
    _openssl("req", "-new", "-key", str(key), "-config", str(config), "-out", str(csr))
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(directory / "ca.crt"), "-CAkey", str(directory / "ca.key"),
             "-CAcreateserial", "-days", "2", "-extfile", str(config), "-extensions", "ext", "-out", str(cert))
    return cert, key


def make_certificates(directory: Path, server_ips: tuple[str, ...] = ("127.0.0.1",)) -> Certificates:
    if not shutil.which("openssl"):
        raise RuntimeError("openssl not found: scripts/setup installs it (apt-get install openssl)")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca.cnf").write_text(CA)
    _openssl("req", "-x509", "-new", "-key", str(_key(directory / "ca.key")), "-config", str(directory / "ca.cnf"),
             "-days", "2", "-out", str(directory / "ca.crt"))
    server = _leaf(directory, "server", "CN = kube-apiserver", "serverAuth",
                   "subjectAltName = " + ",".join([f"IP:{ip}" for ip in server_ips] + ["DNS:localhost"]))
    admin = _leaf(directory, "admin", "O = system:masters\nCN = kipvs-test-admin", "clientAuth")
    sa_private = _key(directory / "sa.key")
    _openssl("pkey", "-in", str(sa_private), "-pubout", "-out", str(directory / "sa.pub"))
    return Certificates(directory / "ca.crt", *server, *admin, directory / "sa.pub", sa_private)
