"""The configuration file: one YAML document every command reads, and the copy `watch` leaves for the others.

    apiVersion: kipvs.io/v1alpha1
    kind: KipvsConfiguration
    interface: kube-dummy-if
    serviceExternalIpRange: [192.168.200.0/24]

Each key is an option's long name in camelCase (`--service-external-ip-range` is
`serviceExternalIpRange`); `kipvs config print` lists them all. Precedence (click's own order,
resolved once per command in kipvs.cli_options): flag > environment > file > default. This module
only reads, checks and writes files; it knows no option by name.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass

from kipvs.errors import ConfigError

API_VERSION = "kipvs.io/v1alpha1"
KIND = "KipvsConfiguration"
DEFAULT_CONFIG = "/etc/kipvs/config.yaml"
RUNTIME_DIR = "/run/kipvs"
# Where `watch` writes what it runs with, so that show, sync, cleanup and fix-routes on the same node
# (in its pod or on the host: the DaemonSet mounts the host's /run/kipvs) use the same by default.
EFFECTIVE_CONFIG = f"{RUNTIME_DIR}/effective-config.yaml"
EFFECTIVE_ENV = "KIPVS_EFFECTIVE_CONFIG"


def key_of(param_name: str) -> str:
    """`service_external_ip_range` -> `serviceExternalIpRange`."""
    first, *rest = param_name.split("_")
    return first + "".join(word.capitalize() for word in rest)


def effective_path() -> str:
    return os.environ.get(EFFECTIVE_ENV) or EFFECTIVE_CONFIG


@dataclass(frozen=True)
class ConfigFile:
    path: str
    values: dict  # key -> value as written (YAML types)
    note: str = ""  # said on stderr when the file was chosen for the user (watch's effective config)


def choose(explicit: str | None, is_watch: bool) -> tuple[str | None, str]:
    """The file to read and a note about why: `--config`/KIPVS_CONFIG when given ('' for none); else,
    for every command but watch, the effective configuration watch wrote on this node; else the
    default file when it exists."""
    if explicit is not None:
        return (explicit or None), ""
    if not is_watch and os.path.isfile(effective_path()):
        return effective_path(), (f"using the settings kipvs watch runs with on this node ({effective_path()}); "
                                  "--config to choose another")
    return (DEFAULT_CONFIG if os.path.isfile(DEFAULT_CONFIG) else None), ""


def load(path: str, known: set[str]) -> dict:
    """The file's settings by key; anything but a KipvsConfiguration with known keys is refused."""
    import yaml

    try:
        with open(path, encoding="utf-8") as handle:
            document = yaml.safe_load(handle)
    except OSError as exc:
        raise ConfigError(f"--config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"--config {path}:{where} not YAML ({getattr(exc, 'problem', None) or exc})") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigError(f"--config {path}: expected a mapping of settings, not {type(document).__name__}")
    kind, version = document.get("kind"), document.get("apiVersion")
    if kind == "KubeProxyConfiguration":
        raise ConfigError(f"--config {path}: a kube-proxy KubeProxyConfiguration; kipvs reads a {KIND} "
                          "(docs/migration.md maps each field)")
    if kind != KIND or version != API_VERSION:
        raise ConfigError(f"--config {path}: expected apiVersion: {API_VERSION} and kind: {KIND}, "
                          f"not {version!r} / {kind!r}")
    settings = {k: v for k, v in document.items() if k not in ("apiVersion", "kind")}
    for key in settings:
        if key not in known:
            raise ConfigError(f"--config {path}: unknown key {key!r} (`kipvs config print` lists the keys)")
    return settings


def render(rows: list[tuple[str, object, str]], header: str = "") -> str:
    """A configuration file from (key, value, where it came from) rows; the origin as a comment.

    Values are written as JSON, which YAML reads back exactly (quoted strings, lists, booleans)."""
    lines = [f"# {line}" for line in header.splitlines()] + [f"apiVersion: {API_VERSION}", f"kind: {KIND}"]
    width = max((len(key) for key, _, _ in rows), default=0)
    for key, value, origin in rows:
        text = f"{key}: {json.dumps(value)}"
        lines.append(f"{text:<{width + 20}}  # {origin}" if origin else text)
    return "\n".join(lines) + "\n"


def write_atomically(path: str, text: str) -> None:
    """Readers see the old file or the new one, never half of one (rename within the directory)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o755, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=".effective-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
