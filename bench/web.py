#!/usr/bin/env python3
"""Server time of the pages over a year's archive.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ipr_webbench \\
        .venv/bin/python bench/web.py [--scale 1.0] [--runs 12] [--keep]

Generates, with PostgreSQL's generate_series (no row leaves the server), a
year of daily rows, 90 days of hourly rows and 48 hours of per-minute rows
for 50,000 origin ASes, 250 countries, 20 transits, 3 routers and 4 traffic
types, Zipf-skewed (an AS's bytes ∝ 1/rank^1.1; the top 300 ASes are
there every day, the tail rotates). Per (router, traffic type) and bucket:
2,000 ASes a day, 200 an hour, 30 a minute, all at ``--scale`` 1; each
table a day at a time in time order and its BRIN time index summarized, as
the archive writes them. How it differs from a real archive: one origin AS
per prefix, a fixed set of transits, no late traffic, and hours that are
all alike but for the rotating tail. Then it
times, in process through Django's test client (a logged-in user; no
network), the dashboard, an AS page, a country page and the top-ASN report
over several ranges, and one AS's series over a year straight from the
query layer, and prints the median and p95 per case, with spans (the
daily rollup's sums over the long presets' whole days) and day by day, as
without them. ``--keep`` reuses the generated archive of an earlier run.
"""
import argparse
import os
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

UTC = timezone.utc
TYPES = ["web", "video", "api", "download"]
ROUTERS = [1, 2, 3]
N_ASNS = 50_000
N_TRANSITS = 20
TOP_FIXED = 300
STAMP = "%Y-%m-%d %H:%M:%S+00:00"


