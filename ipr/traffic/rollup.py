"""The hourly archive, daily rollups, retention and partitions.

- The hourly archive computes an hour of every hourly table from the
  per-minute window (``traffic_current``) and replaces what the hour had.
  The ingest marks each hour it adds to as pending (in its own
  transaction); the archive task computes the pending hours once they are
  closed (``IPR_ARCHIVE_GRACE_MINUTES`` after their end) and removes their
  mark in the same transaction. A late segment marks its hour again, and the
  hour is computed again from the window, which still holds all of it: so a
  rerun, or late traffic, is always right.
- The daily rollup does the same for a day of the daily tables, from the
  hourly ones; the hourly archive marks the day it changed.
- Retention drops what is older than each resolution keeps (settings
  ``IPR_KEEP_*``): whole partitions on PostgreSQL, rows on SQLite. It first
  archives what is pending, so no hour leaves the window unarchived.
"""
from __future__ import annotations

import logging
from datetime import date, datetime, timedelta, timezone as tz

from django.conf import settings
from django.db import connection, models, transaction

from ipr.traffic import tables
from ipr.traffic.models import IngestedSegment, Pending, Span, SpanChange

log = logging.getLogger("ipr.rollup")

STAMP = "%Y-%m-%d %H:%M:%S+00:00"


def _stamp(t: datetime | date) -> str:
    if not isinstance(t, datetime):
        t = datetime(t.year, t.month, t.day, tzinfo=tz.utc)
    return t.astimezone(tz.utc).strftime(STAMP)


def _time(stamp: str) -> datetime:
    return datetime.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=tz.utc)


def _param(pg: bool) -> str:
    return "%s::timestamptz" if pg else "%s"


# -- pending marks --------------------------------------------------------------

def mark(level: str, stamps) -> None:
    """Mark hours or days (time stamps of their start) as pending, in the
    caller's transaction, and drop the spans that hold them (they would no
    longer equal their days)."""
    now = _stamp(datetime.now(tz.utc))
    pg = connection.vendor == "postgresql"
    drop_spans({_time(s).date() for s in stamps})
    with connection.cursor() as cur:
        for stamp in sorted(stamps):
            cur.execute(f"INSERT INTO {Pending._meta.db_table} (level, start, marked) "
                        f"VALUES (%s, {_param(pg)}, {_param(pg)}) "
                        f"ON CONFLICT (level, start) DO UPDATE SET marked = excluded.marked",
                        [level, stamp, now])


def _claim(level: str, stamp: str) -> bool:
    """Lock and remove one pending mark, in the caller's transaction; False if
    it is gone or another transaction (an ingest adding to it, or another
    archive run) holds it."""
    pg = connection.vendor == "postgresql"
    with connection.cursor() as cur:
        lock = " FOR UPDATE SKIP LOCKED" if pg else ""
        cur.execute(f"SELECT id FROM {Pending._meta.db_table} WHERE level = %s AND start = {_param(pg)}{lock}",
                    [level, stamp])
        row = cur.fetchone()
        if row is None:
            return False
        cur.execute(f"DELETE FROM {Pending._meta.db_table} WHERE id = %s", [row[0]])
        return True


def _pending(level: str, before: datetime | None) -> list[str]:
    query = Pending.objects.filter(level=level)
    if before is not None:
        query = query.filter(start__lt=before)
    return [_stamp(t) for t in query.order_by("start").values_list("start", flat=True)]


# -- the hourly archive ---------------------------------------------------------

# The hour is summed in float8 (tables.EXACT): if the sum of each column
# over the whole hour is below 2**53, every sum of it is exact; otherwise the
# hour is summed again in bigint.


