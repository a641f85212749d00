"""Sync cost on a real kernel (run inside the lab guest: scripts/bench does). Prints absolute times and
the ratios the performance targets are about, all measured in this one run.

    python benchmarks/bench_lab.py [--services 1000] [--endpoints 10] [--naive-sample 300] [--rounds 3]
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.synthetic import NODE_IP, NODE_NAME, objects  # noqa: E402

NS = "kipvs-bench"


def sh(*argv, stdin=None):
    subprocess.run(argv, input=stdin, text=True, check=True, capture_output=True)


def setup_namespace() -> None:
    sh("ip", "netns", "add", NS)
    sh("ip", "-n", NS, "-batch", "-", stdin=f"link set lo up\nlink add eth0 type dummy\nlink set eth0 up\n"
                                            f"addr add {NODE_IP}/24 dev eth0\nroute add default via 192.168.123.1\n")


def reset_node() -> None:
    """Back to an empty node: no IPVS services, no dummy interface."""
    subprocess.run(["ipvsadm", "-C"], check=True)
    subprocess.run(["ip", "link", "del", "kube-dummy-if"], capture_output=True)


def timed(fn):
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def inside(services: int, endpoints: int, naive_sample: int, rounds: int) -> None:
    from kipvs.reconcile import NodeIdentity, apply_and_verify, sync_once
    from kipvs.config import ProxyOptions
    from kipvs.desired import build_desired
    from kipvs.facts.kernel import KernelFacts, read_kernel
    from kipvs.incremental import IncrementalDesired, KernelIndex, object_key
    from kipvs.plan import plan_sync
    from kipvs.config import NetfilterOptions
    from kipvs.netfilter.sync import cleanup_netfilter, sync_netfilter
    from kipvs.runner import BATCH_ARGV, Runner
    from kipvs.sources import snapshot_from_objects

    class CountingRunner(Runner):
        """Counts the rounds of writes (apply calls with lines): a sync that converges by its one plan has 1."""
        applied = 0

        def apply(self, batches):
            self.applied += any(batch.lines for batch in batches)
            return super().apply(batches)

    options, node, runner = ProxyOptions(), NodeIdentity(NODE_NAME), CountingRunner(timeout=600)
    runner.start_helper()  # as `kipvs sync` does (environment.make_runner): before the cluster state is loaded
    items = objects(services, endpoints)
    snapshot = snapshot_from_objects(items, "bench")
    desired = build_desired(snapshot, NODE_NAME, {4: NODE_IP}, options)
    plan = plan_sync(desired, KernelFacts(), options)
    ip_lines = [b for b in plan.batches if b.tool == "ip"][0].lines
    ipvs_lines = [b for b in plan.batches if b.tool == "ipvsadm"][0].lines
    # The timed syncs run with no more held than a `kipvs sync` process holds: `sh` forks this process for
    # every command, and in the guest a fork costs more the larger the heap (subprocess, the floor's, uses vfork).
    del desired, plan
    subprocess.run(["ipvsadm", "-C"], check=True)  # loads ip_vs

    # 1.-2. the floor (the same rules through one raw ipvsadm -R and one raw ip -batch), one read of the
    # full table (the bound a verified sync cannot go under), and kipvs's full sync from an empty node,
    # in `rounds` pairs: the guest's speed drifts by 2-3x within minutes, so each ratio compares
    # neighbours and the median of the rounds is reported. A first untimed floor loads the schedulers.
    def floor():
        subprocess.run(["ip", "-force", "-batch", "-"], input="\n".join(ip_lines) + "\n", text=True, check=True)
        subprocess.run(["ipvsadm", "-R"], input="\n".join(ipvs_lines) + "\n", text=True, check=True)
    floor()
    reset_node()
    rows = []
    for round_ in range(rounds):
        floor_s, _ = timed(floor)
        read_s, _ = timed(lambda: read_kernel(runner))
        reset_node()
        phases = []
        runner.applied = 0
        full_s, full = timed(lambda: sync_once(runner, snapshot, node, options,
                                               lambda phase: phases.append((time.perf_counter(), phase.split()[0]))))
        assert full.converged, full.remaining[:5]
        # Converged by the one plan: a second round of writes during verification would be extra cost.
        assert runner.applied == 1, f"full sync applied {runner.applied} rounds of batches"
        ended = phases[0][0] + full_s
        breakdown = ", ".join(f"{name} {(end - start):.2f}s" for (start, name), (end, _) in
                              zip(phases, phases[1:] + [(ended, "")]))
        rows.append((floor_s, read_s, full_s, breakdown))
        del full
        if round_ < rounds - 1:
            reset_node()
    floor_s, read_s, full_s = (statistics.median(row[i] for row in rows) for i in range(3))
    full_ratio = statistics.median(f / fl for fl, _, f, _ in rows)
    bound_ratio = statistics.median(f / (fl + r) for fl, r, f, _ in rows)
    breakdown = rows[-1][3]
    # 3. no-op resyncs of the converged node, each beside its bound: one read of the kernel (tables
    # dumped and parsed), paired in rounds like the full sync
    noops = []
    for _ in range(rounds):
        noop_phases = []
        noop_s, noop = timed(lambda: sync_once(runner, snapshot, node, options,
                                               lambda phase: noop_phases.append((time.perf_counter(), phase))))
        assert noop.plan.empty
        del noop
        noop_read_s, _ = timed(lambda: read_kernel(runner))
        noops.append((noop_s, noop_read_s, noop_phases[-1][0] - noop_phases[0][0]))  # its own read
    noop_s = statistics.median(n for n, _, _ in noops)
    noop_ratio = statistics.median(n / r for n, r, _ in noops)
    # 3b. what one command costs to start: through the runner (`sh`, which the design requires, forks
    # and runs Python in the child before exec), and raw (subprocess's vfork), medians of 5
    sh_start_s = statistics.median(timed(lambda: runner.run(["true"]))[0] for _ in range(5))
    raw_start_s = statistics.median(timed(lambda: subprocess.run(["true"], check=True))[0] for _ in range(5))
    # 4. one endpoint added to a ClusterIP-only service
    changed = copy.deepcopy(items)
    slice_ = next(o for o in changed if o["kind"] == "EndpointSlice" and o["metadata"]["name"] == "svc-00001-x")
    slice_["endpoints"].append({"addresses": ["172.31.255.254"], "conditions": {"ready": True}, "nodeName": "x"})
    changed_snapshot = snapshot_from_objects(changed, "bench")  # ready before timing, as the no-op's is
    del changed
    one_s, one = timed(lambda: sync_once(runner, changed_snapshot, node, options))
    del changed_snapshot
    writes = one.plan.command_lines()
    assert writes == ["ipvsadm -a -t 10.96.0.2:80 -r 172.31.255.254:8080 -m -w 1"], writes
    # 4b. watch mode: one endpoint added as an event (recompute that Service, plan it against the
    # verified kernel, one write, which ipvsadm -R reports applied: nothing read back)
    state = IncrementalDesired(NODE_NAME, {4: NODE_IP}, [], options)
    state.rebuild(snapshot.services, snapshot.endpoint_slices)
    index = KernelIndex(read_kernel(runner), options.interface)
    event_slice = copy.deepcopy(next(o for o in items if o["kind"] == "EndpointSlice"
                                     and o["metadata"]["name"] == "svc-00003-x"))
    event_slice["endpoints"].append({"addresses": ["172.31.255.253"], "conditions": {"ready": True}})

    def event():
        change = state.apply({}, {object_key(event_slice): event_slice})
        return apply_and_verify(runner, state.view(change), index.view(change), options,
                                scope=lambda k: index.narrow(k, change))
    event_s, event_result = timed(event)
    assert event_result.converged and len(event_result.plan.command_lines()) == 1, event_result.plan.command_lines()
    # 4c. what verifying a full sync costs beside its parts: one whole read, one re-plan
    desired = build_desired(snapshot, NODE_NAME, {4: NODE_IP}, options)
    kernel = read_kernel(runner)
    replan_s, _ = timed(lambda: plan_sync(desired, kernel, options))
    del kernel
    # 4d. netfilter, which the CLI writes after IPVS: shown apart, against its own floor (the same
    # restore input through one raw iptables-restore), so the IPVS figures above compare like with like.
    netfilter = NetfilterOptions(mode="legacy")
    nf_s, nf = timed(lambda: sync_netfilter(runner, desired, snapshot, NODE_NAME, netfilter))
    assert nf.batches and not nf.remaining and nf.unavailable is None, (nf.remaining[:3], nf.unavailable)
    nf_lines = sum(len(b.lines) for b in nf.batches)
    cleanup_netfilter(runner, "legacy")

    def nf_floor():
        for batch in nf.batches:
            subprocess.run(BATCH_ARGV[batch.tool], input="\n".join(batch.lines) + "\n", text=True, check=True)
    nf_floor_s, _ = timed(nf_floor)
    cleanup_netfilter(runner, "legacy")
    # 5. naive: one process per rule, as shell scripts and early kube-router did (sampled, then scaled)
    reset_node()
    sample = ([("ip", line) for line in ip_lines] + [("ipvsadm", line) for line in ipvs_lines])[:naive_sample]

    def naive():
        for tool, line in sample:
            subprocess.run([tool, *line.split()], check=False, capture_output=True)
    naive_sample_s, _ = timed(naive)
    total_rules = len(ip_lines) + len(ipvs_lines)
    naive_s = naive_sample_s / len(sample) * total_rules
    reset_node()

    print(f"lab: real kernel (UML guest), N={services} services x {endpoints} endpoints, "
          f"{len(ipvs_lines)} ipvsadm + {len(ip_lines)} ip rules; {time.strftime('%Y-%m-%d')}")
    print(f"{'measure':<44} {'time':>9}  {'ratio':>10}  target")
    print(f"{'floor: raw ipvsadm -R + raw ip -batch':<44} {floor_s:>8.2f}s  {'1.00x':>10}")
    print(f"{'bound: one kernel read (dump + parse)':<44} {read_s:>8.2f}s  {read_s / floor_s:>9.2f}x")
    print(f"{'bound: one command start through sh':<44} {sh_start_s:>8.2f}s  {sh_start_s / floor_s:>9.3f}x  "
          f"(a raw vfork start: {raw_start_s * 1000:.0f}ms)")
    print(f"{'kipvs full sync from empty (read+apply+verify)':<44} {full_s:>8.2f}s  "
          f"{full_ratio:>9.2f}x  <= 1.25x floor; vs floor + one read {bound_ratio:.2f}x (<= 1.2x)")
    print(f"{'kipvs no-op resync (0 writes)':<44} {noop_s:>8.2f}s  {noop_s / full_s:>9.3f}x  <= 0.15x full sync; "
          f"vs one kernel read {noop_ratio:.2f}x (<= 1.2x)")
    print(f"{'kipvs one endpoint added (1 IPVS write)':<44} {one_s:>8.2f}s  "
          f"{(one_s - noop_s) * 1000:>+8.0f}ms  <= no-op + 1 command start (the write; a silent ipvsadm -R is "
          f"not read back: {sh_start_s * 1000:+.0f}ms)")
    print(f"{'watch event: one endpoint added (1 write)':<44} {event_s:>8.2f}s  "
          f"{event_s / noop_s:>9.3f}x  of a no-op resync")
    print(f"{'naive: one process per rule':<44} {naive_s:>8.2f}s  {naive_s / full_s:>9.1f}x  >= 50x kipvs full sync")
    print(f"(naive timed on {len(sample)} of {total_rules} rules, {naive_sample_s / len(sample) * 1000:.1f} ms "
          f"per process, scaled)")
    print(f"{'netfilter: raw iptables-restore (its floor)':<44} {nf_floor_s:>8.2f}s  {'1.00x':>10}  "
          f"({nf_lines} restore lines, legacy backend)")
    print(f"{'netfilter: kipvs (detect+plan+apply+verify)':<44} {nf_s:>8.2f}s  {nf_s / nf_floor_s:>9.2f}x  "
          f"of its floor; sync with netfilter vs both floors + one read "
          f"{(full_s + nf_s) / (floor_s + read_s + nf_floor_s):.2f}x")
    print(f"(full sync phases, last round: {breakdown}; verifying = one read {read_s:.2f}s + one re-plan "
          f"{replan_s:.2f}s)")
    print(f"({rounds} rounds of floor / one read / full sync, medians above: " +
          "; ".join(f"{fl:.2f} / {r:.2f} / {f:.2f}s = {f / fl:.2f}x, {f / (fl + r):.2f}x" for fl, r, f, _ in rows) + ")")
    print(f"({rounds} rounds of no-op resync (its read + planning) / one read: " +
          "; ".join(f"{n:.2f}s ({own:.2f} + {n - own:.2f}) / {r:.2f}s = {n / r:.2f}x" for n, r, own in noops) + ")")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=int(os.environ.get("KIPVS_BENCH_N", 1000)))
    parser.add_argument("--endpoints", type=int, default=int(os.environ.get("KIPVS_BENCH_M", 10)))
    parser.add_argument("--naive-sample", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3, help="floor / full sync pairs (medians are printed)")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        inside(args.services, args.endpoints, args.naive_sample, args.rounds)
        return
    if os.environ.get("KIPVS_LAB_GUEST") != "1":
        sys.exit("bench_lab.py programs a kernel: run it inside the lab guest (scripts/bench)")
    setup_namespace()
    try:
        subprocess.run(["ip", "netns", "exec", NS, sys.executable, __file__, "--inside", "--services",
                        str(args.services), "--endpoints", str(args.endpoints), "--naive-sample",
                        str(args.naive_sample), "--rounds", str(args.rounds)], check=True)
    finally:
        subprocess.run(["ip", "netns", "del", NS])


if __name__ == "__main__":
    main()
