#!/usr/bin/env python3
"""Time of a scrape of /metrics/quality over a large hour.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ipr_qualitybench \\
        .venv/bin/python bench/quality_metrics.py [--ases 20000] [--runs 12]

Writes, with bench/web.py's generator (PostgreSQL's generate_series), the
last complete hour of the hourly tables: ``--ases`` origin ASes per router
and traffic type (3 routers, 4 types; Zipf-skewed bytes, 250 countries, 20
transits and every third AS a direct peer), and the coarse tables the
hourly archive derives from them. Then it times the scrape (the endpoint's
queries and its text, through Django's test client, the 60 s cache
cleared before each run) at the default and at the largest settings, and
prints the median and p95 and the number of series.
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
sys.path.insert(0, str(ROOT / "bench"))

UTC = timezone.utc


def build(ases: int) -> datetime:
    import web   # bench/web.py
    from django.db import connection

    from ipr.routing.models import ASName, Router
    from ipr.traffic import rollup, tables
    from ipr.web.countries import NAMES
    countries = sorted(c for c in NAMES if c not in ("EU", "AP"))[:250]
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    end = start + timedelta(hours=1)
    with connection.cursor() as cur:
        for name in tables.TABLES:
            cur.execute(f"TRUNCATE {name}")
        for name, (unit, _) in tables.TABLES.items():
            if unit != "hour" or name in tables.DERIVED:
                continue
            web.partitions(name, start, end)
            t0 = time.monotonic()
            rows = web.generate(cur, name, unit, start, end, ases, 2e11, countries)
            print(f"  {name:24} {rows:>11,} rows  {time.monotonic() - t0:6.1f} s", flush=True)
        rows = rollup.derive("hour", start.strftime(web.STAMP), end.strftime(web.STAMP))
        print(f"  coarse tables              {rows:>11,} rows", flush=True)
        cur.execute("ANALYZE")
    for i in web.ROUTERS:
        Router.objects.update_or_create(pk=i, defaults={"name": f"edge-{i}", "asn": 64496})
    ASName.objects.all().delete()
    ASName.objects.bulk_create([ASName(asn=64512 + r, name=f"AS-RANK-{r}") for r in range(1, 2001)])
    return start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ases", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=12)
    args = parser.parse_args()
    url = os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ipr_qualitybench")
    if not url.startswith("postgres"):
        sys.exit("bench/quality_metrics.py needs PostgreSQL (DATABASE_URL=postgres://...)")
    import web
    web.ensure_database(url)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ipr.settings")
    os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost")
    os.environ.pop("IPR_METRICS_TOKEN", None)
    import django
    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.test import Client
    from prometheus_client.parser import text_string_to_metric_families

    from ipr.traffic import quality_metrics as qm
    call_command("migrate", verbosity=0)
    print(f"building the last complete hour, {args.ases:,} origin ASes per router and type", flush=True)
    build(args.ases)
    client = Client()
    for top, uplinks in ((20, 50), (qm.TOP_CAP, qm.UPLINKS_CAP)):
        settings.QUALITY_METRICS_TOP, settings.QUALITY_METRICS_UPLINKS = top, uplinks
        times, text = [], ""
        for _ in range(args.runs + 1):
            qm._cache.clear()
            t0 = time.perf_counter()
            r = client.get("/metrics/quality")
            times.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200, r.content
            text = r.content.decode()
        times = sorted(times[1:])   # the first warms the plans and the URL resolver
        p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
        n = sum(len(f.samples) for f in text_string_to_metric_families(text))
        groups = {s.labels["dimension"]: int(s.value) for f in text_string_to_metric_families(text)
                  if f.name == "ipr_quality_groups" for s in f.samples}
        print(f"  top {top:3}, uplinks {uplinks:3}: median {statistics.median(times):7.1f} ms, p95 {p95:7.1f} ms, "
              f"{n:,} series (at most {qm.max_series(top, uplinks):,}), groups {groups}, "
              f"{len(text):,} bytes", flush=True)


if __name__ == "__main__":
    main()
