#!/usr/bin/env python3
"""Spool rows through enrichment into the PostgreSQL archive, per worker process.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ipr_bench \\
        .venv/bin/python bench/ingest.py [--rows-per-minute 200000] [--minutes 60]

The site: 100,000 requests/s for an hour, as the collector spools it (one
row per minute x server x client x traffic type; --rows-per-minute distinct
clients and servers a minute, 30 requests a row by default). Clients are
hosts in the prefixes of a full-table-sized router table (bench/mrt_table.py,
1.22M routes, the file bench/routes.py loads), picked with a Zipf skew over
the prefixes, as eyeball networks send most requests; 0.5% come from
addresses no route covers and 1% go to a server no router serves (both are
kept as unrouted / unknown router). Countries come from a generated
RIR-style file over the same address space (250 codes).

Prints, each from this run:
  1. enrichment and sums alone (lookups, grouping, no database), rows/s;
  2. one minute's segment ingested into the per-minute window, as the beat
     does every minute: rows/s, wall and CPU (this process, PostgreSQL's);
  3. the hour archived: its 60 segments ingested, one after the other as the
     beat does, then the hourly archive of the hour: seconds, rows/s; the
     same hour as a backlog (one ingest call); and in steady state, the
     next hour ingested while a second worker archives this one;
  4. the peer in the same run: a plain binary COPY of the same number of rows,
     as wide, into an unlogged table (PostgreSQL storing them, nothing else),
     and the ratio.
The totals in the archive are checked against the spool's (requests and
wire bytes, every table touched); a mismatch stops the benchmark.
"""
import argparse
import ipaddress
import os
import shutil
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WORK = ROOT / "var" / "bench" / "ingest"
HOUR0 = (int(time.time()) // 3600 - 2) * 60   # a whole hour, closed, inside the window


def countries_file(prefixes: list[str], path: Path, rng) -> Path:
    """A delegated-style file: every /8 (v4) and /16 (v6) of the table in one of 250 countries."""
    import numpy as np

    codes = [chr(65 + a) + chr(65 + b) for a in range(26) for b in range(26)][:250]
    weights = 1 / np.arange(1, 251) ** 1.2
    weights /= weights.sum()
    v4, v6 = set(), set()
    for p in prefixes:
        if ":" in p:
            v6.add(ipaddress.ip_network(p).supernet(new_prefix=16).network_address)
        else:
            v4.add(int(p.split(".", 1)[0]))
    lines = ["2.3|bench|20261201|%d|19700101|20261201|+0000" % (len(v4) + len(v6))]
    for first in sorted(v4):
        lines.append(f"bench|{codes[rng.choice(250, p=weights)]}|ipv4|{first}.0.0.0|16777216|20200101|allocated")
    for net in sorted(v6):
        lines.append(f"bench|{codes[rng.choice(250, p=weights)]}|ipv6|{net}|16|20200101|allocated")
    path.write_text("\n".join(lines) + "\n")
    return path


def workload(engine, minutes: int, per_minute: int, requests_per_row: int, rng, skew: float = 1.05):
    """The hour's spool rows, per minute (numpy arrays of spool.ROW)."""
    import numpy as np
    from collector import spool

    n_prefix = len(engine)
    # Zipf over prefixes in a random order (so big eyeball prefixes are anywhere in the table).
    rank_prefix = rng.permutation(n_prefix)
    weights = 1 / np.arange(1, n_prefix + 1) ** skew
    cum = np.cumsum(weights / weights.sum())
    # The distinct prefixes the site sees, with their first address and size.
    picked = rank_prefix[np.minimum(np.searchsorted(cum, rng.random(per_minute * 4)), n_prefix - 1)]
    uniq = np.unique(picked)
    starts = np.zeros((len(uniq), 16), np.uint8)
    host_bits = np.zeros(len(uniq), np.int64)
    for i, index in enumerate(uniq.tolist()):
        net = ipaddress.ip_network(engine.prefix(index))
        if net.version == 4:
            starts[i] = np.frombuffer(b"\0" * 10 + b"\xff\xff" + net.network_address.packed, np.uint8)
            host_bits[i] = 32 - net.prefixlen
        else:
            starts[i] = np.frombuffer(net.network_address.packed, np.uint8)
            host_bits[i] = min(128 - net.prefixlen, 64)
    where = {int(p): i for i, p in enumerate(uniq.tolist())}
    servers = np.array([b"\0" * 10 + b"\xff\xff" + bytes([198, 18, 0, s]) for s in range(1, 5)]
                       + [b"\0" * 10 + b"\xff\xff" + bytes([203, 0, 113, 9])], dtype="V16")
    types = np.array([b"web", b"api", b"video", b"download"], dtype="S16")
    out = []
    for m in range(minutes):
        n = per_minute
        rows = np.zeros(n, spool.ROW)
        rows["minute"] = HOUR0 + m
        which = np.array([where[int(p)] for p in picked[rng.integers(0, len(picked), n)]], np.int64)
        addr = starts[which].copy()
        # A random host inside the prefix: the low host_bits bits (of at most 64).
        offset = (rng.integers(0, 2**62, n, dtype=np.int64).astype(np.uint64)
                  & ((np.uint64(1) << host_bits[which].astype(np.uint64)) - np.uint64(1)))
        low = addr[:, 8:].copy().view(">u8").ravel() | offset
        addr[:, 8:] = low.astype(">u8").view(np.uint8).reshape(n, 8)
        unrouted = rng.random(n) < 0.005
        addr[unrouted, :12] = np.frombuffer(b"\0" * 10 + b"\xff\xff", np.uint8)
        addr[unrouted, 12] = 0  # 0.0.0.0/8: in no table
        rows["client"] = addr.view("V16").ravel()
        # Each server serves one kind of traffic (a site per server, as on a hosting network).
        server = np.where(rng.random(n) < 0.01, 4, rng.choice(4, n, p=[0.6, 0.2, 0.15, 0.05]))
        rows["server"] = servers[server]
        rows["traffic_type"] = types[server % 4]
        req = rng.integers(1, 2 * requests_per_row, n)
        rows["records"] = rows["requests"] = req
        rows["connections"] = np.maximum(req // 8, 1)
        rows["tcpinfo_records"] = rows["segs_records"] = rows["bytes_records"] = req
        rows["status"][:, 1] = req
        size = rng.lognormal(10, 2, n).astype(np.int64) * req
        rows["response_bytes"] = size
        rows["wire_bytes"] = size + size // 30
        rows["data_segs"] = size // 1400 + req
        rows["retrans_segs"] = rng.binomial(rows["data_segs"].astype(np.int64), 0.01)
        rows["retrans_bytes"] = rows["retrans_segs"] * 1400
        rtt = rng.lognormal(3.5, 0.8, n)  # ms
        rows["rtt_sum_us"] = (rtt * 1000).astype(np.int64) * req
        bucket = np.searchsorted(np.array(spool.RTT_EDGES_US), rtt * 1000, side="right")
        rows["rtt_hist"][np.arange(n), bucket] = req
        rows["min_rtt_us"] = (rtt * 800).astype(np.uint32)
        rows["duration_sum_us"] = req * 20_000
        out.append(rows)
    return out


def write_spool(spool_dir: Path, minutes_rows) -> None:
    from collector import spool

    if spool_dir.exists():
        shutil.rmtree(spool_dir)
    for sub in ("open", "incoming", "processing"):
        (spool_dir / sub).mkdir(parents=True)
    for m, rows in enumerate(minutes_rows):
        writer = spool.SegmentWriter(spool_dir, f"bench-1-w0-{m:04d}.seg", 0, 0)
        for block in range(0, len(rows), 50_000):  # blocks as the collector flushes them
            writer.append(rows[block:block + 50_000], 0)
        writer.close()


def others_cpu() -> float:
    """CPU seconds the rest of the machine has used: on a quiet machine,
    PostgreSQL (the worker's own connection and its writer thread's)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    busy = sum(fields) - fields[3] - fields[4]   # all but idle and iowait
    own = sum(os.times()[:4])
    return busy / os.sysconf("SC_CLK_TCK") - own


def archive_totals(cursor) -> dict:
    from ipr.traffic import tables

    out = {}
    for name in tables.TABLES:
        if name.endswith("_day"):
            continue
        cursor.execute(f"SELECT coalesce(sum(requests), 0), coalesce(sum(wire_bytes), 0), count(*) FROM {name}")
        out[name] = tuple(int(v) for v in cursor.fetchone())
    return out


def empty_archive(cursor) -> None:
    from ipr.traffic import tables

    for name in tables.TABLES:
        cursor.execute(f"TRUNCATE {name}")
    cursor.execute("TRUNCATE traffic_ingestedsegment, traffic_pending")


def check(cursor, rows_list, what: str) -> dict:
    import numpy as np

    want_req = int(sum(int(r["requests"].sum()) for r in rows_list))
    want_wire = int(sum(int(r["wire_bytes"].astype(np.int64).sum()) for r in rows_list))
    got = archive_totals(cursor)
    for name, (req, wire, _) in got.items():
        if (req, wire) != (want_req, want_wire):
            raise SystemExit(f"{what}: {name} holds {req} requests / {wire} wire bytes, "
                             f"the spool {want_req} / {want_wire}")
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows-per-minute", type=int, default=200_000)
    ap.add_argument("--minutes", type=int, default=60)
    ap.add_argument("--requests-per-row", type=int, default=30, help="mean; 200k rows x 30 = 100k req/s")
    ap.add_argument("--skew", type=float, default=1.05, help="Zipf exponent of requests over prefixes")
    ap.add_argument("--v4", type=int, default=1_000_000)
    ap.add_argument("--v6", type=int, default=220_000)
    ap.add_argument("--backlog-batches", type=lambda v: [int(x) for x in v.split(",") if x], default=[],
                    help="also work the backlog off in batches of these sizes, e.g. 1000000,400000")
    args = ap.parse_args()

    url = os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ipr_bench")
    from bench import mrt_parse
    from bench.routes import ensure_database
    ensure_database(url)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ipr.settings")
    os.environ.setdefault("IPR_LOG_LEVEL", "WARNING")
    import django
    django.setup()
    import numpy as np
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from ipr.routing.load import refresh_router
    from ipr.routing.lookup import resolver
    from ipr.routing.models import DataSource, Router, ServedNetwork
    from ipr.routing.reference import refresh_source
    from ipr.traffic import ingest, rollup
    from ipr.traffic.models import Pending

    call_command("migrate", verbosity=0)
    WORK.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(11)
    dump = mrt_parse.table_file(argparse.Namespace(
        v4=args.v4, v6=args.v6, peers=1, seed=1, inherit=0.6, gzip=False, regenerate=False))
    router = Router.objects.filter(name="bench").first()
    if router is None or router.active_table is None or str(dump) not in router.active_table.sources:
        Router.objects.filter(name="bench").delete()
        router = Router.objects.create(name="bench", asn=64500)
        ServedNetwork.objects.create(router=router, network="198.18.0.0/24")
        started = time.perf_counter()
        refresh_router(router.pk, [str(dump)])
        print(f"router table loaded: {time.perf_counter() - started:.1f} s")
    res = resolver()
    engine = res.tables[router.pk].engine
    if not DataSource.objects.filter(name="bench-countries", records__gt=0).exists():
        prefixes = [engine.prefix(i) for i in range(0, len(engine), 7)]
        path = countries_file(prefixes, WORK / "delegated-bench.txt", rng)
        DataSource.objects.filter(name="bench-countries").delete()
        source = DataSource.objects.create(name="bench-countries", kind="rir", path=str(path))
        refresh_source(source.pk)
    started = time.perf_counter()
    res = resolver()
    print(f"resolver ready: {len(engine):,} prefixes in the router's table, "
          f"countries from {DataSource.objects.get(name='bench-countries').records:,} blocks "
          f"({time.perf_counter() - started:.1f} s)")

    started = time.perf_counter()
    hour = workload(engine, args.minutes, args.rows_per_minute, args.requests_per_row, rng, args.skew)
    total_rows = sum(len(r) for r in hour)
    requests = sum(int(r["requests"].sum()) for r in hour)
    print(f"workload: {args.minutes} minutes x {args.rows_per_minute:,} spool rows = {total_rows:,} rows, "
          f"{requests:,} requests ({requests / (60 * args.minutes):,.0f} requests/s), "
          f"generated in {time.perf_counter() - started:.1f} s")

    # The first touch of the table version reads its AS paths: once per version, not per run.
    ingest.summarise(hour[0][:1000])

    # 1. Enrichment and sums alone.
    best = None
    for _ in range(3):
        started, cpu = time.perf_counter(), time.process_time()
        parts = ingest.summarise(hour[1])
        wall = time.perf_counter() - started
        best = wall if best is None else min(best, wall)
    out_rows = {name: len(p) for name, p in parts.items()}
    print(f"1. enrichment + sums, one minute ({len(hour[1]):,} rows): {best:.3f} s, "
          f"{len(hour[1]) / best:,.0f} rows/s; rows out: " + ", ".join(f"{k} {v:,}" for k, v in out_rows.items()))

    spool_dir = WORK / "spool"
    with connection.cursor() as cur:
        # 2. One minute's segment, as the beat ingests it every minute.
        write_spool(spool_dir, hour[:3])
        empty_archive(cur)
        ingest.ingest(spool_dir, limit=1)  # the first minute of the hour: inserts only
        started, cpu, pg = time.perf_counter(), time.process_time(), others_cpu()
        result = ingest.ingest(spool_dir, limit=1)  # a later minute: the hour's rows exist, upserts
        wall, cpu, pg = time.perf_counter() - started, time.process_time() - cpu, others_cpu() - pg
        print(f"2. one minute's segment into PostgreSQL (after the hour's first): {result.rows:,} rows in "
              f"{wall:.2f} s wall ({cpu:.2f} s CPU in the worker, {pg:.2f} s in the rest of the machine): "
              f"{result.rows / wall:,.0f} rows/s per worker")
        ingest.ingest(spool_dir)
        rollup.archive_pending(everything=True)
        check(cur, hour[:3], "one minute")

        # 3. The hour: its segments ingested a minute at a time, then its hourly archive.
        started = time.perf_counter()
        write_spool(spool_dir, hour)
        spool_write = time.perf_counter() - started
        empty_archive(cur)
        cur.execute("CHECKPOINT")
        started, cpu, pg = time.perf_counter(), time.process_time(), others_cpu()
        segments = rows_in = 0
        while True:
            result = ingest.ingest(spool_dir, limit=1)
            if not result.segments:
                break
            segments += result.segments
            rows_in += result.rows
        ingest_wall = time.perf_counter() - started
        archived_at = time.perf_counter()
        hours = rollup.archive_pending(everything=True)
        archive_wall = time.perf_counter() - archived_at
        wall, cpu, pg = time.perf_counter() - started, time.process_time() - cpu, others_cpu() - pg
        got = check(cur, hour, "the hour")
        print(f"3. the hour archived: {segments} segments, {rows_in:,} rows ingested in {ingest_wall:.1f} s, "
              f"{hours} hour(s) archived in {archive_wall:.1f} s; {wall:.1f} s wall in all "
              f"({cpu:.1f} s CPU in the worker, {pg:.1f} s in the rest of the machine): {rows_in / wall:,.0f} rows/s; "
              f"target <= 60 s (spool written in {spool_write:.1f} s)")
        print("   archive rows: " + ", ".join(f"{k} {v[2]:,}" for k, v in got.items()))

        # 3b. The same hour as a backlog: one ingest() call, batches of
        # IPR_INGEST_BATCH_ROWS rows (and of each --backlog-batches size).
        for batch_rows in [settings.INGEST_BATCH_ROWS] + args.backlog_batches:
            write_spool(spool_dir, hour)
            empty_archive(cur)
            cur.execute("CHECKPOINT")
            started, cpu, pg = time.perf_counter(), time.process_time(), others_cpu()
            result = ingest.ingest(spool_dir, batch_rows=batch_rows)
            backlog_ingest, cpu = time.perf_counter() - started, time.process_time() - cpu
            rollup.archive_pending(everything=True)
            backlog, pg = time.perf_counter() - started, others_cpu() - pg
            check(cur, hour, "the backlog")
            print(f"   as a backlog (one ingest, {result.batches} transactions of {batch_rows:,} rows or more, "
                  f"a writer thread storing each while the next is summed; then the archive): "
                  f"{backlog_ingest:.1f} s ({result.rows / backlog_ingest:,.0f} rows/s per worker; "
                  f"{cpu:.1f} s CPU in the worker) + {backlog - backlog_ingest:.1f} s = "
                  f"{backlog:.1f} s wall ({pg:.1f} s in the rest of the machine); targets >= 500,000 rows/s, "
                  f"<= 60 s")

        # 3c. Steady state: the next hour ingested while this one is archived
        # by a second worker (here a thread with its own connection: the
        # archive is PostgreSQL's work, the thread only waits for it).
        nxt = [r.copy() for r in hour]
        for r in nxt:
            r["minute"] += 60
        write_spool(spool_dir, hour + nxt)
        del nxt
        empty_archive(cur)
        cur.execute("CHECKPOINT")
        for _ in range(len(hour)):
            ingest.ingest(spool_dir, limit=1)
        first_hour = [h.strftime("%Y-%m-%d %H:%M:%S+00:00")
                      for h in Pending.objects.filter(level="hour").values_list("start", flat=True)]
        archived = {}

        def archive_first():
            t0 = time.perf_counter()
            try:
                rollup.archive_pending(hours=first_hour)
            finally:
                archived["wall"] = time.perf_counter() - t0
                connection.close()

        started, pg = time.perf_counter(), others_cpu()
        archiver = threading.Thread(target=archive_first)
        archiver.start()
        for _ in range(len(hour)):
            ingest.ingest(spool_dir, limit=1)
        next_ingest = time.perf_counter() - started
        archiver.join()
        steady, pg = time.perf_counter() - started, others_cpu() - pg
        rollup.archive_pending(everything=True)
        got = archive_totals(cur)
        want = 2 * sum(int(r["requests"].sum()) for r in hour)
        if any(req != want for req, _, _ in got.values()):
            raise SystemExit(f"steady state: the archive holds {got}, the spool {want} requests")
        print(f"   steady state (an hour's 60 segments ingested a minute at a time while a second worker "
              f"archives the hour before): {steady:.1f} s wall for the hour (ingest {next_ingest:.1f} s, "
              f"the archive beside it {archived['wall']:.1f} s; {pg:.1f} s CPU in the rest of the machine); "
              f"target <= 60 s")

        # 4. The peer: PostgreSQL storing as many rows, as wide, with nothing else.
        from ipr.traffic import pgcopy, tables
        cur.execute("DROP TABLE IF EXISTS bench_copy_floor")
        width = 7 + len(tables.MEASURES)
        cur.execute(f"CREATE UNLOGGED TABLE bench_copy_floor ({', '.join(f'c{i} bigint' for i in range(width))})")
        cols = [f"c{i}" for i in range(width)]
        started = time.perf_counter()
        for rows in hour:
            minute = pgcopy.int8(rows["minute"])
            columns = [minute] * 7 + [pgcopy.int8(c) for c in ingest._columns(rows)] + [pgcopy.int8(rows["min_rtt_us"])]
            pgcopy.copy(cur.cursor, "bench_copy_floor", cols, columns)
        floor = time.perf_counter() - started
        cur.execute("DROP TABLE bench_copy_floor")
        print(f"4. peer: plain binary COPY of the same {total_rows:,} rows into an unlogged table: "
              f"{floor:.1f} s ({total_rows / floor:,.0f} rows/s); ipr's enriched, summed and appended "
              f"archive took {wall / floor:.2f}x that")
        empty_archive(cur)
    shutil.rmtree(spool_dir)


if __name__ == "__main__":
    main()
