"""docs/show.svg is what today's renderer draws from docs/show.json, a report of today's schema."""
import importlib.util
import json
from pathlib import Path

from kipvs.troubleshoot.fields import SHOW_SCHEMA

SCRIPT = Path(__file__).resolve().parent.parent.parent / "scripts" / "make_screenshot.py"
spec = importlib.util.spec_from_file_location("make_screenshot", SCRIPT)
make_screenshot = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_screenshot)
PICTURE, REPORT, svg = make_screenshot.PICTURE, make_screenshot.REPORT, make_screenshot.svg


def test_the_readmes_picture_of_show_is_current():
    report = json.loads(REPORT.read_text())
    assert report["schema"] == SHOW_SCHEMA, "docs/show.json is an old report: capture it again (scripts/make_screenshot.py)"
    assert PICTURE.read_text() == svg(report), "docs/show.svg is stale: run scripts/make_screenshot.py"
