"""Watch mode's desired state, kept between syncs: an event recomputes only the Services it can affect.

Which Service gets a virtual server (protocol, address, port) depends only on the Services asking
for that same key (kipvs.desired places by round, then age: the first to ask wins). So the Services
to recompute for a change are the changed ones plus every Service linked to them by a shared key
(their keys before the change and after), a group closed under sharing: expanding that group alone
gives each of its Services exactly what a full expansion gives it, and nobody outside the group
changes. A `Change` names the group's keys and addresses; the plan diffs only those against the
kernel the last sync verified (`KernelIndex`). The periodic full resync rebuilds everything.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from kipvs.cluster import (EndpointIndex, EndpointSliceSpec, ParsedEndpointSlice, Problem, ServiceSpec,
                           endpoint_slice_spec, service_key, service_spec)
from kipvs.config import ProxyOptions
from kipvs.desired import BackendInfo, Desired, Origin, _Expander, _precedence
from kipvs.facts.kernel import KernelFacts
from kipvs.gc_pause import gc_paused
from kipvs.model import NetFacts, VirtualServer

Ref = tuple[str, str]  # (namespace, name)
Key = tuple  # (protocol, ip, port), as VirtualServer.key


def object_key(obj: dict) -> Ref:
    """(namespace, name) as kipvs.cluster reads them (no namespace: "default")."""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    meta = meta if isinstance(meta, dict) else {}
    return normal_key((meta.get("namespace"), meta.get("name")))


def normal_key(key: tuple) -> Ref:
    namespace, name = key
    return (namespace if isinstance(namespace, str) and namespace else "default", name if isinstance(name, str) else "")


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What one Service got from its last expansion."""

    claims: tuple[Key, ...]
    won: tuple[Key, ...]


@dataclass(frozen=True)
class Change:
    """What one event sync must look at: the Services recomputed, their keys and addresses."""

    services: frozenset[Ref]
    keys: frozenset[Key]
    ips: frozenset[str]


