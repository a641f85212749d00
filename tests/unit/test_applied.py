"""What verification knows without a read (kipvs.applied): a clean `ip -batch` of IPv4 service addresses and
routes gives exactly the facts the kernel then shows (compared with a lab capture), and anything not
modelled asks for a read."""
from dataclasses import replace

from kipvs.applied import net_after
from kipvs.facts.iproute import read_net_facts
from kipvs.routes import delete_line, fresh_route_line
from tests.unit.fakes import RecordingRunner, fixture_outputs

IF, VIP, NODE_IP = "kube-dummy-if", "10.254.0.10", "192.168.123.249"


def captured():
    """node3 of the lab after fix-routes: VIP on the dummy interface, its local route with src = node IP."""
    return read_net_facts(RecordingRunner(fixture_outputs("node-after-fix")))


def without(net, ip):
    return replace(net, addresses=tuple(a for a in net.addresses if a.ip != ip),
                   local_routes=tuple(r for r in net.local_routes if r.dst != ip))


def test_a_new_address_and_its_repaired_route_are_known_as_the_kernel_shows_them():
    real = captured()
    assert any(a.ip == VIP and a.interface == IF for a in real.addresses)  # the capture has what is modelled
    known = net_after(without(real, VIP), ("addr add 10.254.0.10/32 dev kube-dummy-if",
                                           fresh_route_line(VIP, IF, NODE_IP)), IF)
    assert set(known.addresses) == set(real.addresses)
    assert set(known.local_routes) == set(real.local_routes)


def test_a_removed_address_and_its_route_leave_the_facts_as_the_kernel_does():
    real = captured()
    route = next(r for r in real.local_routes if r.dst == VIP)
    known = net_after(real, (delete_line(route), "addr del 10.254.0.10/32 dev kube-dummy-if"), IF)
    expected = without(real, VIP)
    assert set(known.addresses) == set(expected.addresses) and set(known.local_routes) == set(expected.local_routes)


def test_what_is_not_modelled_is_read_back():
    real = captured()
    for lines in (["addr add fd00:254::10/128 dev kube-dummy-if nodad"],   # IPv6: the kernel's route comes late
                  ["link add kube-dummy-if type dummy"],
                  [f"route append local 10.254.0.99 dev {IF} proto kernel scope host src {NODE_IP} table local"],
                  ["addr add 10.254.0.10/32 dev kube-dummy-if"],           # a route for it is already there
                  [fresh_route_line("10.254.0.99", IF, NODE_IP)],          # nothing for replace to take over
                  ["addr add 10.254.0.77/32 dev other0"]):                  # not kipvs's interface
        assert net_after(real, tuple(lines), IF) is None, lines
