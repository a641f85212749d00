from kipvs.facts.ipvsadm import parse_connections, parse_rates, parse_rules, split_host_port
from kipvs.model import RealServer, VirtualServer, host_port
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


# Every option `ipvsadm -S` prints (ipvsadm 1.31 print_service_entry, print_tunnel_rule), and the long
# spellings `ipvsadm -R` also takes.
EVERY_OPTION = """-A -t 10.96.0.1:80 -s rr -p 3600 -M 32.0.0.0
-A -t 10.96.0.2:80 -s wlc -p 300 -M 255.255.255.0 --pe sip -o -b flag-1,flag-2,flag-3
-A -u 10.96.0.3:53 -s sh -o -b sh-fallback,sh-port
-A --sctp-service 10.96.0.4:9000 -s mh -b mh-fallback,mh-port
-A -t [fd00:96::5]:80 -s lc -p 60 -M 64
-A -t [fd00:96::6]:80 -s lc -p 60 -M 128
-A -t 10.96.0.7:80 -s sed -p 60 -M 255.255.255.255
-A -f 42 -s wrr
-A -f 42 -6 -s nq
-a -t 10.96.0.1:80 -r 10.1.0.1:8080 -m -w 1
-a -t 10.96.0.1:80 -r 10.1.0.2:8080 -g -w 0
-a -t 10.96.0.1:80 -r 10.1.0.3:8080 -i -w 2 --tun-type ipip
-a -t 10.96.0.1:80 -r 10.1.0.4:8080 -i -w 3 --tun-type gue --tun-port 6080 --tun-remcsum
-a -t 10.96.0.1:80 -r 10.1.0.5:8080 -i -w 4 --tun-type gre --tun-csum
-a -t 10.96.0.1:80 -r 10.1.0.6:8080 -i -w 5 --tun-type gre --tun-nocsum
-a -t 10.96.0.1:80 -r 10.1.0.7:8080 -m -w 6 -x 100 -y 50
-a -f 42 -6 -r [fd00:1::1]:0 -g -w 1
--add-service --tcp-service 10.96.0.8:80 --scheduler rr --persistent 10 --netmask 255.255.0.0 --ops --sched-flags flag-2
--add-server --tcp-service 10.96.0.8:80 --real-server 10.1.0.8:80 --masquerading --weight 7 --u-threshold 9
-A -t 10.96.0.9:80 -s rr -p
"""


def test_every_option_ipvsadm_can_print_is_parsed():
    r = {vs.key: vs for vs in parse_rules(EVERY_OPTION)}
    assert (r[("tcp", "10.96.0.1", 80)].persistent, r[("tcp", "10.96.0.1", 80)].netmask) == (3600, "32.0.0.0")
    two = r[("tcp", "10.96.0.2", 80)]
    assert (two.scheduler, two.netmask, two.pe, two.one_packet, two.flags) == \
        ("wlc", "255.255.255.0", "sip", True, ("flag-1", "flag-2", "flag-3"))
    assert r[("udp", "10.96.0.3", 53)].one_packet and r[("udp", "10.96.0.3", 53)].persistent is None
    assert r[("sctp", "10.96.0.4", 9000)].flags == ("mh-fallback", "mh-port")
    assert r[("tcp", "fd00:96::5", 80)].netmask == "64"
    assert r[("tcp", "fd00:96::6", 80)].netmask is None and r[("tcp", "10.96.0.7", 80)].netmask is None  # host masks
    assert r[("fwmark", "", 42)].scheduler == "wrr" and r[("fwmark", "::", 42)].scheduler == "nq"
    assert r[("fwmark", "::", 42)].real_servers == (RealServer("fd00:1::1", 0, 1, "route"),)
    real = {rs.ip: rs for rs in r[("tcp", "10.96.0.1", 80)].real_servers}
    assert (real["10.1.0.1"].forward, real["10.1.0.2"].forward, real["10.1.0.2"].weight) == ("masq", "route", 0)
    assert (real["10.1.0.3"].tun_type, real["10.1.0.3"].tun_port) == ("ipip", None)
    assert (real["10.1.0.4"].tun_type, real["10.1.0.4"].tun_port, real["10.1.0.4"].tun_csum) == \
        ("gue", 6080, "--tun-remcsum")
    assert (real["10.1.0.5"].tun_csum, real["10.1.0.6"].tun_csum) == ("--tun-csum", "--tun-nocsum")
    assert (real["10.1.0.7"].u_threshold, real["10.1.0.7"].l_threshold) == (100, 50)
    long = r[("tcp", "10.96.0.8", 80)]
    assert (long.persistent, long.netmask, long.one_packet, long.flags) == (10, "255.255.0.0", True, ("flag-2",))
    assert long.real_servers == (RealServer("10.1.0.8", 80, 7, "masq", u_threshold=9),)
    assert r[("tcp", "10.96.0.9", 80)].persistent == 300  # a bare -p: ipvsadm's default timeout


def test_every_option_survives_the_lines_we_write():
    for vs in parse_rules(EVERY_OPTION):
        lines = [f"-A {vs.service_args()} {vs.options_args()}"]
        lines += [f"-a {vs.service_args()} -r {host_port(rs.ip, rs.port)} {rs.options_args()}"
                  for rs in vs.real_servers]
        assert parse_rules("\n".join(lines)) == [vs]


def test_options_that_differ_are_drift():
    base = parse_rules("-A -t 10.96.0.1:80 -s rr -p 3600\n")[0]
    for changed in ("-s rr -p 3600 -M 32.0.0.0", "-s rr -p 3600 --pe sip", "-s rr -p 3600 -o", "-s rr -p 60",
                    "-s rr", "-s wrr -p 3600", "-s rr -p 3600 -b flag-1"):
        assert not base.same_options(parse_rules(f"-A -t 10.96.0.1:80 {changed}\n")[0]), changed
    assert base.same_options(parse_rules("-A -t 10.96.0.1:80 -s rr -p 3600 -M 255.255.255.255\n")[0])


def test_listing_shows_the_same_options_as_the_save_output():
    from kipvs.facts.ipvsadm import parse_listing

    text = """Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.96.0.1:80 rr (flag-1) persistent 3600 mask 32.0.0.0 pe sip ops
  -> 10.1.0.1:8080                Masq    1      0          0
FWM  42 IPv6 nq
"""
    listed = {vs.key: vs for vs in parse_listing(text)}
    saved = parse_rules("-A -t 10.96.0.1:80 -s rr -p 3600 -M 32.0.0.0 --pe sip -o -b flag-1\n"
                        "-a -t 10.96.0.1:80 -r 10.1.0.1:8080 -m -w 1\n-A -f 42 -6 -s nq\n")
    assert listed == {vs.key: vs for vs in saved}