class IncrementalDesired:
    """The desired state of every Service, with what each Service asked for and got."""

    def __init__(self, node_name: str, node_ips: dict[int, str], local_ips: list[str], options: ProxyOptions,
                 host_addresses: frozenset[str] = frozenset(), base_problems: tuple = (), zone: str | None = None,
                 last_readable: dict | None = None):
        """`last_readable`: a previous instance's (watch rebuilds one at every full resync), so that what
        a Service had when it could last be read outlives the rebuild."""
        self.node_name, self.node_ips, self.local_ips, self.zone = node_name, dict(node_ips), list(local_ips), zone
        self.options, self.host_addresses, self.base_problems = options, host_addresses, tuple(base_problems)
        # Per Service, the virtual servers it won when its addresses could last be read: when they cannot
        # be read any more, only those are kept (Desired.protected_keys), not every stale one on the node.
        self.last_readable: dict[Ref, tuple[Key, ...]] = dict(last_readable or {})
        self._reset()

    def _reset(self) -> None:
        self.services: dict[Ref, ServiceSpec] = {}
        self.service_problems: dict[Ref, tuple[Problem, ...]] = {}  # parse problems, by the object's key
        self.slices: dict[Ref, EndpointSliceSpec | None] = {}
        self.slice_problems: dict[Ref, tuple[Problem, ...]] = {}
        self.slices_of: dict[Ref, dict[Ref, EndpointSliceSpec]] = {}
        self.index = EndpointIndex([])
        self.outcomes: dict[Ref, _Outcome] = {}
        self.claimants: dict[Key, list[Ref]] = {}
        self.servers: dict[Key, VirtualServer] = {}
        self.origins: dict[Key, Origin] = {}
        self.addresses: dict[str, int] = {}  # service address -> how many won virtual servers use it
        self.backends: dict[tuple[str, int], BackendInfo] = {}
        self.local_backends: set[tuple[str, int]] = set()
        self.held: dict[Key, frozenset[tuple[str, int]]] = {}  # listed endpoints not chosen (may drain)
        self.notes: dict[Ref, tuple[str, ...]] = {}  # what annotations or hints changed, for show
        self.protected: dict[Ref, frozenset[str]] = {}
        self.protected_keys: dict[Ref, tuple[Key, ...]] = {}
        self.holding: set[Ref] = set()
        # Only the Services that have some: an event must not walk every Service to list them.
        self.expand_problems: dict[Ref, tuple[Problem, ...]] = {}
        self.skipped: dict[Ref, tuple[str, ...]] = {}
        self.real_server_count = 0
        self.serving = 0  # Services with at least one virtual server
        self.last_planned = 0  # Services recomputed by the last build or change (the tests count them)

    # --- input ---

    def _set_service(self, key: Ref, obj: dict | None) -> None:
        self.services.pop(key, None)
        self.service_problems.pop(key, None)
        if obj is None:
            return
        problems: list[Problem] = []
        spec = service_spec(obj, problems)
        self.services[(spec.namespace, spec.name)] = spec
        if problems:
            self.service_problems[key] = tuple(problems)

    def _set_slice(self, key: Ref, obj: dict | None) -> set[Ref]:
        """Returns the Services whose endpoints this changed (the old owner and the new)."""
        touched = set()
        old = self.slices.pop(key, None)
        self.slice_problems.pop(key, None)
        if old is not None:
            touched.add((old.namespace, old.service))
            self.slices_of.get((old.namespace, old.service), {}).pop(key, None)
        if obj is not None:
            problems: list[Problem] = []
            spec = endpoint_slice_spec(obj, problems)
            if problems:
                self.slice_problems[key] = tuple(problems)
            self.slices[key] = spec
            if spec is not None:
                owner = (spec.namespace, spec.service)
                touched.add(owner)
                self.slices_of.setdefault(owner, {})[key] = spec
        for owner in touched:
            found = self.slices_of.get(owner)
            if found:
                self.index.by_service[owner] = list(found.values())
            else:
                self.slices_of.pop(owner, None)
                self.index.by_service.pop(owner, None)
        return touched

    # --- expansion ---

    def rebuild(self, services, slices) -> Change:
        """Everything from scratch (the first sync and each periodic full resync)."""
        self._reset()
        with gc_paused():
            for obj in slices:
                self._set_slice(normal_key(obj.key) if isinstance(obj, ParsedEndpointSlice) else object_key(obj), obj)
            for obj in services:
                self._set_service(service_key(obj), obj)
            return self._expand(set(self.services))

    def apply(self, services: dict[Ref, dict | None], slices: dict[Ref, object]) -> Change:
        """Objects changed since the last build, by (namespace, name) (None: deleted): recompute what
        they can affect."""
        dirty: set[Ref] = set()
        for key, obj in slices.items():
            dirty |= self._set_slice(normal_key(key), obj)
        for key, obj in services.items():
            dirty.add(normal_key(key))
            self._set_service(normal_key(key), obj)
        return self._expand(self._group(dirty))

    def _probe(self) -> _Expander:
        return _Expander(self.node_name, self.node_ips, self.local_ips, self.options, self.index, [],
                         self.host_addresses, self.zone)

    def _claims_now(self, spec: ServiceSpec, probe: _Expander) -> list[Key]:
        if not probe.wants(spec):
            return []
        return [(p.port.protocol, p.ip, p.vport) for bucket in probe.placements(spec) for p in bucket]

    def _group(self, dirty: set[Ref]) -> set[Ref]:
        """The changed Services and every Service linked to them by a key asked for, before or now."""
        probe = self._probe()
        group: set[Ref] = set()
        todo = list(dirty)
        while todo:
            ref = todo.pop()
            if ref in group:
                continue
            group.add(ref)
            keys = set(self.outcomes[ref].claims) if ref in self.outcomes else set()
            if ref in dirty and ref in self.services:
                keys.update(self._claims_now(self.services[ref], probe))
            for key in keys:
                todo += [other for other in self.claimants.get(key, ()) if other not in group]
        return group

    def _forget(self, ref: Ref) -> tuple[set[Key], set[str]]:
        outcome = self.outcomes.pop(ref, None)
        self.protected.pop(ref, None)
        self.protected_keys.pop(ref, None)
        self.holding.discard(ref)
        self.expand_problems.pop(ref, None)
        self.skipped.pop(ref, None)
        self.notes.pop(ref, None)
        if outcome is None:
            return set(), set()
        self.serving -= bool(outcome.won)
        for key in outcome.claims:
            others = self.claimants.get(key)
            if others is not None:
                others.remove(ref)
                if not others:
                    del self.claimants[key]
        ips = set()
        for key in outcome.won:
            vs = self.servers.pop(key)
            self.held.pop(key, None)
            self.real_server_count -= len(vs.real_servers)
            if self.origins.pop(key).kind != "NodePort":
                ips.add(key[1])
                self.addresses[key[1]] -= 1
                if not self.addresses[key[1]]:
                    del self.addresses[key[1]]
        return set(outcome.claims), ips | {key[1] for key in outcome.claims}

    def _expand(self, group: set[Ref]) -> Change:
        keys: set[Key] = set()
        ips: set[str] = set()
        for ref in group:
            old_keys, old_ips = self._forget(ref)
            keys |= old_keys
            ips |= old_ips
        specs = sorted((self.services[ref] for ref in group if ref in self.services), key=_precedence)
        problems: list[Problem] = []
        expander = _Expander(self.node_name, self.node_ips, self.local_ips, self.options, self.index, problems,
                             self.host_addresses, self.zone)
        expander.expand(specs)
        by_ref = {spec.ref: (spec.namespace, spec.name) for spec in specs}
        problems_of: dict[Ref, list[Problem]] = {}
        for problem in problems:
            problems_of.setdefault(by_ref[problem.object], []).append(problem)
        skipped_of: dict[Ref, list[str]] = {}
        for line in expander.skipped:
            skipped_of.setdefault(by_ref[line.split(": ", 1)[0]], []).append(line)
        won_of: dict[Ref, list[Key]] = {}
        for key, vs in expander.servers.items():
            origin = expander.origins[key]
            won_of.setdefault((origin.namespace, origin.name), []).append(key)
            self.servers[key] = vs
            self.origins[key] = origin
            self.real_server_count += len(vs.real_servers)
            if origin.kind != "NodePort":
                self.addresses[key[1]] = self.addresses.get(key[1], 0) + 1
        self.backends.update(expander.backends)
        for key, endpoint in expander.backends.items():  # an address may have moved to or off this node
            if endpoint.node == self.node_name:
                self.local_backends.add(key)
            else:
                self.local_backends.discard(key)
        self.held.update(expander.held)
        for ref, texts in expander.notes.items():
            self.notes[ref] = tuple(texts)
        for spec in specs:
            ref = (spec.namespace, spec.name)
            claims = tuple(expander.claims.get(ref, ()))
            for key in claims:
                self.claimants.setdefault(key, []).append(ref)
            keys.update(claims)
            ips.update(key[1] for key in claims)
            self.outcomes[ref] = _Outcome(claims, tuple(won_of.get(ref, ())))
            self.serving += ref in won_of
            if ref in problems_of:
                self.expand_problems[ref] = tuple(problems_of[ref])
            if ref in skipped_of:
                self.skipped[ref] = tuple(skipped_of[ref])
            if spec.malformed:
                self.protected[ref] = frozenset(spec.cluster_ips) | {e.ip for e in spec.externals}
            if spec.malformed and not spec.addresses_known:
                self._keep_last_readable(ref)
            else:
                self.last_readable[ref] = self.outcomes[ref].won
        for ref in group - set(self.services):  # deleted: nothing of it is kept
            self.last_readable.pop(ref, None)
        self.last_planned = len(group)
        return Change(frozenset(group), frozenset(keys), frozenset(ips))

    def _keep_last_readable(self, ref: Ref) -> None:
        """A Service whose addresses cannot be read keeps the virtual servers (and their service addresses)
        it had when it last could be; only a Service never read since watch started holds every removal."""
        won = self.last_readable.get(ref)
        if won is None:
            self.holding.add(ref)
            return
        self.protected_keys[ref] = won
        node_addresses = set(self.node_ips.values()) | set(self.local_ips)  # NodePorts: their keys suffice
        self.protected[ref] = self.protected.get(ref, frozenset()) | {key[1] for key in won
                                                                      if key[1] not in node_addresses}

    # --- output ---

    def problems(self) -> tuple[Problem, ...]:
        found = list(self.base_problems)
        for problems in self.service_problems.values():
            found += problems
        for problems in self.slice_problems.values():
            found += problems
        for problems in self.expand_problems.values():
            found += problems
        return tuple(found)

    def _desired(self, servers, addresses, origins, held, notes) -> Desired:
        return Desired(
            virtual_servers=tuple(servers), addresses=tuple(addresses), node_ips=dict(self.node_ips),
            origins=origins, backends=self.backends, local_backends=frozenset(self.local_backends), held=held,
            notes=notes,
            protected_addresses=frozenset().union(*self.protected.values()),
            protected_keys=frozenset(key for keys in self.protected_keys.values() for key in keys),
            holding=tuple(f"Service {namespace}/{name}" for namespace, name in sorted(self.holding)),
            problems=self.problems(), skipped=tuple(line for lines in self.skipped.values() for line in lines))

    def desired(self) -> Desired:
        """Everything, as build_desired gives it."""
        return self._desired(self.servers.values(), self.addresses, dict(self.origins), dict(self.held),
                             dict(self.notes))

    def view(self, change: Change) -> Desired:
        """Only what `change` can affect: its virtual servers and addresses (plan_sync on a kernel
        narrowed to the same keys and addresses then plans exactly the change)."""
        keys = [key for key in change.keys if key in self.servers]
        return self._desired([self.servers[key] for key in keys], [ip for ip in change.ips if ip in self.addresses],
                             {key: self.origins[key] for key in keys},
                             {key: self.held[key] for key in keys if key in self.held}, {})

    def counts(self) -> tuple[int, int, int]:
        """(Services with a virtual server, virtual servers, real servers), without walking them."""
        return self.serving, len(self.servers), self.real_server_count


