"""A node's kernel as ip and ipvsadm show it, for host-side watch tests at the runner seam.

It answers the exact reads kipvs makes, in the tools' real output formats (`ipvsadm -S -n`
lines, `ip -j` JSON), and applies the batch lines kipvs writes, so a watch test can check
that the node converged without a real kernel. The real kernel is proven in tests/kernel.
"""
from __future__ import annotations

import json
import threading

from kipvs.facts.ipvsadm import parse_line, split_host_port
from kipvs.facts.kernel import IPVS_SYSCTLS
from kipvs.model import RealServer, VirtualServer
from kipvs.runner import Batch, Result, Runner

NODE_IP = "192.168.1.10"


class SimKernel(Runner):
    def __init__(self, interface: str = "kube-dummy-if"):
        super().__init__()
        self.lock = threading.Lock()
        self.interface = interface
        self.services: dict[tuple, VirtualServer] = {}
        self.real: dict[tuple, dict[tuple, RealServer]] = {}
        self.dummy: dict[str, int] | None = None  # address -> prefix; None: no interface
        self.routes: dict[str, list[str]] = {}  # VIP -> the prefsrc of each of its IPv4 local routes, in order
        self.sysctls = {name: "0" for name in IPVS_SYSCTLS}
        self.batches: list[Batch] = []
        self.reads: list[str] = []

    # --- reads ---

    def run(self, argv, stdin=None) -> str:
        with self.lock:
            if argv[0] == "ip" and argv[-2:] == ["-batch", "-"]:
                family = "-6" if "-6" in argv else "-4"
                return "".join(self._read(f"ip -j {line}" if line.startswith("addr") else f"ip -j {family} {line}")
                               for line in stdin.splitlines() if line)
            return self._read(" ".join(argv))

    def read_file(self, path: str) -> str | None:
        name = path.removeprefix("/proc/sys/").replace("/", ".")
        with self.lock:
            return self.sysctls[name] + "\n" if name in self.sysctls else None

    def _read(self, key: str) -> str:
        self.reads.append(key)
        if key == "ipvsadm -S -n":
            return self._rules()
        if key.startswith("ipvsadm -L -n --exact "):
            return self._listing(parse_line(key.split()[3:])[0])
        if key == "ip -j addr show":
            links = [{"ifname": "eth0", "flags": ["UP"], "addr_info": [
                {"family": "inet", "local": NODE_IP, "prefixlen": 24, "scope": "global"}]}]
            if self.dummy is not None:
                links.append({"ifname": self.interface, "flags": ["UP"], "linkinfo": {"info_kind": "dummy"},
                              "addr_info": [
                    {"family": "inet6" if ":" in ip else "inet", "local": ip, "prefixlen": p, "scope": "global"}
                    for ip, p in self.dummy.items()]})
            return json.dumps(links)
        if key == "ip -j -4 route show table local":
            return json.dumps([{"type": "local", "dst": vip, "dev": self.interface, "protocol": "kernel",
                                "scope": "host", "prefsrc": src} for vip, srcs in self.routes.items() for src in srcs])
        if key in ("ip -j -6 route show table local", "ip -j -6 route show default"):
            return "[]"
        if key == "ip -j -4 route show default":
            return json.dumps([{"dst": "default", "gateway": "192.168.1.1", "dev": "eth0"}])
        raise AssertionError(f"SimKernel: unexpected read {key}")

    def _rules(self) -> str:
        lines = []
        for key, vs in self.services.items():
            lines.append(f"-A {vs.service_args()} {vs.options_args()}")
            for rs in self.real[key].values():
                lines.append(f"-a {vs.service_args()} -r {rs.ip}:{rs.port} -m -w {rs.weight}")
        return "\n".join(lines) + ("\n" if lines else "")

    def _listing(self, key) -> str:
        """`ipvsadm -L -n --exact -t SERVICE`, as ipvsadm prints it (no such service: exit 1)."""
        vs = self.services.get(key)
        if vs is None:
            from kipvs.errors import CommandFailed

            raise CommandFailed(["ipvsadm", "-L"], 1, "Memory allocation problem\nNo such service")
        head = f"{vs.protocol.upper()}  {vs.ip}:{vs.port} {vs.scheduler}"
        head += f" ({','.join(vs.flags)})" if vs.flags else ""
        head += f" persistent {vs.persistent}" if vs.persistent else ""
        lines = ["Prot LocalAddress:Port Scheduler Flags",
                 "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn", head]
        lines += [f"  -> {rs.ip}:{rs.port}  Masq    {rs.weight}      0          0" for rs in self.real[key].values()]
        return "\n".join(lines) + "\n"

    # --- writes ---

    def apply(self, batches):
        results = []
        with self.lock:
            for batch in batches:
                if not batch.lines:
                    continue
                self.batches.append(batch)
                errors = [getattr(self, f"_{batch.tool}")(line.split()) for line in batch.lines]
                # As `ipvsadm -R` does: a refused line is printed and the batch goes on, exit 0.
                results.append(Result((batch.tool,), 0, "", "".join(f"{e}\n" for e in errors if e)))
        return results

    def _ipvsadm(self, tokens) -> str | None:
        """Apply one line; what ipvsadm prints when the kernel refuses it (None: applied)."""
        key, fields = parse_line(tokens)
        op = tokens[0]
        if op == "-A" and key in self.services:
            return "Service already exists"
        if op in ("-E", "-D", "-a", "-e", "-d") and key not in self.services:
            return "No such service"
        if op in ("-A", "-E"):
            flags = fields.get("-b")
            persistent = fields.get("-p")
            self.services[key] = VirtualServer(*key, scheduler=fields["-s"],
                                               flags=tuple(flags.split(",")) if flags else (),
                                               persistent=int(persistent) if persistent else None)
            self.real.setdefault(key, {})
        elif op == "-D":
            self.services.pop(key)
            self.real.pop(key)
        else:
            ip, port = split_host_port(fields["-r"])
            present = (ip, port) in self.real[key]
            if op in ("-d", "-e") and not present:
                return "No such destination"
            if op == "-a" and present:
                return "Destination already exists"
            if op == "-d":
                del self.real[key][(ip, port)]
            else:
                self.real[key][(ip, port)] = RealServer(ip, port, int(fields["-w"]))
        return None

    def _ip(self, tokens):
        if tokens[:2] == ["link", "add"]:
            self.dummy = {}
        elif tokens[:2] == ["link", "del"]:
            self.dummy, self.routes = None, {}
        elif tokens[:2] == ["addr", "add"]:
            ip, prefix = tokens[2].split("/")
            self.dummy[ip] = int(prefix)
            self.routes[ip] = [ip]
        elif tokens[:2] == ["addr", "del"]:
            ip = tokens[2].split("/")[0]
            del self.dummy[ip]
            self._drop_route(ip, ip)  # the kernel removes the route it made, not a repaired one
        elif tokens[:2] == ["route", "replace"]:
            self.routes[tokens[3]] = [tokens[tokens.index("src") + 1]]
        elif tokens[:2] == ["route", "append"]:
            src = tokens[tokens.index("src") + 1]
            if src not in self.routes.setdefault(tokens[3], []):
                self.routes[tokens[3]].append(src)
        elif tokens[:2] == ["route", "del"]:
            self._drop_route(tokens[3], tokens[tokens.index("src") + 1] if "src" in tokens else None)

    def _drop_route(self, vip: str, src: str | None) -> None:
        srcs = [s for s in self.routes.get(vip, []) if src is not None and s != src]
        if srcs:
            self.routes[vip] = srcs
        else:
            self.routes.pop(vip, None)

    def _sysctl(self, tokens):
        name, value = tokens[0].split("=")
        self.sysctls[name] = value
