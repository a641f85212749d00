"""The reflector's requests, step by step, against a scripted API: which resourceVersion each LIST and
WATCH asks for. The real kube-apiserver's counts are in tests/kube/test_api_load.py; this covers the
answers it cannot be made to give on demand (an ERROR event of each wording, a cache behind the version)."""
import json
import threading

import pytest
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import ProtocolError

from kipvs.sources.reflector import Backoff, Reflector, Resource


class Page:
    def __init__(self, rv, *names):
        self.data = json.dumps({"metadata": {"resourceVersion": rv},
                                "items": [svc(name, rv) for name in names]}).encode()


class Stream:
    """A watch response: these events, then a clean end or `cut` raised mid-stream."""

    def __init__(self, *events, cut=None):
        self.events, self.cut = events, cut

    def stream(self, amt, decode_content):
        for event in self.events:
            yield json.dumps(event).encode() + b"\n"
        if self.cut:
            raise self.cut

    def release_conn(self):
        pass


def svc(name, rv):
    return {"metadata": {"namespace": "default", "name": name, "resourceVersion": rv}}


def event(kind, name, rv):
    return {"type": kind, "object": svc(name, rv)}


def bookmark(rv):
    return {"type": "BOOKMARK", "object": {"kind": "Service", "metadata": {"resourceVersion": rv}}}


def run(*steps):
    """Run a reflector through the scripted answers; returns (reflector, the calls' keyword arguments)."""
    stop = threading.Event()
    script, calls = list(steps), []

    def list_call(**kwargs):
        calls.append(kwargs)
        if not script:
            stop.set()
            raise RuntimeError("end of script")
        step = script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    reflector = Reflector(Resource("Service", "v1", list_call), lambda kind: None, stop,
                          backoff=Backoff(initial=0.001, cap=0.002))
    reflector.run()
    return reflector, calls


def requests(calls):
    """(LIST or WATCH, resourceVersion asked, its match) per call."""
    return [("WATCH" if c.get("watch") else "LIST", c.get("resource_version"), c.get("resource_version_match"))
            for c in calls]


def test_a_cut_stream_resumes_from_the_last_event_or_bookmark_without_listing():
    reflector, calls = run(Page("10", "a"),
                           Stream(event("ADDED", "b", "11"), bookmark("15"), cut=ProtocolError("connection reset")),
                           Stream(event("MODIFIED", "b", "16")),  # ends as the server's timeout ends it
                           Stream(cut=ProtocolError("connection reset")))
    assert requests(calls) == [("LIST", "0", "NotOlderThan"), ("WATCH", "10", None), ("WATCH", "15", None),
                               ("WATCH", "16", None), ("WATCH", "16", None)]
    assert all(c["allow_watch_bookmarks"] for c in calls if c.get("watch"))
    assert reflector.stats.lists == 1 and reflector.stats.relists_410 == 0
    assert sorted(key[1] for key in reflector.cache) == ["a", "b"]


@pytest.mark.parametrize("status", [
    {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old resource version: 12 (40)"},
    {"kind": "Status", "reason": "Gone"},
    {"kind": "Status", "message": "too old resource version: 12 (40)"}])
def test_an_expired_watch_relists_not_older_than_what_was_seen_and_notices_deletions(status):
    reflector, calls = run(Page("10", "a", "b"), Stream(event("DELETED", "b", "12"), {"type": "ERROR", "object": status}),
                           Page("40"), Stream())
    assert requests(calls)[:4] == [("LIST", "0", "NotOlderThan"), ("WATCH", "10", None),
                                   ("LIST", "12", "NotOlderThan"), ("WATCH", "40", None)]
    assert reflector.stats.relists_410 == 1 and reflector.stats.lists == 2
    assert reflector.cache == {} and reflector.drain().relisted


def test_a_410_answer_to_the_watch_request_itself_relists():
    reflector, calls = run(Page("10"), ApiException(status=410, reason="Gone"), Page("20"), Stream())
    assert requests(calls)[:4] == [("LIST", "0", "NotOlderThan"), ("WATCH", "10", None),
                                   ("LIST", "10", "NotOlderThan"), ("WATCH", "20", None)]


def test_a_cache_behind_the_version_or_an_expired_continue_token_makes_the_next_list_consistent():
    behind = ApiException(status=504, reason="Timeout")
    behind.body = json.dumps({"kind": "Status", "code": 504, "reason": "Timeout", "message": "Too large resource "
                              "version: 12, current: 11", "details": {"causes": [{"reason": "ResourceVersionTooLarge"}]}})
    gone = ApiException(status=410, reason="Gone")
    reflector, calls = run(Page("10"), Stream({"type": "ERROR", "object": {"code": 410}}),
                           behind, Page("30"), Stream({"type": "ERROR", "object": {"code": 410}}),
                           gone, Page("50"), Stream())
    assert requests(calls)[:8] == [
        ("LIST", "0", "NotOlderThan"), ("WATCH", "10", None),
        ("LIST", "10", "NotOlderThan"), ("LIST", None, None), ("WATCH", "30", None),  # then the latest state
        ("LIST", "30", "NotOlderThan"), ("LIST", None, None), ("WATCH", "50", None)]
    assert reflector.stats.lists == 3 and reflector.stats.errors >= 1


def test_other_watch_errors_back_off_and_resume_without_listing():
    reflector, calls = run(Page("10"), Stream({"type": "ERROR", "object": {"code": 500, "message": "etcd hiccup"}}),
                           ApiException(status=429, reason="Too Many Requests"), Stream())
    assert requests(calls)[:4] == [("LIST", "0", "NotOlderThan"), ("WATCH", "10", None), ("WATCH", "10", None),
                                   ("WATCH", "10", None)]
    assert reflector.stats.errors >= 2 and reflector.stats.lists == 1
