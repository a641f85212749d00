"""File mode on every valid endpoint shape: the same N Services x M endpoints written by three generators
(benchmarks/synthetic.py, benchmarks/bare_cluster.py, benchmarks/controller_cluster.py, the last with and
without topology hints and dual-stack), each planned by `kipvs sync --dry-run -f dump.json`'s code in a
fresh process (bench_host.py --file-mode), rounds interleaved across shapes. Prints each shape's time and
its cost per endpoint beside the goals (the slowest shape <= 5 s at 50,000 x 10; per-endpoint cost of the
slowest shape <= 1.5x the fastest's), and how many endpoints of a sample left the fast loop for the
general reader (0 on every valid shape). Then the JSON decoders on a sample of each shape (decoding only,
and decoding with kipvs's parsing): the standard library's json, orjson (when installed; not a dependency),
msgspec building every object, and kipvs.sources.fast_json's structs of only the fields kipvs reads.

    python benchmarks/bench_shapes.py [--services 50000] [--endpoints 10] [--rounds 2] [--shapes a,b]
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import bare_cluster, controller_cluster, synthetic  # noqa: E402

BENCH_HOST = str(Path(__file__).resolve().parent / "bench_host.py")
GOAL_SECONDS, GOAL_RATIO, GOAL_SERVICES = 5.0, 1.5, 50000
SAMPLE_SLICES = 400  # slices per shape parsed in this process to count who leaves the fast loop
DECODER_SERVICES = 5000  # Services per shape in the decoders' comparison

# name -> (generator(services, endpoints) -> items, what its endpoints carry)
SHAPES = {
    "synthetic": (synthetic.objects, "addresses, conditions.ready, nodeName"),
    "bare": (bare_cluster.objects, "addresses only"),
    "controller": (controller_cluster.objects, "3 conditions, nodeName, targetRef, zone"),
    "hints": (partial(controller_cluster.objects, hints=True), "controller + hints.forZones"),
    "dual-stack": (partial(controller_cluster.objects, dual_stack=True), "controller, dual-stack pods: 2 slices"),
}


def write_dump(items: list, path: str) -> int:
    """The List as kubectl prints it (one item at a time: the largest dumps are ~250 MB); its size in bytes."""
    with open(path, "w") as out:
        out.write('{"apiVersion": "v1", "kind": "List", "items": [')
        for i, item in enumerate(items):
            out.write(("," if i else "") + json.dumps(item))
        out.write("]}")
        return out.tell()


def general_reader_count(slices: list) -> tuple[int, int]:
    """(endpoints that went through cluster._endpoint, endpoints parsed) for some of a dump's slices: the
    fast loop's coverage of this shape."""
    import kipvs.cluster as cluster

    calls, general = [0], cluster._endpoint

    def counted(*args):
        calls[0] += 1
        return general(*args)

    cluster._endpoint = counted
    try:
        parsed = [cluster.parse_endpoint_slice(o, []) for o in slices]
    finally:
        cluster._endpoint = general
    return calls[0], sum(len(s.endpoints) for s in parsed if s)


def fast_decoder_takes(items: list) -> bool:
    """Whether kipvs.sources.fast_json reads this shape (else json does: msgspec missing, or a dump it leaves to json)."""
    from kipvs.sources.fast_json import load_list

    return load_list(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}).encode()) is not None


