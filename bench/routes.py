#!/usr/bin/env python3
"""A full table from dump to lookups: load into PostgreSQL, build the lookup
engine, resolve addresses.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ipr_bench \\
        .venv/bin/python bench/routes.py [--v4 1000000] [--v6 220000] [--peers 1]
        [--distinct 0.3] [--native auto|0|1]

Generates (once, cached under var/bench/mrt/) a full-table-sized MRT RIB
with bench/mrt_table.py (``--peers`` peers; ``--distinct SHARE`` makes
them transit feeds with that share of distinct attribute sets per route,
passed to the generator where it has the option), runs ``bgpdump -m`` on it
as the peer, then in a fresh process (``IPR_NATIVE`` from ``--native``)
loads it as a new version of a router's table with the function the beat
task calls (parse, COPY into a new partition, index, lookup engine, swap)
and reports that process's peak RSS (VmHWM) and which MRT parser ran. Then
a worker reads the engine from the database as a worker does, and resolves
a million addresses in batches, as the aggregation does. Prints figures
only. The database named by DATABASE_URL is created and migrated if
needed; its bench router is replaced on each run.
"""
import argparse
import inspect
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "var" / "bench" / "mrt"
sys.path.insert(0, str(ROOT))


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def ensure_database(url: str) -> None:
    import psycopg
    from urllib.parse import urlsplit

    name = urlsplit(url).path.lstrip("/")
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def table_file(args) -> Path:
    """The generated table, cached under the name bench/mrt_parse.py gives it
    (so both benchmarks read the same file); --distinct where the generator
    has it."""
    import hashlib

    from bench import mrt_table

    distinct = args.distinct
    if distinct is not None and "distinct" not in inspect.signature(mrt_table.write).parameters:
        print(f"note: bench/mrt_table.py has no --distinct: the table is made without {distinct}")
        distinct = None
    key = hashlib.sha1(Path(mrt_table.__file__).read_bytes()).hexdigest()[:10]
    shape = f"d{distinct}-" if distinct is not None else ""
    path = CACHE / f"table-v4_{args.v4}-v6_{args.v6}-p{args.peers}-{shape}s{args.seed}-i{args.inherit}-{key}.mrt"
    if path.exists():
        print(f"table: {path} (cached)")
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tmp = path.with_name(path.name + ".tmp")
    summary = mrt_table.write(str(tmp), args.v4, args.v6, args.peers, args.seed, inherit=args.inherit,
                              **({"distinct": distinct} if distinct is not None else {}))
    os.replace(tmp, path)
    print(f"table: {path} generated in {time.perf_counter() - started:.1f} s: "
          + " ".join(f"{k}={v}" for k, v in summary.items()))
    return path


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ipr.settings")
    import django
    django.setup()


