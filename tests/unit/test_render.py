import io
import sys

from kipvs.render import print_show

REPORT = {"schema": 2, "mode": "cluster",
          "node": {"name": "node3", "ips": {"ipv4": "192.168.123.249"}, "interface": "kube-dummy-if"},
          "in_sync": False, "routes": [{"address": "10.96.0.10", "src": ["10.96.0.10"], "expected_src":
                                        "192.168.123.249", "ok": False}],
          "services": [{"namespace": "default", "name": "web", "virtual_servers": [
              {"protocol": "tcp", "address": "10.96.0.10", "port": 80, "label": "TCP 10.96.0.10:80",
               "kind": "ClusterIP", "scheduler": "rr", "flags": [], "persistent": None, "differences": [],
               "state": "missing", "real_servers": [
                   {"address": "10.1.0.5", "port": 8080, "label": "10.1.0.5:8080",
                    "pod": "web-7d4b9c-x1a-very-long-pod-name-indeed", "node": "node-a", "forward": "masq",
                    "kernel_forward": None, "weight": 1, "kernel_weight": None, "active": 2, "inactive": 3,
                    "cps": 0, "state": "missing"}]}]}],
          "drift": {"commands": ["ipvsadm -A -t 10.96.0.10:80 -s rr"]}, "foreign_virtual_servers": ["FWM 7"],
          "problems": [{"text": "Service default/bad: spec.ports[0].port: 70000 is not a port (1-65535); port skipped"}]}


def test_piped_show_is_not_cut_to_80_columns_even_with_a_dumb_terminal(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setenv("TERM", "dumb")
    monkeypatch.delenv("COLUMNS", raising=False)
    print_show(REPORT)
    text = out.getvalue()
    assert "problem: Service default/bad: spec.ports[0].port: 70000 is not a port (1-65535); port skipped" in text
    assert "web-7d4b9c-x1a-very-long-pod-name-indeed" in text
    assert "default/web" in text and "ipvsadm -A -t 10.96.0.10:80 -s rr" in text and "FWM 7" in text
    assert "\x1b[" not in text  # no colour codes when piped
