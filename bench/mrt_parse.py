#!/usr/bin/env python3
"""MRT parse speed: ipr's parser against ``bgpdump -m`` on a full table.

    .venv/bin/python bench/mrt_parse.py [--v4 1000000] [--v6 220000] [--peers 1]
        [--seed 1] [--inherit 0.6] [--gzip] [--repeat 3] [--regenerate]

Generates a full-table TABLE_DUMP_V2 file with bench/mrt_table.py (cached in
var/bench/mrt/, keyed by the arguments and the generator's source), then
runs, ``--repeat`` times in turn:

- ``bgpdump -m FILE > /dev/null``: wall time and CPU time (from the child's
  rusage);
- ``mrt.parse`` consuming every route, in a fresh Python process: wall and
  CPU time of the parse itself (interpreter start-up and imports are shown
  apart), peak RSS of that process, routes/s, distinct attribute sets.

It prints every run, the minimum of each, and the ratio bgpdump / ipr (the
target is at least 2). Figures only: nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "var" / "bench" / "mrt"


def table_file(args) -> Path:
    """The generated table for these arguments, made if not cached."""
    sys.path.insert(0, str(ROOT))
    from bench import mrt_table

    source = Path(mrt_table.__file__).read_bytes()
    key = hashlib.sha1(source).hexdigest()[:10]
    name = f"table-v4_{args.v4}-v6_{args.v6}-p{args.peers}-s{args.seed}-i{args.inherit}-{key}.mrt"
    path = CACHE / (name + (".gz" if args.gzip else ""))
    if path.exists() and not args.regenerate:
        print(f"table: {path} (cached)")
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tmp = path.with_name(path.name + ".tmp" + (".gz" if args.gzip else ""))
    summary = mrt_table.write(str(tmp), args.v4, args.v6, args.peers, args.seed, inherit=args.inherit)
    os.replace(tmp, path)
    print(f"table: {path} generated in {time.perf_counter() - started:.1f} s: "
          + " ".join(f"{k}={v}" for k, v in summary.items()))
    return path


def run_bgpdump(bgpdump: str, path: Path) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([bgpdump, "-m", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu}


def run_ipr(path: Path) -> dict:
    started = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--child", str(path)], capture_output=True,
                         text=True, check=True).stdout
    result = json.loads(out)
    result["process_wall"] = time.perf_counter() - started
    return result


def child(path: str) -> None:
    """Parse ``path`` once in this process and print the figures as JSON."""
    sys.path.insert(0, str(ROOT))
    from ipr.routing.dumps import mrt

    stats = mrt.Stats()
    routes = best = 0
    started, cpu = time.perf_counter(), time.process_time()
    with mrt.open_dump(path) as f:
        for route in mrt.parse(f, source=path, stats=stats):
            routes += 1
            best += route.best
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(json.dumps({"wall": wall, "cpu": cpu, "routes": routes, "best": best,
                      "attr_sets": stats.attr_sets, "records": stats.records,
                      "rss_kb": peak_rss_kb()}))


def peak_rss_kb() -> int:
    """This process's peak RSS. Not ru_maxrss: Linux carries that over exec,
    so it would include the generating parent's memory at fork time."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--v4", type=int, default=1_000_000)
    ap.add_argument("--v6", type=int, default=220_000)
    ap.add_argument("--peers", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--inherit", type=float, default=0.6,
                    help="the generator's share of more-specifics with their covering prefix's path")
    ap.add_argument("--gzip", action="store_true", help="gzip the table (both tools decompress it)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--regenerate", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child)

    bgpdump = shutil.which("bgpdump") or "/usr/bin/bgpdump"
    if not os.path.exists(bgpdump):
        sys.exit("bgpdump is not installed (Debian: apt-get install bgpdump)")
    path = table_file(args)
    print(f"file: {path.stat().st_size / 1e6:.1f} MB; {os.cpu_count()} CPUs; Python {sys.version.split()[0]}")
    theirs, ours = [], []
    for i in range(args.repeat):
        theirs.append(run_bgpdump(bgpdump, path))
        ours.append(run_ipr(path))
        t, o = theirs[-1], ours[-1]
        print(f"run {i + 1}: bgpdump -m {t['wall']:.2f} s wall {t['cpu']:.2f} s CPU | "
              f"mrt.parse {o['wall']:.2f} s wall {o['cpu']:.2f} s CPU "
              f"(process {o['process_wall']:.2f} s), peak RSS {o['rss_kb'] / 1024:.0f} MiB")
    tw, tc = min(r["wall"] for r in theirs), min(r["cpu"] for r in theirs)
    ow, oc = min(r["wall"] for r in ours), min(r["cpu"] for r in ours)
    last = ours[-1]
    print(f"routes: {last['routes']} ({last['best']} best) in {last['records']} records, "
          f"{last['attr_sets']} distinct attribute sets")
    print(f"min bgpdump -m: {tw:.2f} s wall, {tc:.2f} s CPU ({last['routes'] / tw:,.0f} routes/s)")
    print(f"min mrt.parse:  {ow:.2f} s wall, {oc:.2f} s CPU ({last['routes'] / ow:,.0f} routes/s), "
          f"peak RSS {min(r['rss_kb'] for r in ours) / 1024:.0f} MiB, "
          f"process incl. start-up {min(r['process_wall'] for r in ours):.2f} s")
    print(f"ratio bgpdump / mrt.parse: {tw / ow:.2f} wall, {tc / oc:.2f} CPU (target >= 2)")


if __name__ == "__main__":
    main()
