"""Per-Service traffic metrics: parsing ipvsadm's --stats/--rate listings and the exposition lines."""
from prometheus_client import CollectorRegistry, generate_latest

from kipvs.desired import Origin
from kipvs.errors import CommandFailed
from kipvs.facts.ipvs_stats import Traffic, parse_traffic
from kipvs.metrics import Metrics
from kipvs.service_metrics import TrafficMetrics, traffic_families
from tests.unit.fakes import RecordingRunner

# ipvsadm 1.31, as printed in the lab guest
STATS = """IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  10.254.0.20:80                      3       18       15     1194     1620
  -> 172.20.1.2:8080                     1        6        5      398      540
  -> 172.20.2.2:8080                     2       12       10      796     1080
UDP  10.254.0.10:53                      0        0        0        0        0
TCP  [fd00:254::50]:80                   7       42       35     3000     4000
TCP  10.10.10.10:80                      9        9        9        9        9
"""
RATES = """IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS
  -> RemoteAddress:Port
TCP  10.254.0.20:80                      1        9        7      597      810
  -> 172.20.1.2:8080                     1        9        7      597      810
TCP  [fd00:254::50]:80                   0        0        0        0        0
"""
ORIGINS = {("tcp", "10.254.0.20", 80): Origin("default", "web", "http", "ClusterIP"),
           ("udp", "10.254.0.10", 53): Origin("kube-system", "dns", "dns", "ClusterIP"),
           ("tcp", "fd00:254::50", 80): Origin("default", 'we"b\\x', "http", "ClusterIP")}


def test_parse_traffic_reads_service_lines_of_both_listings():
    traffic = parse_traffic(STATS, RATES)
    assert traffic[("tcp", "10.254.0.20", 80)] == Traffic(3, 18, 15, 1194, 1620, 1, 9, 7, 597, 810)
    assert traffic[("udp", "10.254.0.10", 53)] == Traffic()
    assert traffic[("tcp", "fd00:254::50", 80)].bytes_out == 4000
    assert parse_traffic("", "") == {}
    # A line ipvsadm shortened (no --exact: 1K) is skipped rather than misread.
    assert parse_traffic("TCP  10.0.0.1:80  1K 2 3 4 5\n", "") == {}


class Collector:
    def __init__(self, collect):
        self.collect = collect


def exposition(collect) -> list[str]:
    """The /metrics lines prometheus_client writes for a collector."""
    registry = CollectorRegistry()
    registry.register(Collector(collect))
    return generate_latest(registry).decode().splitlines()


def test_render_labels_only_kipvs_virtual_servers_and_escapes_names():
    lines = exposition(lambda: traffic_families(parse_traffic(STATS, RATES), ORIGINS))
    assert 'kipvs_service_total_connections{namespace="default",port="80",protocol="TCP",service="web",' \
           'vip="10.254.0.20"} 3.0' in lines
    assert 'kipvs_service_bps_out{namespace="default",port="80",protocol="TCP",service="web",vip="10.254.0.20"} 810.0' \
        in lines
    assert 'kipvs_service_packets_in{namespace="kube-system",port="53",protocol="UDP",service="dns",' \
           'vip="10.254.0.10"} 0.0' in lines
    assert 'kipvs_service_bytes_out{namespace="default",port="80",protocol="TCP",service="we\\"b\\\\x",' \
           'vip="fd00:254::50"} 4000.0' in lines
    assert not any("10.10.10.10" in line for line in lines)  # not kipvs's
    # Typed gauge, as kube-router types the same series (a Prometheus client counter would be named *_total).
    assert "# TYPE kipvs_service_total_connections gauge" in lines and "# TYPE kipvs_service_cps gauge" in lines
    names = {line.split("{")[0] for line in lines if not line.startswith("#")}
    assert names == {f"kipvs_service_{n}" for n in ("total_connections", "packets_in", "packets_out", "bytes_in",
                                                    "bytes_out", "pps_in", "pps_out", "cps", "bps_in", "bps_out")}


def test_read_on_scrape_at_most_once_per_interval_and_failures_counted():
    now = [100.0]
    runner = RecordingRunner({"ipvsadm -L -n --stats --exact": STATS, "ipvsadm -L -n --rate --exact": RATES})
    collector = TrafficMetrics(runner, lambda: ORIGINS, min_interval=5.0, clock=lambda: now[0])
    metrics = Metrics()
    metrics.add_collector(collector)
    text = metrics.render()
    assert 'kipvs_service_total_connections{namespace="default",port="80",protocol="TCP",service="web",' \
           'vip="10.254.0.20"} 3.0' in text
    assert "kipvs_sync_duration_seconds_count 0.0" in text  # the rest of /metrics is still there
    metrics.render()
    assert len(runner.reads) == 2  # the second scrape reused the first read
    now[0] += 5
    metrics.render()
    assert len(runner.reads) == 4

    class Failing(RecordingRunner):
        def run(self, argv, stdin=None):
            raise CommandFailed(argv, 1, "Memory allocation problem")

    broken = TrafficMetrics(Failing(), lambda: ORIGINS)
    lines = exposition(broken.collect)
    assert "kipvs_service_stats_errors_total 1.0" in lines
    assert not any(line.startswith("kipvs_service_total_connections{") for line in lines)