class KernelIndex:
    """The kernel as the last sync verified it, indexed so that an event sync reads only its own part."""

    def __init__(self, kernel: KernelFacts, interface: str):
        self.kernel, self.interface = kernel, interface
        self.rules = {vs.key: vs for vs in kernel.rules}
        self._index_net(kernel.net)

    def _index_net(self, net: NetFacts) -> None:
        self.others = tuple(a for a in net.addresses if a.interface != self.interface)
        self.ours: dict[str, list] = {}
        for address in net.addresses:
            if address.interface == self.interface:
                self.ours.setdefault(address.ip, []).append(address)
        self.routes: dict[str, list] = {}
        for route in net.local_routes:
            self.routes.setdefault(route.dst, []).append(route)

    def view(self, change: Change) -> KernelFacts:
        """The verified kernel narrowed to `change`'s keys and addresses (other interfaces stay whole)."""
        return self.narrow(replace(self.kernel, rules=tuple(self.rules[k] for k in change.keys if k in self.rules)),
                           change, indexed=True)

    def narrow(self, kernel: KernelFacts, change: Change, indexed: bool = False) -> KernelFacts:
        net = kernel.net
        if indexed:
            ours = [a for ip in change.ips for a in self.ours.get(ip, ())]
            routes = [r for ip in change.ips for r in self.routes.get(ip, ())]
            addresses = self.others + tuple(ours)
        else:
            addresses = tuple(a for a in net.addresses if a.interface != self.interface or a.ip in change.ips)
            routes = [r for r in net.local_routes if r.dst in change.ips]
        rules = tuple(vs for vs in kernel.rules if vs.key in change.keys)
        return replace(kernel, rules=rules, net=replace(net, addresses=addresses, local_routes=tuple(routes)))

    @staticmethod
    def _set(index: dict[str, list], ip: str, found: list) -> None:
        if found:
            index[ip] = found
        else:
            index.pop(ip, None)  # a deleted Service's address leaves no key behind

    def update(self, view: KernelFacts, after: KernelFacts, change: Change, net_read: bool = True) -> None:
        """Take in what an event sync planned from `view` and verified as `after` (which holds at
        least the rules of `change`'s keys; the whole net when `net_read`, else the view's, narrowed,
        with what the sync's clean `ip -batch` did to `change`'s addresses)."""
        found = {vs.key: vs for vs in after.rules if vs.key in change.keys}
        for key in change.keys:
            if key in found:
                self.rules[key] = found[key]
            else:
                self.rules.pop(key, None)
        if after.net is view.net:
            pass
        elif net_read:  # read again: the whole net
            self._index_net(after.net)
            self.kernel = replace(self.kernel, net=after.net)
        else:  # known from the batch: only the change's addresses and routes moved
            for ip in change.ips:
                self._set(self.ours, ip, [a for a in after.net.addresses if a.interface == self.interface and a.ip == ip])
                self._set(self.routes, ip, [r for r in after.net.local_routes if r.dst == ip])
        self.kernel = replace(self.kernel, sysctls=after.sysctls)
