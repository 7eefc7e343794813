#!/usr/bin/env python3
"""BIRD text parse speed: ``bird.parse`` on a full table, against the MRT parser.

    .venv/bin/python bench/bird_parse.py [--case 2peers-0.3 1peer] [--v4 1000000] [--v6 220000]
        [--seed 1] [--socket] [--batches] [--repeat 1] [--regenerate]
        [--only-batches] [--load]

Cases (the tables of bench/mrt_parse.py): ``2peers-0.3``, a router with two
full transit feeds, 2.44M routes with 0.3 distinct attribute sets per route
as in real tables; ``1peer``, a router's own table (one route per prefix);
``2peers-0.75``, two feeds with 0.75 distinct sets per route; ``2peers``,
the generator's collector-style second peer (few distinct sets).

For each case, generates the full-table TABLE_DUMP_V2 file with
bench/mrt_table.py and the same table as BIRD 2 ``show route all`` text
with bench/bird_table.py (both cached in var/bench/bird/, keyed by the
arguments and the generators' source), then runs, ``--repeat`` times in
turn, each in a fresh Python process:

- ``mrt.parse`` of the MRT file, pure Python (``IPR_NATIVE=0``): the
  reference, what the loader does with the same table from an MRT dump;
- ``bird.parse`` of the text (``--socket``: of the control-socket reply);

and with ``--batches`` both again as the loader reads them, in batches:
``mrt.batches`` in pure Python (``from_routes`` of ``mrt.parse``) and
``bird.batches`` (the parser fills the columns itself). Each run
prints the CPU and wall time of the parse itself (interpreter start-up and
imports apart), the peak RSS of its process, routes/s and µs per route;
then the minimum of each and the ratio of BIRD's CPU time per route to
MRT's (at most 1 is "as fast per route as MRT"). ``--only-batches``: only
the runs in batches.

With ``--load``, the text is then loaded as a router's table the way a
command source reads it: a router ``bench-bird`` in the database named by
DATABASE_URL (created and migrated if needed; the router is replaced on
each run) with one command source, ``cat`` of the text file (its output
goes to a temporary file, then ``bird.batches`` reads it), refreshed by
``refresh_router`` in a fresh process (parse, COPY, index, lookup engine,
swap): its wall and CPU time and peak RSS; then a worker reads the lookup
engine from the database (``Resolver.refresh``), as bench/routes.py does.
Time to active is the sum. Figures only: nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "var" / "bench" / "bird"


CASES = {
    "2peers-0.3": dict(peers=2, distinct=0.3),
    "1peer": dict(peers=1, distinct=None),
    "2peers-0.75": dict(peers=2, distinct=0.75),
    "2peers": dict(peers=2, distinct=None),
}


def tables(args, case: str) -> tuple[Path, Path]:
    """The MRT file and its BIRD text for these arguments, made if not cached."""
    sys.path.insert(0, str(ROOT))
    from bench import bird_table, mrt_table

    source = Path(mrt_table.__file__).read_bytes() + Path(bird_table.__file__).read_bytes()
    key = hashlib.sha1(source).hexdigest()[:10]
    peers, distinct = CASES[case]["peers"], CASES[case]["distinct"]
    stem = f"table-v4_{args.v4}-v6_{args.v6}-{case}-s{args.seed}-{key}"
    mrt_path = CACHE / f"{stem}.mrt"
    text_path = CACHE / f"{stem}.{'socket' if args.socket else 'birdc'}.txt"
    CACHE.mkdir(parents=True, exist_ok=True)
    if args.regenerate or not mrt_path.exists():
        started = time.perf_counter()
        tmp = mrt_path.with_name(mrt_path.name + ".tmp")
        summary = mrt_table.write(str(tmp), args.v4, args.v6, peers, args.seed,
                                  **({"distinct": distinct} if distinct is not None else {}))
        os.replace(tmp, mrt_path)
        print(f"MRT table: {mrt_path} generated in {time.perf_counter() - started:.1f} s: "
              + " ".join(f"{k}={v}" for k, v in summary.items()))
    if args.regenerate or not text_path.exists():
        started = time.perf_counter()
        tmp = text_path.with_name(text_path.name + ".tmp")
        summary = bird_table.write(str(mrt_path), str(tmp), args.socket)
        os.replace(tmp, text_path)
        print(f"BIRD text: {text_path} written in {time.perf_counter() - started:.1f} s: "
              + " ".join(f"{k}={v}" for k, v in summary.items()))
    return mrt_path, text_path


def run(kind: str, path: Path, batches: bool) -> dict:
    started = time.perf_counter()
    env = dict(os.environ, IPR_NATIVE="0")
    out = subprocess.run([sys.executable, __file__, "--child", kind, str(path)]
                         + (["--batches"] if batches else []),
                         capture_output=True, text=True, check=True, env=env).stdout
    result = json.loads(out)
    result["process_wall"] = time.perf_counter() - started
    return result


def child(kind: str, path: str, batches: bool) -> None:
    """Parse ``path`` once in this process and print the figures as JSON."""
    sys.path.insert(0, str(ROOT))
    from ipr.routing.dumps import bird, mrt, open_dump

    routes = best = 0
    started, cpu = time.perf_counter(), time.process_time()
    with open_dump(path) as f:
        if batches:
            # What the loader reads: mrt.batches (pure Python here:
            # from_routes of mrt.parse), bird.batches.
            parser = mrt if kind == "mrt" else bird
            for batch in parser.batches(f, source=path):
                routes += len(batch)
                best += int(batch.best.sum())
        else:
            parsed = mrt.parse(f, source=path) if kind == "mrt" else bird.parse(f, source=path)
            for route in parsed:
                routes += 1
                best += route.best
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(json.dumps({"wall": wall, "cpu": cpu, "routes": routes, "best": best, "rss_kb": peak_rss_kb()}))


def load(text_path: Path) -> None:
    """Load the text as a command source's output; print the figures."""
    sys.path.insert(0, str(ROOT))
    from bench.routes import ensure_database, setup_django

    url = os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ipr_bench")
    if url.startswith("postgres"):
        ensure_database(url)
    setup_django()
    from django.core.management import call_command

    from ipr.routing.lookup import Resolver
    from ipr.routing.models import RouteSource, Router

    call_command("migrate", verbosity=0)
    Router.objects.filter(name="bench-bird").delete()
    router = Router.objects.create(name="bench-bird", asn=64500)
    RouteSource.objects.create(router=router, kind=RouteSource.Kind.COMMAND, command=f"cat {text_path}",
                               timeout=3600)
    out = subprocess.run([sys.executable, __file__, "--load-child", str(router.pk)],
                         capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"the load failed:\n{out.stderr[-3000:]}")
    got = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"  load of the BIRD text by a command source (cat, temporary file, bird.batches, COPY, index, "
          f"lookup engine, swap): {got['wall']:.2f} s wall, {got['cpu']:.2f} s CPU in the loading process; "
          f"{got['routes']:,} routes, {got['prefixes']:,} prefixes, {got['attr_sets']:,} attribute sets")
    print(f"  peak RSS of the loading process: {got['rss_kb'] / 1024:.0f} MiB "
          f"({got['rss_start_kb'] / 1024:.0f} MiB before the load)")
    resolver = Resolver()
    started = time.perf_counter()
    resolver.refresh()
    build = time.perf_counter() - started
    if router.pk not in resolver.tables:
        sys.exit("the worker has no lookup engine for the router")
    print(f"  lookup engine read by a worker: {build:.2f} s; full table active: {got['wall'] + build:.2f} s")


