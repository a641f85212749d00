"""What the doctor's hops look at, read once: the address asked about, the kernel's facts, and the
cluster's desired state when it could be read."""
from __future__ import annotations

from dataclasses import dataclass, field

from kipvs.config import ProxyOptions
from kipvs.desired import Desired
from kipvs.facts.kernel import KernelFacts
from kipvs.model import VirtualServer
from kipvs.plan import plan_sync
from kipvs.reconcile import NodeIdentity
from kipvs.runner import Runner
from kipvs.sources import Snapshot


@dataclass(frozen=True)
class Hop:
    name: str
    ok: bool | None  # None: not judged (an earlier hop is broken, or nothing here to judge)
    evidence: str
    fix: str | None = None  # the exact command that would repair it

    @property
    def mark(self) -> str:
        return "✔" if self.ok else "·" if self.ok is None else "✘"


@dataclass
class Scene:
    """Everything the hops look at, read once."""

    ip: str
    port: int | None
    options: ProxyOptions
    kernel: KernelFacts
    node_ips: dict[int, str]
    desired: Desired | None  # None: the cluster could not be read
    snapshot: Snapshot | None
    node: NodeIdentity
    runner: Runner
    cache: dict = field(default_factory=dict)  # facts more than one hop reads

    def kernel_servers(self) -> list[VirtualServer]:
        return [vs for vs in self.kernel.rules if self.matches(vs)]

    def wanted_servers(self) -> list[VirtualServer]:
        return [vs for vs in self.desired.virtual_servers if self.matches(vs)] if self.desired else []

    def matches(self, vs: VirtualServer) -> bool:
        return vs.protocol != "fwmark" and vs.ip == self.ip and (self.port is None or vs.port == self.port)

    @property
    def node_address(self) -> bool:
        """A NodePort on one of the node's own addresses: no dummy-interface address, no local route of kipvs's."""
        return any(a.ip == self.ip and a.interface != self.options.interface for a in self.kernel.net.addresses)

    def fix_lines(self, vs: VirtualServer) -> list[str]:
        """What `kipvs sync` would run for this virtual server, as standalone commands."""
        if self.desired is None:
            return []
        needle = vs.service_args() + " "
        return [line for line in plan_sync(self.desired, self.kernel, self.options).command_lines()
                if needle in line + " "]
