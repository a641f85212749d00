"""What kipvs costs the API server, counted by the real kube-apiserver itself (its
apiserver_request_total{verb="LIST"} less its own loops' apiserver_selfrequest_total, on /metrics):
a dropped watch stream resumes from the last resourceVersion (no LIST); only a 410 Gone makes a
reflector list again, once.

While a count is measured the test itself never lists (it waits on the node's kernel, knowing the
cluster IPs from its own writes): the counter is every client's."""
import dataclasses
import time

from tests.kube.conftest import FAST, NAMESPACE, start_watcher, through
from tests.kube.test_watch import seed, service

RESOURCES = ("services", "endpointslices", "nodes")


def lists_since(pair, before: dict, read=None) -> dict:
    after = (read or pair.list_requests)()
    return {r: after.get(r, 0) - before.get(r, 0) for r in RESOURCES}


def add_service(kube, i) -> str:
    """Service s<i> and its slice; returns the cluster IP the server gave it."""
    created, slice_ = service(i)
    vip = kube.apply(created)["spec"]["clusterIP"]
    kube.apply(slice_)
    return vip


def wait_programmed(run, vips, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        programmed = {vip for (_, vip, _) in run.kernel.services}
        if set(vips) <= programmed and not run.watcher.dirty.is_set():
            return
        time.sleep(0.05)
    raise AssertionError(f"not programmed within {seconds}s: {set(vips) - programmed}")


def wait_all_watching(reflectors, since: dict, seconds=15):
    """Until every reflector has a watch stream open that started after `since` (reflector -> count)."""
    deadline = time.monotonic() + seconds
    while any(r.stats.watches <= since[r] for r in reflectors):
        if time.monotonic() > deadline:
            raise AssertionError(f"watches not reopened: {[(r.resource.kind, r.stats) for r in reflectors]}")
        time.sleep(0.01)


def test_twenty_stream_cuts_cause_no_list(kube, pair, proxy):
    seed(kube)
    run = start_watcher(kube, through(kube, proxy))
    try:
        run.wait_converged()
        reflectors = run.watcher.reflectors
        before = pair.list_requests()
        vips = []
        for i in range(20):
            wait_all_watching(reflectors, {r: r.stats.watches - 1 for r in reflectors})
            opened = {r: r.stats.watches for r in reflectors}
            vips.append(add_service(kube, 20 + i))  # written just before the cut: delivered before or after it
            proxy.drop()
            wait_all_watching(reflectors, opened)
        wait_programmed(run, vips)
        assert lists_since(pair, before) == {r: 0 for r in RESOURCES}
        assert [r.stats.lists for r in reflectors] == [1, 1, 1]
        assert all(r.stats.watches >= 21 for r in reflectors), [r.stats for r in reflectors]
        run.wait_converged()  # and nothing was missed (this check lists: after the count)
    finally:
        run.stop()


def test_compaction_and_restart_cause_one_list_per_resource(kube, pair, proxy):
    """The watchers' resourceVersion is compacted away and the restarted server's cache starts after it:
    each reflector gets a real 410 and lists once, from the watch cache, not older than what it had."""
    settings = dataclasses.replace(FAST, watch_timeout=3, read_grace=30)  # the stall below is no read timeout
    run = start_watcher(kube, through(kube, proxy), settings)
    try:
        seed(kube, count=6)
        run.wait_converged()
        ips = kube.cluster_ips()
        proxy.stall(True)  # hold what the server sends, until every open watch has ended on its side
        time.sleep(settings.watch_timeout + 1)
        for i in range(3):
            kube.delete("Service", f"s{i}")
        vip = add_service(kube, 9)
        pair.compact()
        pair.kill_apiserver()
        pair.start_apiserver()
        before, cached = pair.list_requests(), pair.cache_lists()  # its own start-up lists are not kipvs's
        proxy.stall(False)
        wait_programmed(run, [vip])
        deadline = time.monotonic() + 15
        while {v for (_, v, _) in run.kernel.services} & {ips[f"s{i}"] for i in range(3)}:
            assert time.monotonic() < deadline, "deleted Services still programmed"
            time.sleep(0.05)
        # The Services' reflector may be back before the others: count once every one has listed again.
        deadline = time.monotonic() + 40
        while [r.stats.lists for r in run.watcher.reflectors] != [2, 2, 2] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lists_since(pair, before) == {r: 1 for r in RESOURCES}
        assert lists_since(pair, cached, pair.cache_lists) == {r: 1 for r in RESOURCES}  # from the watch cache
        assert [r.stats.relists_410 for r in run.watcher.reflectors] == [1, 1, 1]
        assert [r.stats.lists for r in run.watcher.reflectors] == [2, 2, 2]
    finally:
        run.stop()


def test_the_api_load_benchmark_runs_against_the_session_s_server(kube, pair, tmp_path):
    """benchmarks/bench_api.py in seconds (its real runs take a watch timeout per window): it prints
    its rows, and every stream cut at once costs no LIST."""
    from benchmarks import bench_api

    lines = []
    try:
        cut = bench_api.run(pair, watchers=2, services=2, endpoints=2, seconds=2.0,
                            settings=dataclasses.replace(FAST, watch_timeout=1), workdir=tmp_path,
                            namespace=NAMESPACE, out=lines.append)
    finally:
        kube.core.delete_node(bench_api.NODE)
    assert lines[0].startswith("API load: kube-apiserver v") and "Services x 2 endpoints" in lines[0]
    assert lines[3].startswith("one idle kipvs watch (3 reflectors)") and lines[4].startswith("2 idle watchers")
    assert "WATCH" in lines[3]  # 1 s watches end within the 2 s window, counted by the server
    assert cut["lists"] == 0 and cut["watches"] >= 6
    assert lines[5].startswith("every stream of the 2 watchers cut at once: 0 LISTs")
