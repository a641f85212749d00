"""Every file kipvs reads may be hostile or broken: the cluster file, the drain record, the kubeconfig.

Each is read as a regular file only (a FIFO would block, a device never end), within a size bound, decoded
strictly and parsed with limits; a failure is one line (the drain record, a cache of clocks: a warning, and
it is rebuilt), never a traceback or a hang."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest

from kipvs.reconcile import load_record, sync_once
from kipvs.runner import Runner
from tests.unit.fakes import RecordingRunner, invoke
from tests.unit.test_hostile_input import assert_no_crash, cluster, sync
from tests.unit.test_lifecycle import (A, B, LIST, NODE3, OPTS, RECORD, ROLLING, VIP, _watch_syncs, listing, state)
from tests.unit.test_lifecycle import cluster as lifecycle_cluster
from tests.unit.k8s import ep

YAML_SERVICE = """kind: List
items:
- kind: Service
  metadata:
    name: web
    namespace: default
    {field}
  spec:
    clusterIP: 10.96.0.10
    ports:
    - port: 80
"""


def one_error_line(result, *needles):
    assert_no_crash(result)
    assert result.exit_code == 2, result.stderr
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("kipvs: error: "), result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    assert result.stdout == ""


@pytest.mark.parametrize("field,where", [
    ("creationTimestamp: 2023-02-30", "line 7, column 24"),
    ("creationTimestamp: 2023-02-03T25:61:61Z", "line 7, column 24"),
    ("annotations: {note: 2023-02-30}", "line 7, column 25"),
    ("labels:\n      big: " + "1" * 5000, "line 8, column 12"),
])
def test_yaml_values_python_cannot_build_are_one_line_naming_the_place(tmp_path, field, where):
    path = tmp_path / "c.yaml"
    path.write_text(YAML_SERVICE.format(field=field))
    one_error_line(sync(path), str(path), "not valid YAML", where, "kipvs can read")


def test_a_json_number_of_5000_digits_is_one_line(tmp_path):
    data = cluster()
    data["items"][0]["spec"]["ports"][0]["port"] = 7
    text = json.dumps(data).replace('"port": 7', '"port": ' + "9" * 5000)
    (tmp_path / "c.json").write_text(text)
    one_error_line(sync(tmp_path / "c.json"), "a number with more digits")


def test_a_fifo_a_device_and_dev_zero_are_refused_at_once(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # no writer: opening it for reading would block for ever
    one_error_line(sync(fifo), "a FIFO, not a regular file", "-f -")
    one_error_line(sync("/dev/zero"), "a character device, not a regular file")
    one_error_line(sync(tmp_path), "Is a directory")


def test_a_bad_size_limit_in_the_environment_is_one_line_not_an_import_error(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps(cluster()))
    one_error_line(sync(tmp_path / "c.json", env={"KIPVS_MAX_CLUSTER_FILE_BYTES": "64k"}),
                   "KIPVS_MAX_CLUSTER_FILE_BYTES '64k': expected a number of bytes")
    result = sync(tmp_path / "c.json", env={"KIPVS_MAX_CLUSTER_FILE_BYTES": "100"})
    one_error_line(result, "larger than 100 bytes")
    imported = subprocess.run([sys.executable, "-c", "import kipvs.sources.file, kipvs.cli"],
                              env={**os.environ, "KIPVS_MAX_CLUSTER_FILE_BYTES": "64k"}, capture_output=True, text=True)
    assert imported.returncode == 0 and imported.stderr == ""


@pytest.mark.parametrize("kind", ["fifo", "directory", "/dev/zero"])
def test_a_kubeconfig_that_is_no_regular_file_is_one_line(tmp_path, kind):
    path = tmp_path / "kubeconfig"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        path = "/dev/zero"
    result = invoke(["sync", "--dry-run", "--kubeconfig", str(path), "--node-name", "node3"],
                    lambda dry_run, timeout, out=None: RecordingRunner({}, dry_run=dry_run, out=out))
    one_error_line(result, f"kubeconfig {path}: ")


# --- the drain record: a cache of clocks, rebuilt whenever it is unusable -------------------------------

def corrupt_records(tmp_path):
    """(what, path) of every broken drain record kipvs must shrug off."""
    def written(name, data: bytes):
        (tmp_path / name).write_bytes(data)
        return str(tmp_path / name)

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "dir").mkdir()
    return [("a directory", str(tmp_path / "dir")), ("a FIFO", str(fifo)), ("/dev/zero", "/dev/zero"),
            ("binary", written("bin", bytes(range(256)))), ("not UTF-8", written("latin", b'{"\xe9": 1}')),
            ("a 400-digit number", written("big", b'{"TCP 10.96.0.10:80 172.20.1.2:8080": 1' + b"0" * 400 + b"}")),
            ("a 5,000-digit number", written("huge", b'{"x": ' + b"9" * 5000 + b"}")),
            ("deep nesting", written("deep", b"[" * 100000)), ("NaN", written("nan", b'{"x": NaN}')),
            ("a list", written("list", b"[1, 2]")), ("too large", written("large", b" " * (2 << 20)))]


def test_every_corrupt_drain_record_is_a_warning_and_counts_as_empty(tmp_path, caplog):
    for what, path in corrupt_records(tmp_path):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="kipvs"):
            assert load_record(Runner(), path) == {}, what
        assert len(caplog.records) == 1 and f"drain record {path}" in caplog.text, (what, caplog.text)
        assert "starting it again" in caplog.text or "grace period again" in caplog.text


def test_a_record_keeps_only_plausible_clocks(tmp_path, monkeypatch):
    monkeypatch.setattr("kipvs.reconcile.time.time", lambda: 1000.0)
    path = tmp_path / "record"
    path.write_text(json.dumps({"a": 900.0, "b": -1, "c": 10 ** 30, "d": True, "e": "900", "f": 1e308, "g": 950}))
    assert load_record(Runner(), str(path)) == {"a": 900.0, "g": 950.0}


def test_sync_drains_and_rebuilds_a_record_that_is_a_fifo(tmp_path, caplog):
    record = tmp_path / "record"
    os.mkfifo(record)

    class RealRecord(RecordingRunner):
        def read_file(self, path):
            return Runner.read_file(self, path) if path == str(record) else super().read_file(path)

    runner = RealRecord(state(**{LIST: listing(0, inactive_a=1)}), state(**{LIST: listing(0, 1, weight_a=0)}))
    options = OPTS.__class__(drain_record=str(record))
    with caplog.at_level(logging.WARNING, logger="kipvs"):
        result = sync_once(runner, lifecycle_cluster(ep(B, "node2")), NODE3, options)
    assert runner.applied_lines == [f"ipvsadm -e -t {VIP}:80 -r {A}:8080 -m -w 0"] and result.converged
    assert "a FIFO, not a regular file" in caplog.text
    assert list(json.loads(runner.written[str(record)])) == [f"TCP {VIP}:80 {A}:8080"]  # rebuilt


def test_watch_keeps_syncing_with_a_corrupt_record():
    drained = state().get("ipvsadm -S -n").replace(f"{A}:8080 -m -w 1", f"{A}:8080 -m -w 0")
    for text in ("[" * 100000, '{"x": ' + "9" * 5000 + "}", "\x00\xff garbage"):
        assert _watch_syncs(state(drained, **{LIST: listing(1, weight_a=0), f"read {RECORD}": text}), 0.6) >= 3
    assert ROLLING  # the loop's cluster: A terminating (draining), B serving


@pytest.mark.parametrize("kind", ["symlink", "fifo", "/dev/null"])
def test_the_lock_file_is_never_followed_through_a_symlink_nor_a_fifo_or_device(tmp_path, kind):
    from kipvs.errors import ConfigError
    from kipvs.lock import node_lock

    victim = tmp_path / "victim"
    victim.write_text("keep me")
    path = tmp_path / "lock"
    if kind == "symlink":
        path.symlink_to(victim)
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path = "/dev/null"
    with pytest.raises(ConfigError, match="symbolic link|not a regular file"):
        with node_lock(str(path), 0):
            pass
    assert victim.read_text() == "keep me"


def test_yaml_integers_too_long_to_print_are_named_by_their_size(tmp_path):
    """YAML's hex form builds an integer of any size, which str() refuses past 4,300 digits: the problem line
    gives its size (before, the message itself raised)."""
    huge = "0x" + "f" * 6000
    path = tmp_path / "c.yaml"
    path.write_text(YAML_SERVICE.format(field="").replace("    - port: 80", f"    - port: {huge}\n    - [{huge}]")
                    + "- kind: EndpointSlice\n  metadata: {name: web-x, labels: {kubernetes.io/service-name: web}}\n"
                      "  addressType: IPv4\n  endpoints: []\n- kind: Node\n  metadata: {name: node3}\n")
    result = sync(path, "--node-ip", "192.168.123.249")
    assert_no_crash(result)
    assert result.exit_code == 0, result.stderr
    assert "spec.ports[0].port: an integer of 24000 bits is not a port (1-65535)" in result.stderr
    assert "spec.ports[1]: expected a port, got 'list" in result.stderr


@pytest.mark.parametrize("told,holds,limit", [(10, 10, 100), (10, 25, 100), (25, 10, 100), (0, 30, 100),
                                              (10, 150, 100), (150, 150, 100), (10, 3 << 20, 5 << 20)])
def test_a_file_is_read_whole_and_bounded_whatever_size_it_claimed(told, holds, limit):
    """A regular file is read in one call of its stat size (+1, to see it grew); a file that grew or shrank
    since is still read whole, and never more than the bound + 1."""
    import io

    from kipvs.bounded_read import read_chunks
    data = (bytes(range(256)) * (holds // 256 + 1))[:holds]
    source, calls = io.BytesIO(data), []
    assert read_chunks(lambda n: calls.append(n) or source.read(n), limit, told) == data[:limit + 1]
    if told == holds <= limit:
        assert len(calls) == 2 and calls[0] == told + 1  # it all, then its end: no chunks to join