def archive_hour(hour: datetime | str) -> int:
    """Compute every hourly table's rows of ``hour`` from the window, replacing
    what it had, in the caller's transaction (or its own); rows written.

    The window's rows of the hour are summed once, per prefix and AS path,
    into a temporary table. Those rows are the hour's prefix rows as they
    are (a prefix with two AS paths in the hour, after a table swap, has
    two rows: the tables are multisets); each other hourly table is a sum
    of them (rather than of the window again, or of the archive's fresh
    rows, which have no statistics or hint bits yet).
    """
    pg = connection.vendor == "postgresql"
    start = hour if isinstance(hour, str) else _stamp(hour)
    end = _stamp(_time(start) + timedelta(hours=1))
    p = _param(pg)
    written = 0
    with transaction.atomic(), connection.cursor() as cur:
        if pg:
            cur.execute("SET LOCAL work_mem = '512MB'")  # an hour's hash table, in memory
            # The hour's partition is new and has no statistics yet: the
            # planner would guess a few thousand groups and sort millions of
            # rows to group them (18 s for 4M rows; 8 s hashed). A hash
            # that outgrows work_mem spills to disk, so this is safe.
            cur.execute("SET LOCAL enable_sort = off")
        for name in tables.HOURLY:
            if pg:
                tables.ensure_partitions(name, {start})
            cur.execute(f"DELETE FROM {name} WHERE hour = {p}", [start])
        every = ", ".join(["router_id", "traffic_type"] + tables.PREFIX_KEY + ["as_path"])
        for kind in (("float8", "bigint") if pg else ("bigint",)):
            sums = tables.sums_select("::float8" if kind == "float8" else "", named=True)
            cur.execute("DROP TABLE IF EXISTS archived_hour")
            cur.execute(f"CREATE TEMP TABLE archived_hour AS SELECT {every}, {sums} FROM traffic_current "
                        f"WHERE minute >= {p} AND minute < {p} GROUP BY {every}", [start, end])
            if kind == "float8":
                cur.execute(f"SELECT greatest({', '.join(f'sum({m})' for m in tables.SUMS)}) FROM archived_hour")
                largest = cur.fetchone()[0]
                if largest is None or largest < tables.EXACT:
                    break
                log.info("hour %s: a sum reaches 2**53; summed again in bigint", start[:16])
        back = "::bigint" if kind == "float8" else ""
        for name, columns in tables.HOURLY_SOURCES.items():
            keys = tables.key_columns(name)
            key = ", ".join(["router_id", "traffic_type"] + columns)
            if name == "traffic_prefix_hour":
                sums = ", ".join([f"{m}{back}" for m in tables.SUMS] + ["min_rtt_us"])
                select = f"SELECT {p}, {key}, {sums} FROM archived_hour"
            else:
                sums = tables.sums_select("::float8", back="::bigint") if kind == "float8" else tables.sums_select()
                select = f"SELECT {p}, {key}, {sums} FROM archived_hour GROUP BY {key}"
            cur.execute(f"INSERT INTO {name} ({', '.join(keys + tables.MEASURES)}) {select}", [start])
            written += cur.rowcount
        cur.execute("DROP TABLE archived_hour")
        written += derive("hour", start, end, exact_in_float=kind == "float8")
        mark("day", {_stamp(_time(start).date())})
    return written


def archive_pending(now: datetime | None = None, everything: bool = False,
                    hours: list[str] | None = None) -> int:
    """Archive the pending hours that are closed (all of them with
    ``everything``; only those of ``hours`` if given); hours archived."""
    now = now or datetime.now(tz.utc)
    if hours is None:
        closed = now - timedelta(hours=1, minutes=settings.ARCHIVE_GRACE_MINUTES)
        hours = _pending("hour", None if everything else closed)
    else:
        wanted = set(hours)
        hours = [h for h in _pending("hour", None) if h in wanted]
    done = 0
    for stamp in hours:
        with transaction.atomic():
            if not _claim("hour", stamp):
                continue
            rows = archive_hour(stamp)
        tables.summarize(tables.HOURLY, [stamp])
        done += 1
        log.info("archived hour %s: %d rows", stamp[:16], rows)
    return done


# -- coarse tables ------------------------------------------------------------

