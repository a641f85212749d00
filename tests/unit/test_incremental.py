"""Watch mode's incremental desired state: after any change it equals a full build_desired, and an
event recomputes only the Services that change can affect (counted)."""
import random
from dataclasses import replace

from kipvs.config import ProxyOptions
from kipvs.desired import build_desired
from kipvs.facts.kernel import IPVS_SYSCTLS, STRICT_ARP_SYSCTLS, KernelFacts
from kipvs.incremental import IncrementalDesired, KernelIndex, object_key
from kipvs.model import InterfaceAddress, LocalRoute, NetFacts
from kipvs.plan import plan_sync
from tests.unit.k8s import ep, eps, snapshot, svc

NODE_IPS = {4: "192.168.1.10"}
OPTS = ProxyOptions()


def state_of(objects):
    state = IncrementalDesired("node-a", NODE_IPS, [], OPTS)
    state.rebuild([o for o in objects if o["kind"] == "Service"], [o for o in objects if o["kind"] == "EndpointSlice"])
    return state


def same(state, objects):
    """The incremental state's full view equals build_desired on the same objects."""
    full = build_desired(snapshot(*objects), "node-a", NODE_IPS, OPTS)
    mine = state.desired()
    assert {vs.key: vs for vs in mine.virtual_servers} == {vs.key: vs for vs in full.virtual_servers}
    assert set(mine.addresses) == set(full.addresses)
    assert mine.origins == full.origins
    served = {rs.key for vs in full.virtual_servers for rs in vs.real_servers}  # what netfilter asks about
    assert mine.local_backends & served == full.local_backends & served
    assert sorted(map(str, mine.problems)) == sorted(map(str, full.problems))
    assert sorted(mine.skipped) == sorted(full.skipped)
    assert mine.protected_addresses == full.protected_addresses and mine.hold_removals == full.hold_removals
    assert mine.held == full.held and mine.notes == full.notes  # what drains, and what show explains


def many(n):
    objects = []
    for i in range(n):
        ip = f"10.96.{i // 250}.{i % 250 + 1}"
        objects += [svc(f"s{i}", cluster_ips=(ip,)),
                    eps(f"s{i}", [ep(f"10.1.{i // 250}.{i % 250 + 1}")])]
    return objects


def with_created(obj, stamp):
    obj["metadata"]["creationTimestamp"] = stamp
    return obj


def test_one_endpoint_added_recomputes_one_service_of_many():
    objects = many(300)
    state = state_of(objects)
    assert state.last_planned == 300
    changed = eps("s7", [ep("10.1.0.8"), ep("10.2.0.1")])
    change = state.apply({}, {object_key(changed): changed})
    assert state.last_planned == 1 and change.services == {("default", "s7")}
    assert change.keys == {("tcp", "10.96.0.8", 80)}
    objects[15] = changed
    same(state, objects)


def test_a_shared_external_ip_recomputes_every_service_asking_for_it_and_the_older_wins():
    shared = {"externalIPs": ["203.0.113.5"]}
    old = with_created(svc("old", cluster_ips=("10.96.0.1",), **shared), "2020-01-01T00:00:00Z")
    young = with_created(svc("young", cluster_ips=("10.96.0.2",), **shared), "2021-01-01T00:00:00Z")
    other = svc("other", cluster_ips=("10.96.0.3",))
    objects = [old, young, other, eps("old", [ep("10.1.0.1")]), eps("young", [ep("10.1.0.2")])]
    options = ProxyOptions(strict_external_ip_validation=False)
    state = IncrementalDesired("node-a", NODE_IPS, [], options)
    state.rebuild(objects[:3], objects[3:])
    assert state.origins[("tcp", "203.0.113.5", 80)].name == "old"
    # The older Service goes away: the younger one now owns the shared address; "other" is untouched.
    change = state.apply({("default", "old"): None}, {})
    assert change.services == {("default", "old"), ("default", "young")} and state.last_planned == 2
    assert state.origins[("tcp", "203.0.113.5", 80)].name == "young"
    assert state.servers[("tcp", "203.0.113.5", 80)].real_servers[0].ip == "10.1.0.2"
    assert "203.0.113.5" in state.view(change).addresses
    full = build_desired(snapshot(*objects[1:]), "node-a", NODE_IPS, options)
    assert set(state.desired().virtual_servers) == set(full.virtual_servers)


