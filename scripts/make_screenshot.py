"""Render docs/show.svg, the README's picture of `kipvs show`, from docs/show.json, a report that
`kipvs show --output json` wrote in the lab. tests/unit/test_screenshot.py fails when the picture is stale
(the renderer or the report's schema changed): capture again, then render.

    scripts/lab --out /tmp/shot -- .venv/bin/python scripts/make_screenshot.py --capture   # guest: sync, faults, show
    cp /tmp/shot/show.json docs/show.json
    .venv/bin/python scripts/make_screenshot.py                                          # host: docs/show.svg
"""
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REPORT = REPO / "docs" / "show.json"
PICTURE = REPO / "docs" / "show.svg"
sys.path.insert(0, str(REPO))


def capture() -> None:
    from tests.kernel.lab import Cluster

    cluster = Cluster()
    try:
        for name in ("node1", "node2", "node3"):
            cluster.add_pod(cluster.add_node(name), f"{name[-1]}-web")
        node3 = cluster.nodes["node3"]
        args = ["-f", str(REPO / "examples/cluster.yaml"), "--node-name", "node3",
                "--service-external-ip-range", "192.168.200.0/24", "--loadbalancer-ip-range", "192.168.201.0/24"]
        node3.kipvs("sync", *args)
        node3.curl("http://10.254.0.20/")
        # Some drift to show: a virtual server deleted and a weight set to 0 by hand.
        node3.run("ipvsadm", "-D", "-t", "10.254.0.30:80")
        node3.run("ipvsadm", "-e", "-t", "10.254.0.20:80", "-r", "172.20.2.2:8080", "-m", "-w", "0")
        report = node3.kipvs("show", "--output", "json", *args).stdout
        (Path(os.environ["KIPVS_LAB_OUT"]) / "show.json").write_text(report)
    finally:
        cluster.close()


def svg(report: dict) -> str:
    from rich.console import Console

    from kipvs.render import show_view

    console = Console(record=True, width=118, file=open(os.devnull, "w"))
    console.print("[bold]$ kipvs show[/] --node-name node3 -f examples/cluster.yaml …")
    console.print(show_view(report))
    return console.export_svg(title="kipvs show")


if __name__ == "__main__":
    if sys.argv[1:] == ["--capture"]:
        capture()
    else:
        PICTURE.write_text(svg(json.loads(REPORT.read_text())))
