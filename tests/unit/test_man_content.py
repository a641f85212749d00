"""What the man pages must say beyond the options (scripts/gen_man.py; test_packaging checks they are current)."""
from pathlib import Path

from kipvs.metrics import Metrics

MAN = Path(__file__).resolve().parent.parent.parent / "man"


def test_files_name_the_lock_the_drain_record_and_every_tool_kipvs_runs():
    for page in MAN.glob("*.8"):
        text = page.read_text()
        assert "keeps no state" not in text and "runs only" not in text, page.name
        for word in ("/run/kipvs/kipvs.lock", "/run/kipvs/draining.json", "iptables\\-restore", "ipset", "conntrack"):
            assert word in text.split(".SH FILES")[1], (page.name, word)


def test_fix_routes_says_its_neighbour_flush_is_host_wide():
    text = (MAN / "kipvs-fix-routes.8").read_text()
    assert "ip neigh flush nud incomplete" in text.replace("\\-", "-") and "host\\-wide" in text


def test_watch_lists_every_metric_it_serves():
    text = (MAN / "kipvs-watch.8").read_text().replace("\\-", "-").replace("\\e", "\\")
    names = [line.split()[2] for line in Metrics().render().splitlines() if line.startswith("# HELP")]
    assert names and all(name in text.split(".SH METRICS")[1] for name in names)
    assert "kipvs_service_cps" in text and "kipvs_service_stats_read_seconds" in text


def test_show_and_doctor_document_their_json_schema():
    assert '"schema" is 2' in (MAN / "kipvs-show.8").read_text()
    assert '"schema" 1' in (MAN / "kipvs-doctor.8").read_text()