def derive(unit: str, start: str, end: str, exact_in_float: bool = False, names=None) -> int:
    """Compute the coarse tables of ``unit`` ('hour' or 'day') for [start,
    end) from the tables they are sums of (tables.DERIVED), replacing what
    they had, in the caller's transaction; rows written. The hourly archive
    and the daily rollup call it after writing their tables, and the ingest
    after adding late traffic straight to an hour. ``exact_in_float``: the
    caller knows that every sum of the range is below 2**53 (tables.EXACT), so
    they are summed in float8. ``names``: only these coarse tables."""
    pg = connection.vendor == "postgresql"
    p = _param(pg)
    # A stamp per day, from the midnight that starts the range's first day,
    # finds every (monthly) partition of the range: stepping from a start
    # within a day would miss a month that begins before the same time of
    # its first day.
    days, t = {start}, _time(start).replace(hour=0, minute=0, second=0, microsecond=0)
    while t < _time(end):
        days.add(_stamp(t))
        t += timedelta(days=1)
    written = 0
    with connection.cursor() as cur:
        for name, source in tables.DERIVED.items():
            if tables.TABLES[name][0] != unit or (names is not None and name not in names):
                continue
            keys = tables.key_columns(name)
            if pg:
                tables.ensure_partitions(name, days)
            where = f"{unit} >= {p} AND {unit} < {p}"
            cur.execute(f"DELETE FROM {name} WHERE {where}", [start, end])
            float8 = exact_in_float and pg
            sums = tables.sums_select("::float8", back="::bigint") if float8 else tables.sums_select()
            cur.execute(f"INSERT INTO {name} ({', '.join(keys + tables.MEASURES)}) "
                        f"SELECT {', '.join(keys)}, {sums} FROM {source} "
                        f"WHERE {where} GROUP BY {', '.join(keys)}", [start, end])
            written += cur.rowcount
    return written


# -- daily rollups --------------------------------------------------------------

def rollup_day(day: date) -> int:
    """Recompute every daily table for ``day`` (UTC) from the hourly ones."""
    pg = connection.vendor == "postgresql"
    start, end = _stamp(day), _stamp(day + timedelta(days=1))
    p = _param(pg)
    written = 0
    with transaction.atomic(), connection.cursor() as cur:
        drop_spans({day})   # already dropped if the day was marked; not if called by hand
        for daily, hourly in tables.ROLLUPS.items():
            keys = tables.key_columns(daily)[1:]
            if pg:
                tables.ensure_partitions(daily, {start})
            cur.execute(f"DELETE FROM {daily} WHERE day = {p}", [start])
            cur.execute(
                f"INSERT INTO {daily} (day, {', '.join(keys)}, {', '.join(tables.MEASURES)}) "
                f"SELECT {p}, {', '.join(keys)}, {tables.sums_select()} FROM {hourly} "
                f"WHERE hour >= {p} AND hour < {p} GROUP BY {', '.join(keys)}", [start, start, end])
            written += cur.rowcount
        written += derive("day", start, end)
    return written


DAILY = [name for name, (column, _) in tables.TABLES.items() if column == "day"]


def rollup_pending(now: datetime | None = None) -> int:
    """Roll up every pending day (today's too: it is rolled up again as its
    hours are archived), then compute the spans that end today if they are
    missing (:func:`refresh_spans`); days rolled up."""
    done = 0
    for stamp in _pending("day", None):
        with transaction.atomic():
            if not _claim("day", stamp):
                continue
            rollup_day(_time(stamp).date())
        tables.summarize(DAILY, [stamp])
        done += 1
    refresh_spans(now)
    return done


# -- spans ----------------------------------------------------------------------

# Computing a span takes minutes over a large archive, and must not hold up
# the ingest. So it runs unlocked, and checks at the end that no day of it
# changed meanwhile: every mark is logged (SpanChange), under this lock
# held shared by the marking transaction; the computation takes it alone at
# its start (so that every marking transaction before it has committed and
# is seen) and at its end (so that every one since has committed and its
# log row is seen, and any later one sees the new span and drops it). One
# computation at a time (a second lock). PostgreSQL; SQLite has one writer.
SPAN_LOCK = 0x6970725370616E   # "iprSpan"
SPAN_RUN_LOCK = SPAN_LOCK + 1


class _Changed(Exception):
    """A day of the span being computed changed meanwhile."""


def _span_starts(end: date) -> list[date]:
    """The first days of the spans that end at ``end``, shortest first: one
    per length in tables.SPAN_DAYS that the daily tables keep (the
    retention drops the day ``IPR_KEEP_DAILY_DAYS`` before today as the day
    goes on)."""
    return [end - timedelta(days=n) for n in sorted(tables.SPAN_DAYS) if n < settings.KEEP_DAILY_DAYS]


def _lock(shared: bool = False) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute(f"SELECT pg_advisory_xact_lock{'_shared' if shared else ''}(%s)", [SPAN_LOCK])