def test_random_changes_always_match_a_full_build():
    rng = random.Random(13)
    live: dict = {}
    state = state_of([])
    for step in range(300):
        i = rng.randrange(30)
        kind = rng.choice(["svc", "eps", "del-svc", "del-eps"])
        ip = f"10.96.0.{rng.randrange(1, 12)}"  # few addresses: conflicts are frequent
        if kind == "svc":
            obj = with_created(svc(f"s{i}", cluster_ips=(ip,), externalIPs=[f"203.0.113.{rng.randrange(3)}"],
                                   ports=[{"name": "http", "port": rng.choice([80, 81]), "protocol": "TCP"}]),
                               f"2020-01-{rng.randrange(1, 28):02}T00:00:00Z")
            live[("Service", i)] = obj
            state.apply({object_key(obj): obj}, {})
        elif kind == "eps":
            obj = eps(f"s{rng.randrange(30)}", [ep(f"10.1.0.{rng.randrange(1, 200)}") for _ in range(rng.randrange(3))],
                      name=f"slice{i}")
            live[("EndpointSlice", i)] = obj
            state.apply({}, {object_key(obj): obj})
        elif kind == "del-svc":
            live.pop(("Service", i), None)
            state.apply({("default", f"s{i}"): None}, {})
        else:
            live.pop(("EndpointSlice", i), None)
            state.apply({}, {("default", f"slice{i}"): None})
        assert state.last_planned <= sum(1 for k in live if k[0] == "Service") + 1
        same(state, list(live.values()))


def converged_kernel(desired):
    addresses = [InterfaceAddress("kube-dummy-if", ip, 32, 4) for ip in desired.addresses]
    routes = [LocalRoute("local", ip, "kube-dummy-if", "192.168.1.10", "kernel", "host", 0) for ip in desired.addresses]
    return KernelFacts(net=NetFacts(tuple(addresses), frozenset({"kube-dummy-if"}), frozenset({"kube-dummy-if"}),
                                    tuple(routes), kinds={"kube-dummy-if": "dummy"}),
                       rules=desired.virtual_servers, sysctls={**IPVS_SYSCTLS, **STRICT_ARP_SYSCTLS})


def test_the_event_plan_diffs_only_the_change_against_the_verified_kernel():
    objects = many(200)
    state = state_of(objects)
    index = KernelIndex(converged_kernel(state.desired()), "kube-dummy-if")
    assert plan_sync(state.desired(), index.kernel, OPTS).empty
    changed = eps("s3", [ep("10.1.0.4"), ep("10.2.0.9")])
    change = state.apply({}, {object_key(changed): changed})
    plan = plan_sync(state.view(change), index.view(change), OPTS)
    assert plan.command_lines() == ["ipvsadm -a -t 10.96.0.4:80 -r 10.2.0.9:8080 -m -w 1"]
    # A deleted Service: its virtual server, its address and its repaired route go, nothing else.
    change = state.apply({("default", "s5"): None}, {})
    assert plan_sync(state.view(change), index.view(change), OPTS).command_lines() == [
        "ip route del local 10.96.0.6 dev kube-dummy-if table local proto kernel src 192.168.1.10 metric 0",
        "ip addr del 10.96.0.6/32 dev kube-dummy-if",
        "ipvsadm -D -t 10.96.0.6:80"]


def test_an_event_that_reads_back_only_ipvs_keeps_the_other_addresses_indexed():
    """After an endpoint change (verified without reading the net again), a later event that deletes
    another Service still sees that Service's address on the dummy interface, and removes it."""
    state = state_of(many(50))
    index = KernelIndex(converged_kernel(state.desired()), "kube-dummy-if")
    changed = eps("s3", [ep("10.1.0.4"), ep("10.2.0.9")])
    change = state.apply({}, {object_key(changed): changed})
    view = index.view(change)
    plan = plan_sync(state.view(change), view, OPTS)
    rules = tuple(vs for vs in view.rules if vs.key not in change.keys) + tuple(state.view(change).virtual_servers)
    index.update(view, replace(view, rules=rules), change)  # what settle returns when only ipvsadm was re-read
    assert plan.command_count == 1
    change = state.apply({("default", "s20"): None}, {})
    lines = plan_sync(state.view(change), index.view(change), OPTS).command_lines()
    assert lines[1] == "ip addr del 10.96.0.21/32 dev kube-dummy-if" and lines[-1] == "ipvsadm -D -t 10.96.0.21:80"


def test_netfilter_follows_an_event_only_when_virtual_servers_or_this_nodes_endpoints_change():
    """Remote endpoint churn, the common event, leaves netfilter alone; hairpin needs local endpoints."""
    from kipvs.commands.watch import Watcher, WatchSettings
    from kipvs.reconcile import NodeIdentity
    from tests.unit.fakes import RecordingRunner

    objects = [svc("web"), eps("web", [ep("10.1.0.5", node="node-a"), ep("10.1.0.6", node="node-b")])]
    watcher = Watcher([], RecordingRunner({}), NodeIdentity("node-a"), OPTS, WatchSettings())
    watcher.state = state_of(objects)
    verified = KernelFacts(rules=watcher.state.desired().virtual_servers)

    def after(endpoints) -> bool:
        changed = eps("web", endpoints)
        change = watcher.state.apply({}, {object_key(changed): changed})
        return watcher._local_endpoints_changed(watcher.state.view(change), verified)

    assert not after([ep("10.1.0.5", node="node-a"), ep("10.1.0.7", node="node-b")])  # a remote pod moved
    assert after([ep("10.1.0.5", node="node-a"), ep("10.1.0.8", node="node-a")])  # a local pod came
    assert after([])  # no endpoint at all: the virtual server stays, its local endpoint goes


