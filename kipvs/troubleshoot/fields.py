"""Typed JSON fields `kipvs show` and `kipvs doctor` share: one virtual or real server, one problem.

The report's layout is versioned (SHOW_SCHEMA) and documented in kipvs-show(8); a consumer
checks `schema` before reading anything else.
"""
from __future__ import annotations

from kipvs.facts.ipvsadm import Counters
from kipvs.model import RealServer, VirtualServer, host_port

SHOW_SCHEMA = 2  # 1: the unversioned report (addresses as "TCP 10.0.0.1:80", problems as prose)


def virtual_server_fields(vs: VirtualServer) -> dict:
    return {"protocol": vs.protocol, "address": vs.ip, "port": vs.port, "label": vs.label(),
            "scheduler": vs.scheduler, "flags": list(vs.flags), "persistent": vs.persistent,
            "options": vs.options_args()}


def differences(wanted: dict, kernel: dict | None, names: tuple[str, ...]) -> list[dict]:
    """[{field, wanted, kernel}] for each of `names` whose values differ; nothing when one side is absent."""
    if kernel is None:
        return []
    return [{"field": name, "wanted": wanted[name], "kernel": kernel[name]} for name in names
            if wanted[name] != kernel[name]]


VIRTUAL_SERVER_COMPARED = ("scheduler", "flags", "persistent", "options")


def real_server_fields(key: tuple[str, int], wanted: RealServer | None, kernel: RealServer | None,
                       counters: Counters, rate: Counters) -> dict:
    """Both sides' weight and forwarding method (None where a side has no such real server)."""
    ip, port = key
    row = {"address": ip, "port": port, "label": host_port(ip, port),
           "weight": wanted.weight if wanted else None, "kernel_weight": kernel.weight if kernel else None,
           "forward": wanted.forward if wanted else None, "kernel_forward": kernel.forward if kernel else None,
           "active": counters.active, "inactive": counters.inactive,
           "cps": rate.cps, "in_bps": rate.in_bps, "out_bps": rate.out_bps}
    row["differences"] = [{"field": name, "wanted": row[name], "kernel": row[f"kernel_{name}"]}
                          for name in ("weight", "forward") if wanted and kernel and row[name] != row[f"kernel_{name}"]]
    if wanted and kernel and not row["differences"] and not wanted.same_options(kernel):
        row["differences"].append({"field": "options", "wanted": wanted.options_args(),
                                   "kernel": kernel.options_args()})
    return row


def problem_fields(problem) -> dict:
    """A cluster.Problem as data: `object` is "Service default/web" (or "object 3 of FILE")."""
    kind, _, ref = problem.object.partition(" ")
    namespace, slash, name = ref.partition("/")
    return {"kind": kind, "namespace": namespace if slash else None, "name": name if slash else ref,
            "field": problem.field, "message": problem.message, "text": str(problem)}
