"""Render docs/show.svg, the README's picture of `kipvs show`, from a report `kipvs show --output json` wrote.

    scripts/lab --out /tmp/shot -- python scripts/make_screenshot.py --capture   # in the guest: sync + show
    python scripts/make_screenshot.py /tmp/shot/show.json                      # on the host: the SVG
"""
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
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
        node3.run("ipvsadm", "-D", "-t", "10.254.0.30:80")  # some drift to show
        report = node3.kipvs("show", "--output", "json", *args).stdout
        (Path(os.environ["KIPVS_LAB_OUT"]) / "show.json").write_text(report)
    finally:
        cluster.close()


def render(path: str) -> None:
    from rich.console import Console

    from kipvs.render import show_view

    console = Console(record=True, width=118, file=open(os.devnull, "w"))
    console.print("[bold]$ kipvs show[/] --node-name node3 -f examples/cluster.yaml …")
    console.print(show_view(json.loads(Path(path).read_text())))
    (REPO / "docs").mkdir(exist_ok=True)
    console.save_svg(str(REPO / "docs" / "show.svg"), title="kipvs show")


if __name__ == "__main__":
    capture() if sys.argv[1:] == ["--capture"] else render(sys.argv[1])
