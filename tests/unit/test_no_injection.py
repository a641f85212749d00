"""Nothing from the cluster reaches a command line unvalidated: arbitrary annotation
and field strings can never add a line, an option or a shell word to what kipvs runs."""
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from kipvs.config import KNOWN_SCHEDULERS, ProxyOptions
from kipvs.desired import build_desired
from kipvs.facts.kernel import KernelFacts
from kipvs.plan import plan_sync
from tests.unit.k8s import ep, eps, snapshot, svc

NODE_IPS = {4: "192.168.1.10"}
SAFE_IPVS_LINE = re.compile(
    r"^-[AEaedD] (-t|-u|--sctp-service) [0-9a-f.:\[\]]+:\d+( -s [a-z]+( -b [a-z-]+(,[a-z-]+)*)?( -p \d+)?)?"
    r"( -r [0-9a-f.:\[\]]+:\d+( -m -w \d+)?)?$")

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=80)
evil = st.one_of(text, st.sampled_from(["rr\n-D -t 10.96.0.1:443", "sh; rm -rf /", "flag-1,flag-2\n-C",
                                        "rr -b sh-port", "$(reboot)", "mh\r\n-A -t 1.2.3.4:1 -s rr"]))


@settings(max_examples=300, deadline=None)
@given(scheduler=evil, flags=evil, local=evil, name=text, port_name=text)
def test_arbitrary_annotations_only_yield_known_lines(scheduler, flags, local, name, port_name):
    annotations = {"kube-router.io/service.scheduler": scheduler, "kube-router.io/service.schedflags": flags,
                   "kipvs.io/scheduler": scheduler, "kube-router.io/service.local": local}
    ports = [{"name": port_name, "port": 80, "protocol": "TCP", "nodePort": 30080}]
    objects = [svc(name or "x", annotations=annotations, ports=ports, type="NodePort"),
               eps(name or "x", [ep("10.1.0.5")], ports=[{"name": port_name, "port": 8080, "protocol": "TCP"}])]
    desired = build_desired(snapshot(*objects), "node-a", NODE_IPS, ProxyOptions())
    for vs in desired.virtual_servers:
        assert vs.scheduler in KNOWN_SCHEDULERS
    plan = plan_sync(desired, KernelFacts(), ProxyOptions())
    for batch in plan.batches:
        for line in batch.lines:
            assert "\n" not in line and "\r" not in line
            if batch.tool == "ipvsadm":
                assert SAFE_IPVS_LINE.match(line), line
    for problem in desired.problems:
        assert "\n" not in str(problem) and "\r" not in str(problem)