def ensure_database(url: str) -> None:
    import psycopg
    base, name = url.rsplit("/", 1)
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def partitions(name: str, start: datetime, end: datetime) -> None:
    """The partitions of ``name`` that hold [start, end), as the ingest makes them."""
    from ipr.traffic import tables
    hours = int((end - start).total_seconds() // 3600) + 1
    tables.ensure_partitions(name, {(start + timedelta(hours=h)).strftime(STAMP)
                                    for h in range(hours)})


def generate(cur, table: str, unit: str, start: datetime, end: datetime, per_bucket: int, scale_bytes: float,
             countries: list[str]) -> int:
    from ipr.traffic import tables
    time_col, keys = tables.TABLES[table]
    extra = keys[len(tables.SPLIT):]
    step = {"minute": "1 minute", "hour": "1 hour", "day": "1 day"}[unit]
    n = per_bucket
    # Per generated row: rank (1 = the largest AS), its ASN, country,
    # transit; bytes ∝ 1/rank^1.1 with noise; RTT and retransmits vary by
    # rank so that the quality figures differ between ASes. The i-th AS of
    # a bucket: the top ones always, the tail rotating per bucket (an
    # injective map of i, so keys stay unique).
    top = min(TOP_FIXED, n // 2)
    rank = (f"CASE WHEN i <= {top} THEN i ELSE {top} + 1 + "
            f"((i * 7919 + (extract(epoch FROM ts)::bigint / 3600) * 104729) % {N_ASNS - top}) END")
    key_expr = {
        "asn": "64512 + rank" if "origin" in table else "CASE WHEN rank % 3 = 0 THEN 64512 + rank ELSE 3000 + rank % 20 END",
        "origin_as": "64512 + rank",
        "neighbor_as": "CASE WHEN rank % 3 = 0 THEN 64512 + rank ELSE 3000 + rank % 20 END",
        "country": f"(%(countries)s::text[])[1 + (rank * 37) % {len(countries)}]",
        "prefix": "set_masklen('1.0.0.0'::inet + rank * 256, 24)::cidr",
        "as_path": "CASE WHEN rank % 3 = 0 THEN (64512 + rank)::text ELSE (3000 + rank % 20)::text || ' ' || (64512 + rank)::text END",
    }
    if extra == ["asn"] and "neighbor" in table:
        # Per neighbour: the transits, then the direct peers (every third rank).
        n = min(n, 400)
        rank = "i"
        key_expr["asn"] = (f"CASE WHEN rank <= {N_TRANSITS} THEN 3000 + rank - 1 "
                           f"ELSE 64512 + (rank - {N_TRANSITS}) * 3 END")
    if extra == ["country"]:
        n = min(n, len(countries))
        key_expr["country"] = "(%(countries)s::text[])[rank]"
        rank = "i"
    hist = ", ".join(
        f"(req * {w})::bigint" for w in (0, 0, 0.01, 0.04, 0.15, 0.35, 0.25, 0.12, 0.05, 0.02, 0.01, 0))
    cols = [time_col, "router_id", "traffic_type"] + extra + [
        "records", "requests", "status_2xx", "response_bytes", "wire_bytes", "bytes_records", "data_segs",
        "retrans_segs", "segs_records", "tcpinfo_records", "rtt_sum_us"] + tables.HIST_COLUMNS + ["min_rtt_us"]
    keys = ", ".join(key_expr[c] for c in extra)
    sql = f"""
        INSERT INTO {table} ({', '.join(cols)})
        SELECT ts, r, ty, {keys}, req, req, req, b, b + b / 50, req, b / 1400,
               (b / 1400 * (0.002 + 0.04 * ((rank * 13) % 17) / 17.0 * random()))::bigint, req, req,
               req * (15000 + (rank * 7) % 120 * 1000), {hist}, 3000 + (rank * 11) % 40000
        FROM (
            SELECT ts, r, ty, rank, b, greatest(1, b / 60000) AS req FROM (
                SELECT ts, r, ty, rank,
                       ({scale_bytes} / power(rank, 1.1) * (0.6 + 0.8 * random()))::bigint AS b
                FROM (SELECT ts, r, ty, {rank} AS rank
                      FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '{step}',
                                           interval '{step}') ts,
                           unnest(%(routers)s::int[]) r, unnest(%(types)s::text[]) ty,
                           generate_series(1, {n}) i) ranks
            ) sized
        ) m
        ORDER BY ts
    """
    sql = sql.replace(" % ", " %% ")  # modulo, not a parameter
    cur.execute(sql, {"start": start, "end": end, "routers": ROUTERS, "types": TYPES, "countries": countries})
    return cur.rowcount


def build(scale: float) -> None:
    from django.db import connection

    from ipr.traffic import rollup, tables
    from ipr.web.countries import NAMES
    countries = sorted(c for c in NAMES if c not in ("EU", "AP"))[:250]
    now = datetime.now(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    hour = now.replace(minute=0, second=0, microsecond=0)
    minute = now.replace(second=0, microsecond=0)
    spans = {
        "day": (today - timedelta(days=365), today + timedelta(days=1), int(2000 * scale), 4e12),
        "hour": (hour - timedelta(days=90), hour + timedelta(hours=1), int(200 * scale), 2e11),
        "minute": (minute - timedelta(hours=48), minute + timedelta(minutes=1), int(30 * scale), 3e9),
    }
    with connection.cursor() as cur:
        # Each day's INSERT is estimated at a thousand buckets; JIT would
        # compile it for half a second, longer than it runs.
        cur.execute("SET jit = off")
        for name in tables.TABLES:
            cur.execute(f"TRUNCATE {name}")
        for name, (unit, _) in tables.TABLES.items():
            if name in tables.DERIVED:
                continue
            start, end, n, size = spans[unit]
            partitions(name, start, end)
            t0 = time.monotonic()
            # A day at a time, in time order, as the hourly archive and
            # the daily rollup write them: the BRIN time indexes then find
            # a range's rows (one INSERT for the whole range lays them out
            # in the order of the plan's joins, every block spanning months).
            rows, day = 0, start
            while day < end:
                rows += generate(cur, name, unit, day, min(day + timedelta(days=1), end), n, size, countries)
                day += timedelta(days=1)
            print(f"  {name:24} {rows:>11,} rows  {time.monotonic() - t0:6.1f} s", flush=True)
        for unit in ("hour", "day"):
            start, end, _, _ = spans[unit]
            t0 = time.monotonic()
            rows = derive(unit, start, end)
            print(f"  coarse tables per {unit:4}      {rows:>11,} rows  {time.monotonic() - t0:6.1f} s", flush=True)
        cur.execute("RESET jit")
    # As the archive leaves each hour and day it writes: its BRIN time
    # indexes summarized (ipr.traffic.tables.summarize).
    t0 = time.monotonic()
    ranges = tables.summarize(tables.TABLES)
    print(f"  BRIN ranges summarized: {ranges:,}  {time.monotonic() - t0:6.1f} s", flush=True)
    with connection.cursor() as cur:
        cur.execute("ANALYZE")
    t0 = time.monotonic()
    made = rollup.refresh_spans(now)
    with connection.cursor() as cur:
        cur.execute("ANALYZE")
    print(f"  spans ({made}, as the daily rollup makes them)    {time.monotonic() - t0:6.1f} s", flush=True)
    from ipr.routing.models import ASName, Router
    for i in ROUTERS:
        Router.objects.update_or_create(pk=i, defaults={"name": f"edge-{i}", "asn": 64496})
    ASName.objects.all().delete()
    ASName.objects.bulk_create([ASName(asn=64512 + r, name=f"AS-RANK-{r}") for r in range(1, 2001)] +
                               [ASName(asn=3000 + t, name=f"TRANSIT-{t}") for t in range(N_TRANSITS)])


def derive(unit: str, start: datetime, end: datetime) -> int:
    """The coarse tables, as the hourly archive and the daily rollup make
    them: a day at a time, so that their rows lie in time order, as the
    archive's do (their BRIN time indexes find a range's rows; one INSERT
    for the whole range would lay them out in hash order)."""
    from ipr.traffic import rollup
    rows, day = 0, start
    while day < end:
        rows += rollup.derive(unit, day.strftime(STAMP), min(day + timedelta(days=1), end).strftime(STAMP))
        day += timedelta(days=1)
    return rows


def timed(fn, runs: int) -> tuple[float, float]:
    fn()  # warm: plans, the AS names, Django's URL resolver
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
    return statistics.median(times), p95


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--keep", action="store_true", help="reuse the archive of an earlier run")
    args = parser.parse_args()
    url = os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ipr_webbench")
    if not url.startswith("postgres"):
        sys.exit("bench/web.py needs PostgreSQL (DATABASE_URL=postgres://...)")
    ensure_database(url)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ipr.settings")
    os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost")
    import django
    django.setup()
    from django.core.management import call_command
    call_command("migrate", verbosity=0)
    if not args.keep:
        t0 = time.monotonic()
        print(f"generating a year's archive (scale {args.scale}):")
        build(args.scale)
        print(f"  generated in {time.monotonic() - t0:.0f} s")
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client

    from ipr.web import queries as q
    with connection.cursor() as cur:
        cur.execute("SELECT pg_size_pretty(pg_database_size(current_database()))")
        print(f"database size: {cur.fetchone()[0]}")
    from ipr.traffic import rollup
    if args.keep:
        from ipr.traffic import tables
        print(f"BRIN ranges summarized: {tables.summarize(tables.TABLES):,}")  # none if build() did
        t0 = time.monotonic()
        made = rollup.refresh_spans()   # today's, if the archive was made on another day
        print(f"spans computed: {made} in {time.monotonic() - t0:.1f} s")
    user, _ = User.objects.get_or_create(username="bench")
    client = Client()
    client.force_login(user)

    def page(url):
        def get():
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)
        return get

    top_asn, mid_asn = 64512 + 1, 64512 + 500
    cases = []
    for preset in ("1h", "24h", "7d", "30d", "90d", "1y"):
        cases.append((f"dashboard {preset}", page(f"/?range={preset}"), 300))
    for preset in ("24h", "30d", "1y"):
        cases.append((f"AS page (largest AS) {preset}", page(f"/asn/{top_asn}?range={preset}"), 300))
        cases.append((f"AS page (rank 500) {preset}", page(f"/asn/{mid_asn}?range={preset}"), 300))
        cases.append((f"country page {preset}", page(f"/country/US?range={preset}"), 300))
        cases.append((f"top-100 ASN report {preset}", page(f"/reports/top-asns?range={preset}"), 300))
    # Pages the targets do not name, over the longest range: the router
    # page (split tables: no spans), the peering report, the uplink comparison.
    cases.append(("router page 1y (no target)", page("/router/1?range=1y"), None))
    cases.append(("peering report 1y (no target)", page("/reports/peering?range=1y"), None))
    cases.append(("uplinks of the largest AS 1y (no target)", page(f"/reports/uplinks?asn={top_asn}&range=1y"), None))
    year = q.Range.last("1y")
    cases.append(("one AS's series over a year (query)", lambda: q.series(year, q.Filters(origin_as=mid_asn)), 100))
    cases.append(("one AS's totals over a year (query)", lambda: q.totals(year, q.Filters(origin_as=mid_asn)), 100))
    # The peer: the same pages read day by day, as without spans (the
    # query layer told that there is none), in the same run: all the cases
    # with spans first, then all day by day, so that neither reading
    # pushes the other's pages out of PostgreSQL's buffers between runs.
    stored_span = q.stored_span
    print(f"\n{'case':44} {'median':>9} {'p95':>9}  target")
    spanned = {}
    for name, fn, target in cases:
        spanned[name] = median, p95 = timed(fn, args.runs)
        verdict = "" if target is None else "ok" if p95 <= target else "OVER"
        print(f"{name:44} {median:7.0f} ms {p95:7.0f} ms  {f'≤{target} ms' if target else '':9} {verdict}",
              flush=True)
    print(f"\nday by day (the peer){'':23} {'median':>9} {'p95':>9}  its p95 / with spans")
    q.stored_span = lambda rng: None
    try:
        for name, fn, target in cases:
            median, p95 = timed(fn, args.runs)
            print(f"{name:44} {median:7.0f} ms {p95:7.0f} ms  {p95 / spanned[name][1]:5.1f}×", flush=True)
    finally:
        q.stored_span = stored_span

    # What the daily rollup does each day: the next day's spans from these
    # (that day added, the first day of each taken out), timed, then dropped.
    from ipr.traffic.models import Span
    t0 = time.monotonic()
    made = rollup.refresh_spans(datetime.now(UTC) + timedelta(days=1))
    print(f"\nthe next day's spans from today's: {made} in {time.monotonic() - t0:.1f} s "
          f"(from their days: see 'spans computed' above)")
    tomorrow = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    for first, end in Span.objects.filter(end_day=tomorrow).values_list("first_day", "end_day"):
        rollup._delete_span(first, end)


if __name__ == "__main__":
    main()
