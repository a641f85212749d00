"""Runs inside the lab guest (see scripts/capture-fixtures): builds a node namespace
in known states and records what each read command prints, as JSON fixtures."""
import json
import os
import subprocess
from pathlib import Path

OUT = Path(os.environ["KIPVS_LAB_OUT"])
NS = "capture"

READS = [
    ["ip", "-j", "addr", "show"],
    ["ip", "-j", "-4", "route", "show", "table", "local"],
    ["ip", "-j", "-6", "route", "show", "table", "local"],
    ["ip", "-j", "-4", "route", "show", "default"],
    ["ip", "-j", "-6", "route", "show", "default"],
    ["ipvsadm", "-S", "-n"],
    ["ipvsadm", "-L", "-n", "--stats"],
    ["ipvsadm", "-L", "-n", "--rate"],
    ["ipvsadm", "-L", "-n", "--exact"],
]


def run(*argv, stdin=None):
    return subprocess.run(["ip", "netns", "exec", NS, *argv], input=stdin, text=True, capture_output=True, check=True).stdout


def ip_batch(lines):
    run("ip", "-batch", "-", stdin="\n".join(lines) + "\n")


def record(name, description):
    outputs = {" ".join(argv): run(*argv) for argv in READS}
    (OUT / f"{name}.json").write_text(json.dumps({"description": description, "outputs": outputs}, indent=1) + "\n")


def main():
    subprocess.run(["ip", "netns", "add", NS], check=True)
    ip_batch([
        "link set lo up",
        "link add eth0 type dummy", "link set eth0 up",
        "addr add 192.168.123.249/24 dev eth0", "addr add 192.168.123.77/24 dev eth0",
        "addr add fd00:123::249/64 dev eth0 nodad",
        "route add default via 192.168.123.1 dev eth0", "route add ::/0 via fd00:123::1 dev eth0",
        "link add kube-dummy-if type dummy", "link set kube-dummy-if up",
        "addr add 10.254.0.1/32 dev kube-dummy-if", "addr add 10.254.0.10/32 dev kube-dummy-if",
        "addr add fd00:254::10/128 dev kube-dummy-if nodad",
        "link add other0 type dummy", "link set other0 up", "addr add 10.99.0.1/32 dev other0",
    ])
    run("ipvsadm", "-R", stdin="\n".join([
        "-A -t 10.254.0.1:443 -s rr",
        "-a -t 10.254.0.1:443 -r 192.168.123.250:6443 -m -w 1",
        "-A -t 10.254.0.10:80 -s wrr -p 10800",
        "-a -t 10.254.0.10:80 -r 172.20.1.2:8080 -m -w 1",
        "-a -t 10.254.0.10:80 -r 172.20.2.2:8080 -m -w 3",
        "-A -u 10.254.0.10:53 -s sh -b sh-fallback,sh-port",
        "-a -u 10.254.0.10:53 -r 172.20.1.3:53 -m -w 1",
        "-A --sctp-service 10.254.0.10:9000 -s mh -b mh-port",
        "-a --sctp-service 10.254.0.10:9000 -r 172.20.1.4:9000 -m -w 1",
        "-A -t [fd00:254::10]:80 -s lc",
        "-a -t [fd00:254::10]:80 -r [fd00:20:1::2]:8080 -m -w 1",
        "-A -t 192.168.123.249:30080 -s rr",
        "-a -t 192.168.123.249:30080 -r 172.20.1.2:8080 -m -w 0",
        "-A -f 42 -s rr",
        "-a -f 42 -r 172.20.1.2:0 -m -w 1",
        "-A -t 10.0.0.5:22 -s wlc",
        "-a -t 10.0.0.5:22 -r 10.0.0.6:22 -g -w 1",
        "-a -t 10.0.0.5:22 -r 10.0.0.7:22 -i -w 2",
    ]) + "\n")
    record("node-before-fix", "node3 with service addresses whose local routes still have the VIP as source; "
                              "IPVS services of every shape kipvs parses")
    ip_batch([
        "route replace local 10.254.0.1 dev kube-dummy-if proto kernel scope host src 192.168.123.249 table local",
        "route replace local 10.254.0.10 dev kube-dummy-if proto kernel scope host src 192.168.123.249 table local",
        "route replace local fd00:254::10 dev kube-dummy-if proto kernel scope host src fd00:123::249 table local",
        "route del local fd00:254::10 dev kube-dummy-if table local proto kernel metric 0",
    ])
    record("node-after-fix", "the same node after its local routes were repaired")
    subprocess.run(["ip", "netns", "del", NS], check=True)


if __name__ == "__main__":
    main()
