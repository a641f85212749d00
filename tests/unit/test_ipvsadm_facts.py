from kipvs.facts.ipvsadm import parse_connections, parse_rates, parse_rules, split_host_port
from kipvs.model import RealServer, VirtualServer
from tests.unit.fakes import fixture_outputs

OUT = fixture_outputs("node-before-fix")


def rules():
    return {vs.key: vs for vs in parse_rules(OUT["ipvsadm -S -n"])}


def test_every_shape_of_service_in_real_output():
    r = rules()
    assert r[("tcp", "10.254.0.10", 80)] == VirtualServer(
        "tcp", "10.254.0.10", 80, "wrr", (), 10800,
        (RealServer("172.20.1.2", 8080, 1, "masq"), RealServer("172.20.2.2", 8080, 3, "masq")))
    assert r[("udp", "10.254.0.10", 53)].flags == ("sh-fallback", "sh-port")
    assert r[("sctp", "10.254.0.10", 9000)].scheduler == "mh"
    assert r[("tcp", "fd00:254::10", 80)].real_servers == (RealServer("fd00:20:1::2", 8080, 1, "masq"),)
    assert r[("fwmark", "", 42)].real_servers[0].port == 0
    assert [rs.forward for rs in r[("tcp", "10.0.0.5", 22)].real_servers] == ["route", "tunnel"]
    assert r[("tcp", "192.168.123.249", 30080)].real_servers[0].weight == 0
    assert len(r) == 8


def test_rules_round_trip_through_the_lines_we_write():
    for vs in parse_rules(OUT["ipvsadm -S -n"]):
        line = f"-A {vs.service_args()} {vs.options_args()}"
        assert parse_rules(line)[0].key == vs.key and parse_rules(line)[0].same_options(vs)


def test_connection_and_rate_counters():
    conns = parse_connections(OUT["ipvsadm -L -n --exact"])
    assert conns[(("tcp", "10.254.0.10", 80), ("172.20.2.2", 8080))].active == 0
    assert (("fwmark", "", 42), ("172.20.1.2", 0)) in conns and len(conns) == 10
    rates = parse_rates(OUT["ipvsadm -L -n --rate"])
    assert (("tcp", "fd00:254::10", 80), None) in rates


def test_counters_with_traffic():
    text = """IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.254.0.20:80 rr
  -> 172.20.1.2:8080              Masq    1      3          17
"""
    assert parse_connections(text)[(("tcp", "10.254.0.20", 80), ("172.20.1.2", 8080))].inactive == 17


def test_split_host_port():
    assert split_host_port("[fd00::1]:443") == ("fd00::1", 443)
    assert split_host_port("10.0.0.1:80") == ("10.0.0.1", 80)


def test_listing_parses_to_the_same_services_as_save_output():
    from kipvs.facts.ipvsadm import parse_listing

    listed = {vs.key: vs for vs in parse_listing(OUT["ipvsadm -L -n --exact"])}
    assert listed == rules()