def refresh_spans(now: datetime | None = None) -> int:
    """Compute the spans that end at today's midnight (UTC) if any is
    missing, once every day before it is final: no hour or day before it
    pending. Each is computed from the span of the same length that ended
    a day (or a few) before, where there is one, plus the days added less
    the days dropped; else from its days. Spans of other ends but the one
    before are dropped. Returns the spans computed; a span whose days
    changed while it was computed is left for the next run."""
    now = now or datetime.now(tz.utc)
    end = now.astimezone(tz.utc).date()
    if not _run_lock():
        return 0
    try:
        with transaction.atomic():
            _lock()   # every marking transaction before this one has committed
            seen = SpanChange.objects.aggregate(m=models.Max("id"))["m"] or 0
            final = not Pending.objects.filter(start__lt=_time(_stamp(end))).exists()
        have = {t.astimezone(tz.utc).date() for t in
                Span.objects.filter(end_day=_time(_stamp(end))).values_list("first_day", flat=True)}
        done = 0
        for first in _span_starts(end) if final else []:
            if first in have:
                continue
            try:
                with transaction.atomic():
                    compute_span(first, end)
                    _lock()
                    if SpanChange.objects.filter(id__gt=seen, day__gte=_time(_stamp(first)),
                                                 day__lt=_time(_stamp(end))).exists():
                        raise _Changed()
            except _Changed:
                log.info("span %s .. %s: a day of it changed meanwhile; left for the next run", first, end)
                continue
            done += 1
        with transaction.atomic():
            old = Span.objects.filter(end_day__lt=_time(_stamp(end - timedelta(days=1))))
            for first, last in old.values_list("first_day", "end_day"):
                _delete_span(first, last)
            SpanChange.objects.filter(id__lte=seen).delete()
        if done and connection.vendor == "postgresql":
            # Fresh statistics: the planner would otherwise take a span's
            # hundred thousand rows for a handful and sort them.
            with connection.cursor() as cur:
                for name in tables.SPANS:
                    cur.execute(f"ANALYZE {name}")
        return done
    finally:
        _run_unlock()


def _run_lock() -> bool:
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(%s)", [SPAN_RUN_LOCK])
        return cur.fetchone()[0]


def _run_unlock() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s)", [SPAN_RUN_LOCK])


def compute_span(first: date, end: date) -> int:
    """Sum the daily tables over the days [first, end) into the span
    tables, replacing that span, in the caller's transaction; rows written.

    From the span of the same length with an earlier end, if there is one:
    its rows, plus the days after it, less its days before ``first``, keys
    left without traffic dropped (a few days' rows instead of a year's).
    Spans hold sums only: the least min RTT cannot be taken back out, and
    no page reads it over a range (min_rtt_us is NULL). Sums in bigint: a
    year of the largest AS's bytes passes 2**53.
    """
    pg = connection.vendor == "postgresql"
    p = _param(pg)
    start, stop = _stamp(first), _stamp(end)
    _delete_span(_time(start), _time(stop))
    length = end - first
    before = (Span.objects.filter(end_day__lt=_time(stop), end_day__gt=_time(_stamp(end - length)))
              .order_by("-end_day").values_list("first_day", "end_day"))
    before = next(((f, e) for f, e in before if e - f == length), None)
    written = 0
    with connection.cursor() as cur:
        if pg:
            # A year's keys hashed in memory; the planner, which cannot tell
            # how many groups a union has, would sort the wide rows instead.
            cur.execute("SET LOCAL work_mem = '256MB'")
            cur.execute("SET LOCAL enable_sort = off")
            # One hash in one process: parallel workers each hash part of
            # the rows and then sort their partial sums to merge them (2.1
            # against 0.85 s for a week's per-router rows); JIT compiling
            # 36 sums costs more than it saves here.
            cur.execute("SET LOCAL max_parallel_workers_per_gather = 0")
            cur.execute("SET LOCAL jit = off")
        for name, daily in tables.SPANS.items():
            keys = ", ".join(tables.TABLES[daily][1])
            sums = ", ".join(tables.SUMS)
            into = f"INSERT INTO {name} (first_day, end_day, {keys}, {sums}) SELECT {p}, {p}, {keys}, "
            summed = ", ".join(tables.saturated_sum(m, pg) for m in tables.SUMS)
            if before is None:
                cur.execute(f"{into}{summed} FROM {daily} "
                            f"WHERE day >= {p} AND day < {p} GROUP BY {keys}", [start, stop, start, stop])
            else:
                old_first, old_end = (_stamp(t) for t in before)
                negated = ", ".join(f"-{m}" for m in tables.SUMS)
                cur.execute(
                    f"{into}{summed} FROM ("
                    f"SELECT {keys}, {sums} FROM {name} WHERE first_day = {p} AND end_day = {p} "
                    f"UNION ALL SELECT {keys}, {sums} FROM {daily} WHERE day >= {p} AND day < {p} "
                    f"UNION ALL SELECT {keys}, {negated} FROM {daily} WHERE day >= {p} AND day < {p}"
                    f") moved GROUP BY {keys} HAVING {tables.saturated_sum('records', pg)} <> 0",
                    [start, stop, old_first, old_end, old_end, stop, old_first, start])
            written += cur.rowcount
    Span.objects.create(first_day=_time(start), end_day=_time(stop), rows=written)
    log.info("span %s .. %s: %d rows%s", start[:10], stop[:10], written,
             "" if before is None else f", from the span that ended {_stamp(before[1])[:10]}")
    return written