def load_child(router_id: int) -> None:
    """refresh_router of the bench router in this process; print JSON figures."""
    sys.path.insert(0, str(ROOT))
    from bench.routes import setup_django

    setup_django()
    from ipr.routing.load import refresh_router

    before = peak_rss_kb()
    started, cpu = time.perf_counter(), time.process_time()
    table = refresh_router(router_id)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(json.dumps({"wall": wall, "cpu": cpu, "routes": table.routes, "prefixes": table.prefixes,
                      "attr_sets": table.attr_sets, "rss_kb": peak_rss_kb(), "rss_start_kb": before}))


def peak_rss_kb() -> int:
    """This process's peak RSS (VmHWM: ru_maxrss carries the parent's over exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def show(name: str, r: dict) -> str:
    return (f"{name} {r['cpu']:.2f} s CPU {r['wall']:.2f} s wall (process {r['process_wall']:.2f} s), "
            f"{r['cpu'] / r['routes'] * 1e6:.2f} us/route CPU, "
            f"peak RSS {r['rss_kb'] / 1024:.0f} MiB")


def bench(args, case: str) -> None:
    mrt_path, text_path = tables(args, case)
    print(f"{case}: MRT {mrt_path.stat().st_size / 1e6:.0f} MB, BIRD "
          f"{'socket reply' if args.socket else 'birdc text'} {text_path.stat().st_size / 1e6:.0f} MB")
    modes = [False, True] if args.batches else [False]
    if args.only_batches:
        modes = [True]
    for batches in modes:
        label = " in batches" if batches else ""
        what = "batches" if batches else "parse"
        ours, theirs = [], []
        for i in range(args.repeat):
            theirs.append(run("mrt", mrt_path, batches))
            ours.append(run("bird", text_path, batches))
            print(f"  run {i + 1}{label}: " + show(f"mrt.{what}", theirs[-1]) + " | " + show(f"bird.{what}", ours[-1]))
        if ours[-1]["routes"] != theirs[-1]["routes"] or ours[-1]["best"] != theirs[-1]["best"]:
            raise SystemExit(f"the BIRD text has {ours[-1]['routes']} routes ({ours[-1]['best']} best), "
                             f"the MRT file {theirs[-1]['routes']} ({theirs[-1]['best']} best)")
        routes = ours[-1]["routes"]
        oc, ow = min(r["cpu"] for r in ours), min(r["wall"] for r in ours)
        tc, tw = min(r["cpu"] for r in theirs), min(r["wall"] for r in theirs)
        print(f"  {routes} routes ({ours[-1]['best']} best){label}")
        print(f"  min mrt.{what} (pure Python): {tc:.2f} s CPU, {tw:.2f} s wall, {routes / tc:,.0f} routes/s, "
              f"{tc / routes * 1e6:.2f} us/route, peak RSS {min(r['rss_kb'] for r in theirs) / 1024:.0f} MiB")
        print(f"  min bird.{what}: {oc:.2f} s CPU, {ow:.2f} s wall, {routes / oc:,.0f} routes/s, "
              f"{oc / routes * 1e6:.2f} us/route, peak RSS {min(r['rss_kb'] for r in ours) / 1024:.0f} MiB")
        print(f"  ratio bird / mrt CPU per route{label}: {oc / tc:.2f} (at most 1: as fast as MRT)")
    if args.load:
        load(text_path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", nargs="+", choices=CASES, default=["2peers-0.3", "1peer"])
    ap.add_argument("--v4", type=int, default=1_000_000)
    ap.add_argument("--v6", type=int, default=220_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--socket", action="store_true", help="parse the control-socket reply, not birdc's text")
    ap.add_argument("--batches", action="store_true", help="also in batches, as the loader reads them")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--only-batches", action="store_true", help="only in batches (not Route by Route)")
    ap.add_argument("--regenerate", action="store_true")
    ap.add_argument("--load", action="store_true",
                    help="then load the text into PostgreSQL as a command source's output (DATABASE_URL)")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--load-child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child[0], args.child[1], args.batches)
    if args.load_child:
        return load_child(args.load_child)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; Python {sys.version.split()[0]}")
    for case in args.case:
        bench(args, case)


if __name__ == "__main__":
    main()
