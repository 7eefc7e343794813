"""Daily rollups and retention of the archive tables.

A day's rollup is recomputed from its hourly rows and replaces what was
there, so running it again, or after late segments of that day arrive, is
always right. Retention drops what is older than each resolution keeps
(settings ``IPR_KEEP_*``): whole partitions on PostgreSQL, rows on SQLite.
"""
from __future__ import annotations

import logging
from datetime import date, datetime, timedelta, timezone as tz

from django.conf import settings
from django.db import connection, transaction

from ipr.traffic import tables
from ipr.traffic.ingest import ensure_partitions
from ipr.traffic.models import IngestedSegment

log = logging.getLogger("ipr.rollup")


def _stamp(d: date) -> str:
    return f"{d:%Y-%m-%d} 00:00:00+00:00"


def rollup_day(day: date) -> int:
    """Recompute every daily table for ``day`` (UTC) from the hourly ones."""
    pg = connection.vendor == "postgresql"
    start, end = _stamp(day), _stamp(day + timedelta(days=1))
    written = 0
    least = "min"
    with transaction.atomic(), connection.cursor() as cur:
        for daily, hourly in tables.ROLLUPS.items():
            keys = tables.key_columns(daily)[1:]
            if pg:
                ensure_partitions(daily, {start})
            cur.execute(f"DELETE FROM {daily} WHERE day = %s", [start])
            sums = ", ".join(f"sum({m})" for m in tables.SUMS)
            day_value = "%s::timestamptz" if pg else "%s"
            cur.execute(
                f"INSERT INTO {daily} (day, {', '.join(keys)}, {', '.join(tables.MEASURES)}) "
                f"SELECT {day_value}, {', '.join(keys)}, {sums}, {least}(min_rtt_us) FROM {hourly} "
                f"WHERE hour >= %s AND hour < %s GROUP BY {', '.join(keys)}", [start, start, end])
            written += cur.rowcount
    return written


def retention(now: datetime | None = None) -> dict[str, int]:
    """Drop archive rows (and ingest records) older than their resolution keeps."""
    now = now or datetime.now(tz.utc)
    cutoffs = {"minute": now - timedelta(hours=settings.KEEP_CURRENT_HOURS),
               "hour": now - timedelta(days=settings.KEEP_HOURLY_DAYS),
               "day": now - timedelta(days=settings.KEEP_DAILY_DAYS)}
    dropped = {}
    pg = connection.vendor == "postgresql"
    with connection.cursor() as cur:
        for name, (column, _) in tables.TABLES.items():
            cutoff = cutoffs[column].strftime("%Y-%m-%d %H:%M:%S+00:00")
            if pg:
                for part, upper in _partitions(cur, name):
                    if upper <= cutoffs[column]:
                        cur.execute(f"DROP TABLE {part}")
            cur.execute(f"DELETE FROM {name} WHERE {column} < %s", [cutoff])
            dropped[name] = cur.rowcount
    IngestedSegment.objects.filter(at__lt=now - timedelta(days=settings.KEEP_HOURLY_DAYS)).delete()
    return dropped


def _partitions(cur, name: str) -> list[tuple[str, datetime]]:
    """Partitions of ``name`` with their upper bound."""
    cur.execute(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s",
        [name])
    out = []
    for part, bound in cur.fetchall():
        # FOR VALUES FROM ('2026-11-01 00:00:00+00') TO ('2026-12-01 00:00:00+00')
        upper = bound.split("TO ('", 1)[1].split("'", 1)[0]
        out.append((part, datetime.fromisoformat(upper.replace("+00", "+00:00"))))
    return out