def child(path: str, router_id: int) -> None:
    """Load ``path`` as the router's new version in this process; print JSON figures."""
    setup_django()
    from bench.mrt_parse import peak_rss_kb
    from ipr import native
    from ipr.routing.load import refresh_router

    before = peak_rss_kb()
    started, cpu = time.perf_counter(), time.process_time()
    table = refresh_router(router_id, [path])
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    # The choice mrt.batches made, as ipr.native keeps it for the process.
    chosen = [module for key, module in native._chosen.items() if key.startswith("ipr.routing.dumps._mrt:")]
    mrt = ("compiled (ipr.routing.dumps._mrt)" if chosen[0] is not None else "pure Python") if chosen else \
        "pure Python (mrt.batches did not ask for the compiled one)"
    print(json.dumps({"wall": wall, "cpu": cpu, "routes": table.routes, "prefixes": table.prefixes,
                      "attr_sets": table.attr_sets, "rss_kb": peak_rss_kb(), "rss_start_kb": before,
                      "mrt": mrt}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--v4", type=int, default=1_000_000)
    ap.add_argument("--v6", type=int, default=220_000)
    ap.add_argument("--peers", type=int, default=1)
    ap.add_argument("--distinct", type=float,
                    help="transit feeds with this share of distinct attribute sets per route (the generator's option)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--inherit", type=float, default=0.6)
    ap.add_argument("--native", default="auto", help="IPR_NATIVE for the loading process: auto, 0 or 1")
    ap.add_argument("--lookups", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=100_000)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()

    url = os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ipr_bench")
    if args.child:
        return child(args.child[0], int(args.child[1]))
    if url.startswith("postgres"):
        ensure_database(url)
    setup_django()
    from django.core.management import call_command
    import numpy as np

    from bench import mrt_parse
    from ipr.routing.lookup import Resolver
    from ipr.routing.models import Router

    call_command("migrate", verbosity=0)
    dump = table_file(args)
    print(f"dump: {dump.name} ({dump.stat().st_size / 2**20:.0f} MiB), database: {url.split('@')[-1]}, "
          f"{os.cpu_count()} CPUs")
    peer = mrt_parse.run_bgpdump("bgpdump", dump) if shutil.which("bgpdump") else None
    if peer:
        print(f"peer: bgpdump -m on the same file: {peer['wall']:.2f} s wall, {peer['cpu']:.2f} s CPU")

    Router.objects.filter(name="bench").delete()
    router = Router.objects.create(name="bench", asn=64500)
    env = dict(os.environ, IPR_NATIVE=args.native)
    out = subprocess.run([sys.executable, __file__, "--child", str(dump), str(router.pk)], env=env,
                         capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"the load failed:\n{out.stderr[-3000:]}")
    got = json.loads(out.stdout.strip().splitlines()[-1])
    load_s = got["wall"]
    print(f"MRT parser: {got['mrt']} (IPR_NATIVE={args.native})")
    print(f"load (parse + COPY + index + lookup engine + swap): {load_s:.2f} s wall, {got['cpu']:.2f} s CPU "
          f"in the loading process; {got['routes']:,} routes, {got['prefixes']:,} prefixes, "
          f"{got['attr_sets']:,} attribute sets ({got['attr_sets'] / got['routes']:.2f} per route), "
          f"{got['routes'] / load_s:,.0f} routes/s")
    print(f"peak RSS of the loading process: {got['rss_kb'] / 1024:.0f} MiB "
          f"({got['rss_start_kb'] / 1024:.0f} MiB before the load: interpreter, Django, numpy)")

    before = rss_mb()
    resolver = Resolver()
    started = time.perf_counter()
    resolver.refresh()
    build_s = time.perf_counter() - started
    engine = resolver.tables[router.pk]
    held = rss_mb() - before
    print(f"lookup engine, read by a worker from the database: {build_s:.2f} s; engine "
          f"{engine.engine.nbytes / 2**20:.0f} MB, route attributes "
          f"{(engine.route_attr.nbytes + engine.origin_as.nbytes + engine.neighbor_as.nbytes) / 2**20:.0f} MB; "
          f"worker RSS +{held:.0f} MB")
    print(f"full table active, in the database and in a worker's memory: {load_s + build_s:.2f} s")
    if peer:
        print(f"ratio: bgpdump -m only prints the table in {peer['wall']:.2f} s; ipr parses, stores, indexes "
              f"and activates it in {load_s + build_s:.2f} s ({peer['wall'] / (load_s + build_s):.2f}x bgpdump's speed)")

    # Addresses: 80% inside the table's prefixes (random host), 20% anywhere.
    rng = np.random.default_rng(7)
    n = args.lookups
    prefixes = [engine.engine.prefix(i) for i in range(len(engine.engine))]
    picks = rng.integers(0, len(prefixes), size=int(n * 0.8))
    raw = bytearray()
    import ipaddress
    for i in picks:
        net = ipaddress.ip_network(prefixes[i])
        host = net.network_address + int(rng.integers(0, min(net.num_addresses, 2**62)))
        raw += (b"\0" * 10 + b"\xff\xff" + host.packed) if net.version == 4 else host.packed
    rand = rng.integers(0, 256, size=(n - len(picks), 16), dtype=np.uint8)
    rand[: len(rand) // 2, :12] = [0] * 10 + [255, 255]
    addrs = np.concatenate([np.frombuffer(bytes(raw), dtype=np.uint8).reshape(-1, 16), rand])
    addrs = addrs[rng.permutation(len(addrs))].copy().view("V16").ravel()

    started = time.perf_counter()
    hits = 0
    for i in range(0, n, args.batch):
        hits += int((engine.engine.lookup_many(addrs[i:i + args.batch]) >= 0).sum())
    engine_s = time.perf_counter() - started
    started = time.perf_counter()
    for i in range(0, n, args.batch):
        resolver.resolve(addrs[i:i + args.batch], router_id=router.pk)
    resolve_s = time.perf_counter() - started
    print(f"lookups, batches of {args.batch:,}: engine {n / engine_s:,.0f}/s ({hits / n:.0%} matched); "
          f"full resolve (route, origin, neighbour, override, country) {n / resolve_s:,.0f}/s")


if __name__ == "__main__":
    main()