def test_an_event_known_from_a_clean_ip_batch_updates_only_its_addresses_in_the_index():
    """A new Service's address and route, known from a clean `ip -batch` of the narrowed view, join the index
    without the other Services' addresses leaving it (the view holds only the change's)."""
    from kipvs.applied import net_after

    state = state_of(many(50))
    index = KernelIndex(converged_kernel(state.desired()), "kube-dummy-if")
    new = [svc("n1", cluster_ips=("10.96.9.9",)), eps("n1", [ep("10.1.9.9")])]
    change = state.apply({object_key(new[0]): new[0]}, {object_key(new[1]): new[1]})
    view = index.view(change)
    plan = plan_sync(state.view(change), view, OPTS)
    net = net_after(view.net, next(b.lines for b in plan.batches if b.tool == "ip"), "kube-dummy-if")
    index.update(view, replace(view, net=net, rules=state.view(change).virtual_servers), change, net_read=False)
    change = state.apply({("default", "s20"): None}, {})
    assert "ip addr del 10.96.0.21/32 dev kube-dummy-if" in plan_sync(state.view(change), index.view(change),
                                                                     OPTS).command_lines()
    change = state.apply({("default", "n1"): None}, {})
    assert plan_sync(state.view(change), index.view(change), OPTS).command_lines()[:2] == [
        "ip route del local 10.96.9.9 dev kube-dummy-if table local proto kernel src 192.168.1.10 metric 0",
        "ip addr del 10.96.9.9/32 dev kube-dummy-if"]


class _Pending:
    """A reflector holding undrained changes: what `_awaiting_first_slices` peeks at."""

    def __init__(self, *objects):
        self.objects = list(objects)

    def pending(self):
        return self.objects


def test_a_new_service_that_selects_pods_waits_for_its_first_slice_and_nothing_else_does():
    """watch holds a sync (up to --min-sync-period) only for a new pod-selecting Service whose slice is not
    there yet, applied or pending: an update, a selectorless or headless Service, or one with a slice go at once."""
    from kipvs.commands.watch import Watcher, WatchSettings
    from kipvs.reconcile import NodeIdentity
    from tests.unit.fakes import RecordingRunner

    watcher = Watcher([], RecordingRunner({}), NodeIdentity("node-a"), OPTS, WatchSettings())
    watcher.state = state_of([svc("old", selector={"app": "old"}), eps("old", [ep("10.1.0.5")])])
    selecting = svc("web", cluster_ips=("10.96.0.20",), selector={"app": "web"})

    def awaiting(services, slices=()) -> bool:
        watcher.reflectors = [_Pending(*services), _Pending(*slices), _Pending()]
        return watcher._awaiting_first_slices()

    assert awaiting([selecting])
    assert not awaiting([selecting], [eps("web", [ep("10.1.0.6")])])  # its slice came in the same burst
    assert not awaiting([selecting], [eps("web", [])])  # an empty slice is its controller's answer too
    assert not awaiting([svc("web", cluster_ips=("10.96.0.20",))])  # no selector: its slices may never come
    assert not awaiting([svc("web", cluster_ips=(), clusterIP="None", selector={"app": "web"})])  # headless
    assert not awaiting([svc("old", selector={"app": "old"}, sessionAffinity="ClientIP")])  # an update
    assert not awaiting([svc("web", cluster_ips=("10.96.0.20",), selector="app=web")])  # not a map: no selector
    watcher.state = None
    assert not awaiting([selecting])  # the first sync: the lists hold all there is


def test_the_hold_ends_when_its_slice_comes_or_watch_stops_and_never_outlasts_min_sync_period():
    import threading
    import time

    from kipvs.commands.watch import Watcher, WatchSettings
    from kipvs.reconcile import NodeIdentity
    from tests.unit.fakes import RecordingRunner

    def watcher_awaiting(min_sync_period):
        watcher = Watcher([], RecordingRunner({}), NodeIdentity("node-a"), OPTS,
                          WatchSettings(min_sync_period=min_sync_period))
        watcher.state = state_of([])
        watcher.reflectors = [_Pending(svc("web", selector={"app": "web"})), _Pending(), _Pending()]
        return watcher

    def timed(watcher, then=None) -> tuple[bool, float]:
        if then:
            threading.Timer(0.2, then).start()
        started = time.monotonic()
        return watcher._hold_for_first_slices(), time.monotonic() - started

    stopped, seconds = timed(watcher_awaiting(0.3))
    assert not stopped and 0.29 <= seconds < 2  # no slice came: the sync goes ahead after --min-sync-period

    watcher = watcher_awaiting(30)

    def slice_arrives():
        watcher.reflectors[1].objects.append(eps("web", [ep("10.1.0.6")]))
        watcher.dirty.set()  # as a reflector's event does
    stopped, seconds = timed(watcher, slice_arrives)
    assert not stopped and seconds < 5

    watcher = watcher_awaiting(30)
    stopped, seconds = timed(watcher, watcher.shutdown)
    assert stopped and seconds < 5  # SIGTERM during a hold: no sync, no 30 s wait
