"""Archive rows for the web tests, written straight into the tables.

A *fact* is one (minute, router, type, prefix, origin AS, neighbour AS,
country, AS path) with its measures; :func:`write_facts` sums the facts
into every archive table the way the ingest and the rollup do (per minute,
per hour, per day; per prefix key, origin, neighbour, country and path), so
the tests can compute what a page must show from the facts alone.
"""
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from django.db import connection

from ipr.routing.load import copy_rows
from ipr.traffic import tables

UTC = timezone.utc


@dataclass
class Fact:
    minute: datetime
    router: int
    traffic_type: str
    prefix: str
    origin_as: int
    neighbor_as: int
    country: str
    as_path: str
    sums: dict = field(default_factory=dict)   # every name in tables.SUMS
    min_rtt_us: int | None = None


def random_sums(rng: random.Random, scale: int = 1) -> dict:
    s = {m: 0 for m in tables.SUMS}
    s["records"] = s["requests"] = rng.randint(1, 500) * scale
    s["connections"] = s["requests"] // 2
    s["status_2xx"] = s["requests"]
    s["response_bytes"] = rng.randint(10_000, 50_000_000) * scale
    s["wire_bytes"] = s["response_bytes"] + 1000
    s["data_segs"] = s["response_bytes"] // 1400 + 1
    s["retrans_segs"] = rng.randint(0, s["data_segs"] // 20)
    s["bytes_records"] = s["segs_records"] = s["tcpinfo_records"] = s["records"]
    for _ in range(s["records"]):
        bucket = min(11, int(rng.expovariate(0.4)))
        s[f"rtt_h{bucket}"] += 1
    s["rtt_sum_us"] = s["records"] * rng.randint(5_000, 150_000)
    s["duration_sum_us"] = s["records"] * 1000
    return s


def _stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S+00:00")


def _truncate(t: datetime, unit: str) -> datetime:
    if unit == "minute":
        return t.replace(second=0, microsecond=0)
    if unit == "hour":
        return t.replace(minute=0, second=0, microsecond=0)
    return t.replace(hour=0, minute=0, second=0, microsecond=0)


def _key(fact: Fact, column: str, table: str):
    if column == "asn":  # the per-origin and per-neighbour tables
        return fact.origin_as if "origin" in table else fact.neighbor_as
    return {"router_id": fact.router, "traffic_type": fact.traffic_type, "prefix": fact.prefix,
            "origin_as": fact.origin_as, "neighbor_as": fact.neighbor_as, "country": fact.country,
            "as_path": fact.as_path}[column]


def empty_archive() -> None:
    with connection.cursor() as cur:
        for name in tables.TABLES:
            cur.execute(f"DELETE FROM {name}")


def _ensure_month_partitions(name: str, stamps: set[datetime]) -> None:
    # Same names and bounds as the ingest's partitions (ipr.traffic.ingest),
    # so a later ingest finds them.
    daily = name == "traffic_current"
    with connection.cursor() as cur:
        for t in stamps:
            if daily:
                start = t.replace(hour=0, minute=0, second=0, microsecond=0)
                end, suffix = start + timedelta(days=1), f"d{start:%Y%m%d}"
            else:
                start = t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
                end = start.replace(year=start.year + (start.month == 12), month=start.month % 12 + 1)
                suffix = f"m{start:%Y%m}"
            cur.execute(f"CREATE TABLE IF NOT EXISTS {name}_{suffix} PARTITION OF {name} "
                        f"FOR VALUES FROM ('{start:%Y-%m-%d}+00') TO ('{end:%Y-%m-%d}+00')")


def write_facts(facts: list[Fact], minute_window: bool = True) -> None:
    """Sum the facts into every archive table (traffic_current too unless
    ``minute_window`` is False)."""
    pg = connection.vendor == "postgresql"
    for name, (unit, extra) in tables.TABLES.items():
        if name == "traffic_current" and not minute_window:
            continue
        cols = tables.key_columns(name)
        acc = defaultdict(lambda: {m: 0 for m in tables.SUMS})
        mins = {}
        for f in facts:
            k = (_truncate(f.minute, unit),) + tuple(_key(f, c, name) for c in cols[1:])
            row = acc[k]
            for m in tables.SUMS:
                row[m] += f.sums.get(m, 0)
            if f.min_rtt_us is not None:
                mins[k] = min(mins.get(k, f.min_rtt_us), f.min_rtt_us)
        if not acc:
            continue
        if pg:
            _ensure_month_partitions(name, {k[0] for k in acc})
        rows = [(_stamp(k[0]),) + k[1:] + tuple(v[m] for m in tables.SUMS) + (mins.get(k),)
                for k, v in acc.items()]
        copy_rows(name, tuple(cols + tables.MEASURES), rows)