def _best_cpu(call, rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        gc.collect()
        gc.disable()  # as file mode decodes (kipvs.gc_pause)
        started = time.process_time()
        result = call()
        best = min(best, time.process_time() - started)
        gc.enable()
        del result
    return best


def decoders(name: str, services: int, endpoints: int) -> dict:
    """CPU µs per endpoint of each decoder on one shape's List of `services` Services (best of 3)."""
    from kipvs.sources import fast_json
    from kipvs.sources.file import _load_json

    items = SHAPES[name][0](services, endpoints)
    count = sum(len(o["endpoints"]) for o in items if o.get("kind") == "EndpointSlice")
    text = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    data = text.encode()
    del items
    found = {"json": _best_cpu(lambda: json.loads(text))}
    try:
        import orjson
        found["orjson"] = _best_cpu(lambda: orjson.loads(data))
    except ImportError:
        found["orjson"] = None
    if fast_json.msgspec is not None:
        found["msgspec"] = _best_cpu(lambda: fast_json.msgspec.json.decode(data))
        found["structs"] = _best_cpu(lambda: [fast_json._ITEM.decode(raw) for raw in fast_json._LIST.decode(data).items])
        found["read fast"] = _best_cpu(lambda: fast_json.load_list(data))
    else:
        found.update(dict.fromkeys(("msgspec", "structs", "read fast")))
    found["read json"] = _best_cpu(lambda: _load_json(text))
    return {key: None if value is None else value / count * 1e6 for key, value in found.items()}


def file_mode(path: str) -> dict:
    out = subprocess.run([sys.executable, BENCH_HOST, "--file-mode", path], check=True, capture_output=True,
                         text=True)
    return json.loads(out.stdout)


def measure(shapes: list[str], services: int, endpoints: int, rounds: int, directory: str) -> list[dict]:
    rows = []
    for name in shapes:
        items = SHAPES[name][0](services, endpoints)
        slices = [o for o in items if o.get("kind") == "EndpointSlice"]
        general, parsed = general_reader_count(slices[:SAMPLE_SLICES])
        fast = fast_decoder_takes(SHAPES[name][0](min(services, 100), endpoints))
        path = os.path.join(directory, f"{name}.json")
        size = write_dump(items, path)
        count = sum(len(o["endpoints"]) for o in slices)
        rows.append({"shape": name, "path": path, "bytes": size, "endpoints": count, "general": general,
                     "sampled": parsed, "decoder": "msgspec" if fast else "json", "runs": []})
        del items, slices
    for _ in range(rounds):  # interleaved: the machine's speed drifts between rounds, not within one
        for row in rows:
            row["runs"].append(file_mode(row["path"]))
    for row in rows:
        os.unlink(row["path"])
        best = min(row["runs"], key=lambda run: run["cpu"])  # the least disturbed round
        row.update(best, wall=min(run["seconds"] for run in row["runs"]))
        row["us_per_endpoint"] = row["cpu"] / row["endpoints"] * 1e6
        row["read_us_per_endpoint"] = row["read_cpu"] / row["endpoints"] * 1e6
    return rows


def report(rows: list[dict], services: int, endpoints: int, rounds: int) -> None:
    fastest = min(row["us_per_endpoint"] for row in rows)
    fastest_read = min(row["read_us_per_endpoint"] for row in rows)
    print(f"file mode per endpoint shape: {services} Services x {endpoints} endpoints, best of {rounds} "
          f"interleaved round(s), one fresh process each (CPU s: this machine is shared; wall beside it)")
    print(f"{'shape':<11} {'endpoints carry':<40} {'dump MB':>8} {'wall':>7} {'CPU':>7} {'read CPU':>9} "
          f"{'us/endpoint':>12} {'ratio':>6} {'read ratio':>11} {'peak RSS':>9} {'decoder':>8} {'general reader':>15}")
    for row in rows:
        print(f"{row['shape']:<11} {SHAPES[row['shape']][1]:<40} {row['bytes'] / 2**20:>8.0f} {row['wall']:>6.2f}s "
              f"{row['cpu']:>6.2f}s {row['read_cpu']:>8.2f}s {row['us_per_endpoint']:>12.2f} "
              f"{row['us_per_endpoint'] / fastest:>5.2f}x {row['read_us_per_endpoint'] / fastest_read:>10.2f}x "
              f"{row['rss_mb']:>6.0f} MB {row['decoder']:>8} {row['general']:>6} of {row['sampled']:<6}")
    slowest = max(rows, key=lambda row: row["us_per_endpoint"])
    longest = max(rows, key=lambda row: row["cpu"])
    ratio = slowest["us_per_endpoint"] / fastest
    at_goal = "" if services == GOAL_SERVICES else f" (the goal is at N={GOAL_SERVICES})"
    print(f"goal: every shape <= {GOAL_SECONDS:.0f} s{at_goal}: the longest, {longest['shape']}, "
          f"{longest['wall']:.2f} s wall, {longest['cpu']:.2f} s CPU ({longest['endpoints']} endpoints)")
    print(f"goal: per-endpoint cost slowest/fastest shape <= {GOAL_RATIO}x: {ratio:.2f}x "
          f"({slowest['shape']} / {min(rows, key=lambda row: row['us_per_endpoint'])['shape']})")


def report_decoders(shapes: list[str], services: int, endpoints: int) -> None:
    print(f"\nJSON decoders, CPU us per endpoint ({services} Services x {endpoints} endpoints per shape, best of 3): "
          f"decoding only (json.loads, orjson.loads, msgspec building every object, kipvs's structs of the fields "
          f"it reads), then decoding + kipvs's parsing (fast_json, or the json path)")
    columns = ("json", "orjson", "msgspec", "structs", "read fast", "read json")
    print(f"{'shape':<11} " + " ".join(f"{name:>10}" for name in columns) + f" {'json/structs':>13}")
    for name in shapes:
        found = decoders(name, services, endpoints)
        cells = " ".join(f"{'-' if found[c] is None else format(found[c], '.2f'):>10}" for c in columns)
        ratio = f"{found['json'] / found['structs']:.1f}x" if found["structs"] else "-"
        print(f"{name:<11} {cells} {ratio:>13}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=GOAL_SERVICES)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--shapes", default=",".join(SHAPES))
    args = parser.parse_args()
    shapes = args.shapes.split(",")
    unknown = [name for name in shapes if name not in SHAPES]
    if unknown:
        parser.error(f"unknown shape(s) {', '.join(unknown)}; known: {', '.join(SHAPES)}")
    with tempfile.TemporaryDirectory(prefix="kipvs-shapes-") as directory:
        rows = measure(shapes, args.services, args.endpoints, args.rounds, directory)
    report(rows, args.services, args.endpoints, args.rounds)
    report_decoders(shapes, min(args.services, DECODER_SERVICES), args.endpoints)


if __name__ == "__main__":
    main()
