"""Network programming latency (kube-proxy's SLI): the EndpointSlice annotation's values as the
EndpointSlice controller writes them (and malformed ones: ignored, one line, no crash), which
changes a sync times, and the histogram they land in."""
import json
import logging
import threading
import time

import pytest

from kipvs.metrics import PROGRAMMING_BUCKETS, Metrics
from kipvs.programming_latency import ANNOTATION, latencies, parse_rfc3339, trigger_time
from kipvs.sources.reflector import Reflector, Resource

# 2026-12-07T02:49:09Z
BASE = 1796611749.0


@pytest.mark.parametrize("text, expected", [
    ("2026-12-07T02:49:09Z", BASE),  # what time.RFC3339 writes
    ("2026-12-07T02:49:09.123456789Z", BASE + 0.123456789),  # RFC3339Nano, as the controller writes it
    ("2026-12-07T02:49:09.5Z", BASE + 0.5),
    ("2026-12-07t02:49:09z", BASE),
    ("2026-12-07T03:49:09+01:00", BASE),
    ("2026-12-07T00:19:09.25-02:30", BASE + 0.25),
])
def test_rfc3339_as_the_endpointslice_controller_writes_it(text, expected):
    assert parse_rfc3339(text) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("value", [
    "", "yesterday", "2026-12-07", "2026-12-07 02:49:09Z", "2026-13-07T02:49:09Z", "2026-02-30T02:49:09Z",
    "2026-12-07T25:49:09Z", "2026-12-07T02:49:09", "2026-12-07T02:49:09.Z", "2026-12-07T02:49:09.1234567890Z",
    "2026-12-07T02:49:09+24:00", "2026-12-07T02:49:09Z ", "１２３４-12-07T02:49:09Z", 1796611749, None, ["x"], {"a": 1},
])
def test_a_malformed_annotation_is_ignored_with_one_line_naming_the_slice(value, caplog):
    obj = {"metadata": {"namespace": "web", "name": "web-abc", "annotations": {ANNOTATION: value}}}
    with caplog.at_level(logging.WARNING, logger="kipvs.metrics"):
        assert trigger_time(obj) is None
    if value is not None:
        assert len(caplog.records) == 1
        assert "EndpointSlice web/web-abc" in caplog.text and ANNOTATION in caplog.text


@pytest.mark.parametrize("obj", [{}, {"metadata": None}, {"metadata": {"annotations": None}},
                                 {"metadata": {"annotations": ["x"]}}, {"metadata": {"annotations": {}}}])
def test_a_slice_without_the_annotation_is_not_timed(obj, caplog):
    assert trigger_time(obj) is None and not caplog.records


def slice_event(kind, name, stamp, rv):
    annotations = {ANNOTATION: stamp} if stamp is not None else {}
    return {"type": kind, "object": {"metadata": {"namespace": "web", "name": name, "resourceVersion": rv,
                                                  "annotations": annotations}, "endpoints": []}}


def stamp(unix: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(unix)) + f".{int(unix % 1 * 1e9):09d}Z"


def test_the_reflector_keeps_each_change_trigger_until_drained_but_not_a_deleted_slice_s_nor_older_ones():
    reflector = Reflector(Resource("EndpointSlice", "discovery.k8s.io/v1", None, trigger_time=trigger_time),
                          lambda kind: None, threading.Event())
    started = reflector.started
    for event in (slice_event("ADDED", "a", stamp(started + 1), "2"),
                  slice_event("MODIFIED", "a", stamp(started + 2), "3"),  # both of a's changes are timed
                  slice_event("ADDED", "b", stamp(started - 60), "4"),  # triggered before kipvs watched
                  slice_event("ADDED", "c", "not a time", "5"),  # malformed: ignored
                  slice_event("ADDED", "d", None, "6"),  # no annotation (a slice a controller did not write)
                  slice_event("ADDED", "e", stamp(started + 3), "7"),
                  slice_event("DELETED", "e", stamp(started + 3), "8")):  # its annotation dates from its update
        reflector._apply(json.loads(json.dumps(event)))
    drained = reflector.drain()
    assert drained.trigger_times == pytest.approx([started + 1, started + 2], abs=1e-6)
    assert set(drained.changed) == {("web", n) for n in "abcde"}
    assert reflector.drain().trigger_times == []


def test_latencies_go_to_kube_proxy_s_buckets():
    assert PROGRAMMING_BUCKETS[:3] == (0.25, 0.5, 1) and PROGRAMMING_BUCKETS[-1] == 300
    assert len(PROGRAMMING_BUCKETS) == 2 + 59 + 12 + 7  # kube-proxy's MergeBuckets of four linear ranges
    assert latencies([90.0, 99.8, 100.5], 100.0) == pytest.approx([10.0, 0.2, 0.0])  # a clock ahead: 0
    metrics = Metrics()
    metrics.observe_programmed([BASE - 0.2, BASE - 0.7, BASE - 61, BASE + 2], BASE)
    value = metrics.registry.get_sample_value
    name = "kipvs_network_programming_duration_seconds"
    assert value(f"{name}_count") == 4
    assert value(f"{name}_sum") == pytest.approx(0.2 + 0.7 + 61)
    assert value(f"{name}_bucket", {"le": "0.25"}) == 2  # 0.2 s and the clock-ahead 0
    assert value(f"{name}_bucket", {"le": "1.0"}) == 3
    assert value(f"{name}_bucket", {"le": "60.0"}) == 3 and value(f"{name}_bucket", {"le": "65.0"}) == 4
