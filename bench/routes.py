#!/usr/bin/env python3
"""A full table from dump to lookups: load into PostgreSQL, build the lookup
engine, resolve addresses.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ipr_bench \\
        .venv/bin/python bench/routes.py [--v4 1000000] [--v6 220000]

Generates (once, cached under var/bench/mrt/) a full-table-sized MRT RIB
with bench/mrt_table.py (the file bench/mrt_parse.py uses), runs ``bgpdump
-m`` on it as the peer, loads it as a new version of a router's table with the
same function the beat task calls (parse, COPY into a new partition, swap),
builds the process's lookup engine, read by a worker from the database as a worker does, and
resolves a million addresses in batches, as the aggregation does. Prints
figures only. The database named by DATABASE_URL is created and migrated if
needed; its bench router is replaced on each run.
"""
import argparse
import os
import resource
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--v4", type=int, default=1_000_000)
    ap.add_argument("--v6", type=int, default=220_000)
    ap.add_argument("--lookups", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=100_000)
    args = ap.parse_args()

    url = os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ipr_bench")
    if url.startswith("postgres"):
        ensure_database(url)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ipr.settings")
    import django
    django.setup()
    from django.core.management import call_command
    import numpy as np

    from ipr.routing.load import refresh_router
    from ipr.routing.lookup import Resolver
    from ipr.routing.models import Router

    call_command("migrate", verbosity=0)
    from bench import mrt_parse

    dump = mrt_parse.table_file(argparse.Namespace(
        v4=args.v4, v6=args.v6, peers=1, seed=1, inherit=0.6, gzip=False, regenerate=False))
    print(f"dump: {dump.name} ({dump.stat().st_size / 2**20:.0f} MiB), database: {url.split('@')[-1]}")
    peer = mrt_parse.run_bgpdump("bgpdump", dump) if shutil.which("bgpdump") else None
    if peer:
        print(f"peer: bgpdump -m on the same file: {peer['wall']:.2f} s wall, {peer['cpu']:.2f} s CPU")

    Router.objects.filter(name="bench").delete()
    router = Router.objects.create(name="bench", asn=64500)
    started = time.perf_counter()
    cpu = time.process_time()
    table = refresh_router(router.pk, [str(dump)])
    load_s, load_cpu = time.perf_counter() - started, time.process_time() - cpu
    print(f"load (parse + COPY + index + lookup engine + swap): {load_s:.2f} s wall, {load_cpu:.2f} s CPU in this process; "
          f"{table.routes:,} routes, {table.prefixes:,} prefixes, {table.attr_sets:,} attribute sets, "
          f"{table.routes / load_s:,.0f} routes/s")

    before = rss_mb()
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    resolver = Resolver()
    started = time.perf_counter()
    resolver.refresh()
    build_s = time.perf_counter() - started
    engine = resolver.tables[router.pk]
    held = rss_mb() - before
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"lookup engine, read by a worker from the database: {build_s:.2f} s; engine {engine.engine.nbytes / 2**20:.0f} MB, "
          f"route attributes {(engine.route_attr.nbytes + engine.origin_as.nbytes + engine.neighbor_as.nbytes) / 2**20:.0f} MB; "
          f"process RSS +{held:.0f} MB, "
          f"peak RSS {peak:.0f} MB (was {peak_before:.0f} MB)")
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
