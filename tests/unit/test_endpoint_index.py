"""EndpointIndex.endpoints: one Service port's endpoints from its slices, duplicates merged (a ready copy
wins), by address family; its shortcut for one slice without repeated addresses gives the same list."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kipvs.cluster import Endpoint, EndpointIndex, EndpointSliceSpec, SlicePort


def reference(slices, port_name, protocol, family):
    """The merge as it was written first: every matching slice, per endpoint, then the family."""
    found = {}
    for item in slices:
        number = next((p.port for p in item.ports if p.name == port_name and p.protocol == protocol), None)
        if number is None:
            continue
        for endpoint in item.endpoints:
            previous = found.get((endpoint.ip, number))
            if previous is None or (endpoint.ready and not previous[0].ready):
                found[(endpoint.ip, number)] = (endpoint, number)
    return [(e, n) for e, n in found.values() if (6 if ":" in e.ip else 4) == family]


_ADDRESSES = {4: ["10.1.0.1", "10.1.0.2", "10.1.0.3"], 6: ["fd00::1", "fd00::2"]}


@st.composite
def slices(draw):
    found = []
    for _ in range(draw(st.integers(0, 3))):
        family = draw(st.sampled_from([4, 6]))
        ports = tuple(SlicePort(name, protocol, port) for name, protocol, port in draw(st.lists(
            st.tuples(st.sampled_from(["", "http"]), st.sampled_from(["TCP", "UDP"]), st.sampled_from([80, 8080])),
            max_size=2)))
        endpoints = tuple(Endpoint(ip, "node-a", "", ready, ready, False) for ip, ready in draw(st.lists(
            st.tuples(st.sampled_from(_ADDRESSES[family]), st.booleans()), max_size=4)))
        found.append(EndpointSliceSpec("default", "web", family, ports, endpoints))
    return found


@settings(max_examples=300, deadline=None)
@given(items=slices(), port_name=st.sampled_from(["", "http"]), protocol=st.sampled_from(["TCP", "UDP"]),
       family=st.sampled_from([4, 6]))
def test_endpoints_of_a_port_are_the_merge_of_its_slices(items, port_name, protocol, family):
    index = EndpointIndex(items)
    assert index.endpoints("default", "web", port_name, protocol, family) == \
        reference(items, port_name, protocol, family)
    every_family = index.endpoints("default", "web", port_name, protocol)
    assert sorted(every_family, key=repr) == sorted(reference(items, port_name, protocol, 4) +
                                                    reference(items, port_name, protocol, 6), key=repr)
