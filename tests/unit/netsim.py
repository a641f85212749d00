"""A tiny model of table `local` for fix-routes unit tests: node3 of the lab, whose routes change the way
the kernel changes them (as measured in the lab, see LAB.md and kipvs/routes.py):

- IPv4 `append` adds after the routes of the same destination (File exists for an identical one);
  `replace` takes over the first route of that destination, whatever its device; `del` matches
  device, protocol, src and metric.
- IPv6 `replace` without a metric writes metric 1024 (in place when one is there); `del` matches
  device and protocol, and metric 0 matches any metric (the lowest goes first); an IPv6 route
  through a down device is refused.
Nothing here runs a process: the recording runner answers reads from `state()`.
"""
from __future__ import annotations

import json

from kipvs.runner import Batch, Result
from tests.unit.fakes import RecordingRunner, fixture_outputs

DUMMY = "kube-dummy-if"


class FakeNode:
    def __init__(self) -> None:
        base = fixture_outputs("node-before-fix")
        self.base = base
        self.links = {link["ifname"]: link for link in json.loads(base["ip -j addr show"])}
        for link in self.links.values():
            link["linkinfo"] = {"info_kind": "dummy"} if link["ifname"] in (DUMMY, "other0") else {}
        self.routes = json.loads(base["ip -j -4 route show table local"]) + \
            json.loads(base["ip -j -6 route show table local"])
        self.default4 = json.loads(base["ip -j -4 route show default"])
        self.default6 = json.loads(base["ip -j -6 route show default"])
        self.errors: list[str] = []
        self.neighbour_flushes = 0

    # --- what an operator or another proxy does ----------------------------------------------
    def add_link(self, name: str, up: bool = True) -> None:
        self.links[name] = {"ifname": name, "flags": ["BROADCAST", "NOARP"] + (["UP", "LOWER_UP"] if up else []),
                            "linkinfo": {"info_kind": "dummy"}, "addr_info": []}

    def set_up(self, name: str, up: bool) -> None:
        flags = [f for f in self.links[name]["flags"] if f not in ("UP", "LOWER_UP")]
        self.links[name]["flags"] = flags + (["UP", "LOWER_UP"] if up else [])

    def add_address(self, dev: str, ip: str, **flags) -> None:
        v6 = ":" in ip
        self.links[dev]["addr_info"].append({"family": "inet6" if v6 else "inet", "local": ip,
                                             "prefixlen": 128 if v6 else 32, "scope": "global", **flags})
        self.routes.append(self.kernel_route(dev, ip))

    def remove_address(self, dev: str, ip: str) -> None:
        """The kernel removes only the route it made for the address (IPv4: src = the address)."""
        self.links[dev]["addr_info"] = [a for a in self.links[dev]["addr_info"] if a["local"] != ip]
        self.routes = [r for r in self.routes if not (r["dst"] == ip and r["dev"] == dev and r.get("protocol") ==
                                                      "kernel" and r.get("prefsrc", ip) == ip and
                                                      r.get("metric", 0) == 0)]

    @staticmethod
    def kernel_route(dev: str, ip: str) -> dict:
        if ":" in ip:
            return {"type": "local", "dst": ip, "dev": dev, "protocol": "kernel", "metric": 0}
        return {"type": "local", "dst": ip, "dev": dev, "protocol": "kernel", "scope": "host", "prefsrc": ip}

    def routes_for(self, dst: str) -> list[tuple]:
        return [(r["dev"], r.get("prefsrc"), r.get("metric", 0)) for r in self.routes if r["dst"] == dst]

    # --- the kernel's side ----------------------------------------------------------------------
    def state(self) -> dict[str, str]:
        state = dict(self.base)
        v4 = [r for r in self.routes if ":" not in r["dst"]]
        v6 = [r for r in self.routes if ":" in r["dst"]]
        state.update({"ip -j addr show": json.dumps(list(self.links.values())),
                      "ip -j -4 route show table local": json.dumps(v4),
                      "ip -j -6 route show table local": json.dumps(v6),
                      "ip -j -4 route show default": json.dumps(self.default4),
                      "ip -j -6 route show default": json.dumps(self.default6)})
        return state

    def run_line(self, line: str) -> None:
        words = line.split()
        if words[:2] == ["neigh", "flush"]:
            self.neighbour_flushes += 1  # no neighbour table here: only that it was asked for
            return
        assert words[0] == "route" and words[2] == "local", line
        verb, dst = words[1], words[3]
        opts = dict(zip(words[4::2], words[5::2]))
        v6 = ":" in dst
        dev = opts.get("dev")
        if verb == "del":
            matches = [r for r in self.routes if r["dst"] == dst and r.get("type") == "local"
                       and (not dev or r["dev"] == dev)
                       and ("proto" not in opts or r.get("protocol") == opts["proto"])
                       and (v6 or "src" not in opts or r.get("prefsrc") == opts["src"])
                       and (not int(opts.get("metric", 0)) or r.get("metric", 0) == int(opts["metric"]))]
            if v6:
                matches.sort(key=lambda r: r.get("metric", 0))
            if not matches:
                self.errors.append(f"{line}: No such process")
                return
            self.routes.remove(matches[0])
            return
        if v6 and "UP" not in self.links[dev]["flags"]:
            self.errors.append(f"{line}: Nexthop device is not up")
            return
        route = {"type": "local", "dst": dst, "dev": dev, "protocol": opts.get("proto"), "prefsrc": opts.get("src")}
        if v6:
            route["metric"] = int(opts.get("metric", 1024))
        else:
            route["scope"] = "host"
        same = [r for r in self.routes if r["dst"] == dst and r.get("type") == "local"
                and r.get("metric", 0) == route.get("metric", 0)]
        if any(r["dev"] == dev and r.get("prefsrc") == route["prefsrc"] for r in same) and verb == "append":
            self.errors.append(f"{line}: File exists")
        elif verb == "replace" and same and (not v6 or any(r["dev"] == dev for r in same)):
            target = same[0] if not v6 else next(r for r in same if r["dev"] == dev)
            self.routes[self.routes.index(target)] = route
        else:
            position = max((self.routes.index(r) for r in same), default=len(self.routes) - 1) + 1
            self.routes.insert(position, route)


class SimRunner(RecordingRunner):
    """Reads answer from the node as it is now; an `ip` batch changes it, line by line, as the kernel would.
    `between`: called before each batch (another actor changing the node meanwhile)."""

    def __init__(self, node: FakeNode, dry_run: bool = False, out=None, between=None):
        super().__init__(node.state(), dry_run=dry_run, out=out)
        self.node = node
        self.between = between

    def answer(self, key: str) -> str:
        self.states = [self.node.state()]
        return super().answer(key)

    def apply(self, batches: list[Batch]) -> list[Result]:
        results = super().apply(batches)
        if not self.dry_run:
            for batch in batches:
                if batch.lines and self.between:
                    self.between(self.node)
                for line in batch.lines:
                    self.node.run_line(line)
        return results
