"""The doctor's last hop: the kernel's connection tracking for the address.

IPVS hands its connections to conntrack (net.ipv4.vs.conntrack=1, which kipvs sets; the masquerade
needs it). An entry whose reply comes from a real server the virtual server no longer has is
stale: its flow (typically UDP with a fixed source port) keeps going to a backend that is gone.
"""
from __future__ import annotations

from kipvs.errors import KipvsError, ToolMissing
from kipvs.model import host_port, known_family
from kipvs.troubleshoot.hops_netfilter import kipvs_has_rules, netfilter_facts

from kipvs.troubleshoot.scene import Hop, Scene

VS_CONNTRACK = "net.ipv4.vs.conntrack"


def parse_entries(text: str) -> list[dict]:
    """`conntrack -L` lines -> {protocol, dst, dport, reply_src, reply_sport} (the first src= of a line is
    the original direction's, the second the reply's: the real server for an IPVS connection)."""
    entries = []
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        fields: dict[str, list[str]] = {}
        for word in words:
            key, eq, value = word.partition("=")
            if eq:
                fields.setdefault(key, []).append(value)
        if len(fields.get("src", ())) < 2 or not fields.get("dst"):
            continue
        sports, dports = fields.get("sport", []), fields.get("dport", [])
        entries.append({"protocol": words[0], "dst": fields["dst"][0],
                        "dport": int(dports[0]) if dports else None, "reply_src": fields["src"][1],
                        "reply_sport": int(sports[1]) if len(sports) > 1 else None})
    return entries


def masquerade_expected(scene: Scene) -> bool:
    """kipvs's masquerade needs IPVS connections tracked: with the cluster it is wanted; without it, only
    where kipvs's netfilter rules are in place (on another proxy's node the setting is that proxy's)."""
    if scene.options.netfilter is None:
        return False
    if scene.desired is not None:
        return True
    facts = netfilter_facts(scene)
    return not isinstance(facts, str) and kipvs_has_rules(facts, known_family(scene.ip))


def conntrack_hop(scene: Scene) -> Hop:
    setting = scene.kernel.sysctls.get(VS_CONNTRACK)
    if setting is not None and setting != "1" and masquerade_expected(scene):
        return Hop("conntrack", False, f"{VS_CONNTRACK} = {setting}: IPVS connections are not tracked, so "
                   "they are never masqueraded", f"sysctl -w {VS_CONNTRACK}=1")
    servers = scene.kernel_servers()
    if not servers:
        return Hop("conntrack", None, "no virtual server, so no connections to judge")
    argv = ["conntrack", "-L", "-d", scene.ip]
    try:
        text = scene.runner.run(argv)
    except ToolMissing:
        return Hop("conntrack", None, "conntrack (the tool) is not installed: entries not checked")
    except KipvsError as exc:
        return Hop("conntrack", None, f"`{' '.join(argv)}` failed: {exc}")
    backends = {(vs.protocol, vs.port): {rs.key for rs in vs.real_servers} for vs in servers}
    entries = [e for e in parse_entries(text) if e["dst"] == scene.ip
               and (e["protocol"], e["dport"]) in backends]
    stale = [e for e in entries if (e["reply_src"], e["reply_sport"]) not in backends[(e["protocol"], e["dport"])]]
    if stale:
        shown = sorted({f"{e['protocol'].upper()} :{e['dport']} → {host_port(e['reply_src'], e['reply_sport'])}"
                        for e in stale})
        fixes = sorted({f"conntrack -D -p {e['protocol']} -d {scene.ip} --dport {e['dport']} "
                        f"--reply-src {e['reply_src']}" for e in stale})
        return Hop("conntrack", False, f"{len(stale)} of {len(entries)} entries go to a real server that is gone: "
                   + ", ".join(shown), " && ".join(fixes))
    return Hop("conntrack", True, f"{len(entries)} entries, all to current real servers"
               + (f"; {VS_CONNTRACK} = {setting}" if setting else ""))