def drop_spans(days: set[date]) -> int:
    """Drop the spans that hold any of these days, and log the days as
    changed for a span being computed, in the caller's transaction; spans
    dropped."""
    if not days:
        return 0
    _lock(shared=True)
    SpanChange.objects.bulk_create([SpanChange(day=_time(_stamp(d))) for d in sorted(days)])
    low, high = _time(_stamp(min(days))), _time(_stamp(max(days)))
    dropped = 0
    for first, end in Span.objects.filter(first_day__lte=high, end_day__gt=low).values_list("first_day", "end_day"):
        if any(first <= _time(_stamp(d)) < end for d in days):
            _delete_span(first, end)
            dropped += 1
    return dropped


def _delete_span(first: datetime, end: datetime) -> None:
    p = _param(connection.vendor == "postgresql")
    start, stop = _stamp(first), _stamp(end)
    with connection.cursor() as cur:
        for name in tables.SPANS:
            cur.execute(f"DELETE FROM {name} WHERE end_day = {p} AND first_day = {p}", [stop, start])
    Span.objects.filter(first_day=_time(start), end_day=_time(stop)).delete()


# -- retention and partitions ------------------------------------------------

def retention(now: datetime | None = None) -> dict[str, int]:
    """Drop archive rows (and ingest records) older than their resolution keeps."""
    now = now or datetime.now(tz.utc)
    # Nothing leaves the window before it is archived.
    archive_pending(now)
    rollup_pending()
    cutoffs = {"minute": now - timedelta(hours=settings.KEEP_CURRENT_HOURS),
               "hour": now - timedelta(days=settings.KEEP_HOURLY_DAYS),
               "day": now - timedelta(days=settings.KEEP_DAILY_DAYS)}
    dropped = {}
    pg = connection.vendor == "postgresql"
    with connection.cursor() as cur:
        for name, (column, _) in tables.TABLES.items():
            cutoff = _stamp(cutoffs[column])
            if pg:
                for part, _, upper in tables.partitions(cur, name):
                    if upper <= cutoffs[column]:
                        cur.execute(f"DROP TABLE {part}")
            cur.execute(f"DELETE FROM {name} WHERE {column} < {_param(pg)}", [cutoff])
            dropped[name] = cur.rowcount
    IngestedSegment.objects.filter(at__lt=now - timedelta(days=settings.KEEP_HOURLY_DAYS)).delete()
    return dropped


def prepare_partitions(now: datetime | None = None) -> list[str]:
    """Create the partitions the next day's writes need, ahead of them
    (PostgreSQL); the ingest and archive create any that are still missing."""
    if connection.vendor != "postgresql":
        return []
    now = now or datetime.now(tz.utc)
    stamps = {_stamp(now + timedelta(hours=h)) for h in range(25)}
    made = []
    with transaction.atomic(), connection.cursor() as cur:
        for name in tables.TABLES:
            before = {p for p, _, _ in tables.partitions(cur, name)}
            tables.ensure_partitions(name, stamps)
            made += sorted({p for p, _, _ in tables.partitions(cur, name)} - before)
    return made

