"""What the pages, the reports and the API read from the archive.

Plain SQL through ``django.db.connection`` over the archive tables
(ipr/traffic/tables.py), the same on PostgreSQL and SQLite. Every function
returns plain dicts and lists (JSON-ready apart from ``datetime`` values),
so the views, the CSV export and the REST API share them.

Three ideas run through it:

- A :class:`Range` picks its resolution: the per-minute window
  ``traffic_current`` for short recent ranges, the hourly tables up to a
  month within their retention, the daily rollups beyond (thresholds below,
  and in docs/web.md). The range is widened to whole buckets of that
  resolution, so the tables' rows are either wholly in it or wholly out.
- Every figure is a sum of the archive's measures, and derived figures
  (bits/s, retransmit rate, mean RTT, RTT percentiles) are computed from
  those sums afterwards, so they are right over any grouping.
- A top-N always comes with its ``other`` row (total minus the top rows)
  and its ``total``, read from the same table with the same filters, so
  what a page shows adds up to the total it shows.

Unknown values are sentinels and stay visible: router 0, AS 0, country ''
and the prefixes 0.0.0.0/0 and ::/0 are keys like any other; so are the
special-purpose addresses' country ZZ and blocks (ipr.routing.special).
"""
from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field, replace
from functools import cached_property
from datetime import datetime, timedelta, timezone as tz
from typing import Mapping

import numpy as np
from django.conf import settings
from django.db import connection

from collector.spool import RTT_EDGES_US
from ipr.fields import ASN_MAX, format_asn
from ipr.traffic import tables

UTC = tz.utc
MINUTE, HOUR, DAY = 60, 3600, 86400
STEP = {"minute": MINUTE, "hour": HOUR, "day": DAY}

# Preset ranges: name -> (label, length). The range ends at the end of the
# current bucket, so the traffic of the running minute/hour/day is included.
PRESETS = {
    "1h": ("last hour", timedelta(hours=1)),
    "6h": ("last 6 hours", timedelta(hours=6)),
    "24h": ("last 24 hours", timedelta(hours=24)),
    "7d": ("last 7 days", timedelta(days=7)),
    "30d": ("last 30 days", timedelta(days=30)),
    "90d": ("last 90 days", timedelta(days=90)),
    "1y": ("last year", timedelta(days=365)),
}
DEFAULT_PRESET = "24h"

# Resolution thresholds. The per-minute window serves ranges of at most
# MINUTE_MAX_SPAN that start within its retention (IPR_KEEP_CURRENT_HOURS);
# the hourly tables ranges of at most HOURLY_MAX_SPAN that start within
# theirs (IPR_KEEP_HOURLY_DAYS); the daily rollups everything else. The
# spans cap the number of points of a series (360 minutes, ~840 hours) and
# the rows a top-N reads; beyond a month a day is the unit operators read.
MINUTE_MAX_SPAN = timedelta(hours=6)
HOURLY_MAX_SPAN = timedelta(days=35)

# The measures read from the archive (sums; see ipr/traffic/tables.py).
HIST = [f"rtt_h{i}" for i in range(len(RTT_EDGES_US) + 1)]
SUMS = ["requests", "response_bytes", "wire_bytes", "data_segs", "retrans_segs",
        "tcpinfo_records", "rtt_sum_us"] + HIST
# Upper bounds of the RTT histogram's buckets in ms; the last bucket is open.
EDGES_MS = [e / 1000 for e in RTT_EDGES_US]

# Dimensions a top-N or a split can group by, and filters: the logical name
# and the column in the prefix-keyed tables.
DIMENSIONS = ("router", "traffic_type", "origin_as", "neighbor_as", "country", "prefix", "as_path")
_PREFIX_TABLE_DIMS = {"origin_as", "neighbor_as", "country", "prefix"}
_PATH_TABLE_DIMS = {"origin_as", "neighbor_as", "as_path"}


class QueryError(ValueError):
    """A bad range, filter or dimension (the views answer 400 with it)."""


# -- time ranges ---------------------------------------------------------------

def _floor(t: datetime, step: int) -> datetime:
    s = int(t.timestamp())
    return datetime.fromtimestamp(s - s % step, UTC)


def _ceil(t: datetime, step: int) -> datetime:
    f = _floor(t, step)
    return f if f == t else f + timedelta(seconds=step)


def _now() -> datetime:
    return datetime.now(UTC)


def parse_time(text: str) -> datetime:
    """An ISO 8601 date or time ('2026-03-01', '2026-03-01T10:00', with or
    without offset; naive means UTC)."""
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace(" ", "T"))
        return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    except (ValueError, OverflowError):  # 0001-01-01T00:00+01:00 is before year 1 in UTC
        raise QueryError(f"{text!r} is not a date or time (expected e.g. 2026-03-01 or 2026-03-01T10:00)") from None


@dataclass(frozen=True)
class Range:
    """A time range [start, end) in UTC, and the resolution that reads it.

    Make one with :meth:`last` (a preset), :meth:`between` (explicit times)
    or :meth:`from_params` (a request's ``range`` or ``from``/``to``). The
    bounds are widened to whole buckets of the resolution chosen.
    """
    start: datetime
    end: datetime
    resolution: str              # 'minute', 'hour' or 'day'
    preset: str | None = None    # the preset's name, None for explicit times
    now: datetime = field(default_factory=_now, compare=False)

    @classmethod
    def last(cls, preset: str = DEFAULT_PRESET, now: datetime | None = None) -> "Range":
        if preset not in PRESETS:
            raise QueryError(f"unknown range {preset!r}: expected one of {', '.join(PRESETS)}")
        now = now or _now()
        length = PRESETS[preset][1]
        resolution = choose_resolution(now - length, now, now)
        end = _ceil(now, STEP[resolution])
        return cls(_floor(end - length, STEP[resolution]), end, resolution, preset, now)

    @classmethod
    def between(cls, start: datetime, end: datetime, now: datetime | None = None,
                resolution: str | None = None) -> "Range":
        """Explicit times; ``resolution`` forces one (e.g. 'day' for a month's report)."""
        now = now or _now()
        if end <= start:
            raise QueryError("the range ends before it starts")
        if resolution is not None and resolution not in STEP:
            raise QueryError(f"unknown resolution {resolution!r}")
        resolution = resolution or choose_resolution(start, end, now)
        step = STEP[resolution]
        return cls(_floor(start, step), _ceil(end, step), resolution, None, now)

    @classmethod
    def from_params(cls, params: Mapping, now: datetime | None = None,
                    default: str = DEFAULT_PRESET) -> "Range":
        """From ``?range=7d`` or ``?from=2026-03-01&to=2026-04-01``, checked
        and bounded by :func:`ipr.web.params.range_of`."""
        from ipr.web import params as checked
        return checked.range_of(params, default, now)

    @property
    def step(self) -> int:
        """Seconds per bucket of a series."""
        return STEP[self.resolution]

    @property
    def seconds(self) -> float:
        """Seconds of the range that have elapsed: the divisor of bits/s."""
        return max(1.0, (min(self.end, max(self.now, self.start)) - self.start).total_seconds())

    @property
    def label(self) -> str:
        if self.preset:
            return PRESETS[self.preset][0]
        return f"{self.start:%Y-%m-%d %H:%M} – {self.end:%Y-%m-%d %H:%M} UTC"

    def params(self) -> dict:
        """The query parameters that make this range again."""
        if self.preset:
            return {"range": self.preset}
        return {"from": self.start.strftime("%Y-%m-%dT%H:%M"), "to": self.end.strftime("%Y-%m-%dT%H:%M")}

    def buckets(self) -> list[datetime]:
        out, t = [], self.start
        while t < self.end:
            out.append(t)
            t += timedelta(seconds=self.step)
        return out

    @cached_property
    def hours_cut(self) -> datetime | None:
        """:func:`open_hours_cut`, looked up once per range: every query of
        a page asks for it."""
        return open_hours_cut(self)

    @cached_property
    def span(self) -> tuple[datetime, datetime] | None:
        """:func:`stored_span`, looked up once per range."""
        return stored_span(self)

    def piece(self, start: datetime, end: datetime) -> "Range":
        """The part [start, end) of this range, at its resolution, read
        without spans (the edges around one)."""
        part = Range(start, end, self.resolution, None, self.now)
        # cached_property keeps its value in the instance's __dict__, which a
        # frozen dataclass leaves writable.
        part.__dict__["span"] = None
        # Hours from the cut on are read from the window: in the part, from
        # its start if the cut is before it, not at all if after it.
        cut = self.hours_cut
        cut = None if cut is None else max(cut, start)
        part.__dict__["hours_cut"] = cut if cut is not None and cut < end else None
        return part

    def as_dict(self) -> dict:
        return {"start": self.start, "end": self.end, "resolution": self.resolution,
                "step": self.step, "preset": self.preset, "label": self.label}


def choose_resolution(start: datetime, end: datetime, now: datetime | None = None) -> str:
    """'minute', 'hour' or 'day' for a range (thresholds at the top of this module)."""
    now = now or _now()
    span = end - start
    if span <= MINUTE_MAX_SPAN and start >= now - timedelta(hours=settings.KEEP_CURRENT_HOURS):
        return "minute"
    if span <= HOURLY_MAX_SPAN and start >= now - timedelta(days=settings.KEEP_HOURLY_DAYS):
        return "hour"
    return "day"


# -- filters ---------------------------------------------------------------------

def parse_asn(text) -> int:
    """An ASN from 64500, '64500', 'AS64500', 'as64500' or asdot '1.10'."""
    s = str(text).strip().upper()
    if s.startswith("AS"):
        s = s[2:].strip()
    try:
        if "." in s:
            hi, lo = s.split(".", 1)
            value = int(hi) << 16 | int(lo)
            if int(lo) > 0xFFFF or int(hi) > 0xFFFF:
                raise ValueError
        else:
            value = int(s)
    except ValueError:
        raise QueryError(f"{text!r} is not an AS number") from None
    if not 0 <= value <= ASN_MAX:
        raise QueryError(f"{text!r} is not an AS number (0..{ASN_MAX})")
    return value


def parse_prefix(text: str) -> str:
    """The canonical text of a prefix ('192.0.2.0/24'); host bits are dropped."""
    try:
        return str(ipaddress.ip_network(str(text).strip(), strict=False))
    except ValueError:
        raise QueryError(f"{text!r} is not a prefix") from None


@dataclass(frozen=True)
class Filters:
    """What to keep: any combination; None keeps everything.

    ``country`` is an ISO 3166 alpha-2 code, '' for unknown; ``prefix`` is
    matched exactly (a prefix as the routing table had it, as archived).
    """
    router: int | None = None
    traffic_type: str | None = None
    origin_as: int | None = None
    neighbor_as: int | None = None
    country: str | None = None
    prefix: str | None = None

    @classmethod
    def from_params(cls, params: Mapping) -> "Filters":
        """From ``?router=1&type=web&asn=AS64500&neighbor=64501&country=FR&prefix=192.0.2.0/24``,
        checked by :func:`ipr.web.params.filters_of`."""
        from ipr.web import params as checked
        return checked.filters_of(params)

    def dims(self) -> set[str]:
        """The dimensions a table must have to apply these filters."""
        return {d for d in ("router", "traffic_type", "origin_as", "neighbor_as", "country", "prefix")
                if getattr(self, d) is not None}

    def params(self) -> dict:
        out = {}
        for name, key in (("router", "router"), ("traffic_type", "type"), ("origin_as", "asn"),
                          ("neighbor_as", "neighbor"), ("country", "country"), ("prefix", "prefix")):
            v = getattr(self, name)
            if v is not None:
                out[key] = v if v != "" else "--"
        return out

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("router", "traffic_type", "origin_as", "neighbor_as",
                                              "country", "prefix")}

    def with_(self, **changes) -> "Filters":
        return replace(self, **changes)


def parse_country(text: str) -> str:
    """'FR' from 'fr'; '' (unknown) from '' or '--'."""
    s = str(text).strip().upper()
    if s in ("", "--", "??"):
        return ""
    if len(s) != 2 or not s.isalpha():
        raise QueryError(f"{text!r} is not a country code (two letters, e.g. FR)")
    return s


# -- tables and SQL -------------------------------------------------------------

_existing: set[str] = set()


def _table_exists(name: str) -> bool:
    if name not in _existing:
        with connection.cursor() as cur:
            if name in connection.introspection.table_names(cur):
                _existing.add(name)
    return name in _existing


def has_paths() -> bool:
    """Whether the archive has the AS path tables (traffic_path_hour/day)."""
    return _table_exists("traffic_path_hour") and _table_exists("traffic_path_day")


def _pick(resolution: str, dims: set[str]) -> tuple[str, str, dict[str, str]]:
    """(table, time column, {dimension: column}) that holds ``dims`` at ``resolution``.

    ``dims`` are the dimensions the query groups or filters by, router and
    traffic type included. The smallest table that has them all serves
    (ipr/traffic/tables.py): the totals per router and traffic type; one
    per origin AS, neighbour AS or country, over all routers and traffic
    types unless either is asked for; the flows per router, origin AS and
    neighbour AS for any mix of those (no traffic type); the prefix-keyed
    tables for the rest; the AS path
    tables for paths (hourly at least: there is no per-minute path table,
    so a minute range reads the hours that hold it).
    """
    split = {"router": "router_id", "traffic_type": "traffic_type"}
    wanted = {d: c for d, c in split.items() if d in dims}
    dims = set(dims) - set(split)
    unit = {"minute": "hour", "hour": "hour", "day": "day"}[resolution]
    if "as_path" in dims:
        if not dims <= _PATH_TABLE_DIMS:
            raise QueryError("AS paths can be split or filtered by router, traffic type, origin and neighbour AS only")
        return f"traffic_path_{unit}", unit, {**split, **{d: d for d in _PATH_TABLE_DIMS}}
    if resolution == "minute":
        return "traffic_current", "minute", {**split, **{d: d for d in _PREFIX_TABLE_DIMS}}
    if not dims:
        return f"traffic_total_{unit}", unit, split
    single = {"origin_as": ("origin", "asn"), "neighbor_as": ("neighbor", "asn"), "country": ("country", "country")}
    if len(dims) == 1 and next(iter(dims)) in single:
        d = next(iter(dims))
        name, col = single[d]
        if wanted:
            return f"traffic_{name}_{unit}", unit, {**split, d: col}
        return f"traffic_{name}_all_{unit}", unit, {d: col}
    if dims <= {"origin_as", "neighbor_as"} and "traffic_type" not in wanted:
        return f"traffic_flow_{unit}", unit, {"router": "router_id", "origin_as": "origin_as",
                                              "neighbor_as": "neighbor_as"}
    if wanted:
        return f"traffic_prefix_{unit}", unit, {**split, **{d: d for d in _PREFIX_TABLE_DIMS}}
    return f"traffic_prefix_all_{unit}", unit, {d: d for d in _PREFIX_TABLE_DIMS}


def _pg() -> bool:
    return connection.vendor == "postgresql"


def _time_param(t: datetime):
    # SQLite keeps times as text in the ingest's format, which sorts as time.
    return t if _pg() else t.strftime("%Y-%m-%d %H:%M:%S+00:00")


def _as_time(value) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.fromisoformat(str(value)).astimezone(UTC)


def _where(rng: Range, filters: Filters, table_cols: dict[str, str], time_col: str,
           resolution_for_path: bool, bounds: tuple | None = None,
           among: tuple[str, list] | None = None) -> tuple[str, list]:
    """The WHERE clause of the range and filters (and, with ``among``, of a
    dimension's value being one of a list)."""
    if bounds is not None:
        start, end = bounds
    elif resolution_for_path:
        start, end = _floor(rng.start, STEP[time_col]), _ceil(rng.end, STEP[time_col])
    else:
        start, end = rng.start, rng.end
    clauses, params = _filter_clauses(filters, table_cols, among)
    return " AND ".join([f"{time_col} >= %s", f"{time_col} < %s"] + clauses), \
        [_time_param(start), _time_param(end)] + params


def _filter_clauses(filters: Filters, table_cols: dict[str, str],
                    among: tuple[str, list] | None = None) -> tuple[list[str], list]:
    """The conditions of the filters (and of ``among``) on a table, and their parameters."""
    clauses, params = [], []
    for dim in ("router", "traffic_type", "origin_as", "neighbor_as", "country", "prefix"):
        value = getattr(filters, dim)
        if value is None:
            continue
        col = table_cols[dim]
        if dim == "prefix" and _pg():
            clauses.append(f"{col} = %s::cidr")
        else:
            clauses.append(f"{col} = %s")
        params.append(value)
    if among is not None:
        dim, values = among
        if not values:
            clauses.append("1 = 0")
        elif _pg():
            clauses.append(f"{table_cols[dim]} = ANY(%s{'::cidr[]' if dim == 'prefix' else ''})")
            params.append(list(values))
        else:
            clauses.append(f"{table_cols[dim]} IN ({', '.join(['%s'] * len(values))})")
            params += list(values)
    return clauses, params


# The pages sum in float8 (tables.EXACT: twice as fast as bigint over many
# groups, e.g. a month's series per hour, router and type, 8,640 groups, and
# read faster than a numeric). A year of bytes passes 2**53; there each
# measure is summed as two float8s instead, its high bits (x >> 24) and its
# low 24 bits, both exact while a group sums fewer than 2**29 rows, and put
# together here.
LOW_BITS = 24


def _select_sums(measures=SUMS, how: str = "") -> str:
    """The sums of ``measures``: in bigint (``how`` ''), float8 ('float') or
    as two float8 halves each ('halves', see tables.EXACT)."""
    if how == "halves":
        low = (1 << LOW_BITS) - 1
        return ", ".join(f"sum(({m} >> {LOW_BITS})::float8), sum(({m} & {low})::float8)" for m in measures)
    cast = "::float8" if how == "float" else ""
    return ", ".join(f"sum({m}{cast})" for m in measures)


def _summed(sql_of, params: list, first: int, n: int, few: bool = False) -> list[tuple]:
    """The rows of the query ``sql_of(how)`` (see :func:`_select_sums`),
    whose ``n`` sums from the ``first`` value on are exact: in float8 if
    they all stay below 2**53, else in halves (at once with ``few`` groups,
    where a float8 try would only cost a second query)."""
    if not _pg():
        return _run(sql_of(""), params)
    end = first + n
    if not few:
        rows = _run(sql_of("float"), params)
        try:
            if not rows or max(max(r[first:end]) for r in rows) < tables.EXACT:
                return rows
        except TypeError:   # a sum of no rows (NULL): summed in halves below
            pass
    return _joined(_run(sql_of("halves"), params), first, n)


def _joined(rows: list[tuple], first: int, n: int) -> list[tuple]:
    """Rows whose ``n`` sums from the ``first`` value on were summed in
    halves, each pair put back together as one exact int."""
    halves = first + 2 * n
    return [r[:first] + tuple((int(r[i] or 0) << LOW_BITS) + int(r[i + 1] or 0) for i in range(first, halves, 2))
            + r[halves:] for r in rows]


# PostgreSQL's default work_mem (4 MB) makes a month's top-N sort on disk;
# this much lets it aggregate in memory (set for each connection as it is
# made: ipr/web/apps.py).
WORK_MEM = "64MB"


def _run(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def open_hours_cut(rng: Range) -> datetime | None:
    """Where an hourly range stops being in the hourly tables: they hold
    closed, archived hours only (docs/archive.md), so the running hour and
    any hour still pending its archive are read from the per-minute window
    instead. None when the whole range is archived."""
    if rng.resolution != "hour":
        return None
    from ipr.traffic.models import Pending
    cut = _floor(rng.now, HOUR)
    pending = (Pending.objects.filter(level="hour", start__gte=rng.start, start__lt=rng.end)
               .order_by("start").values_list("start", flat=True).first())
    if pending is not None:
        cut = min(cut, pending)
    # The window keeps only so much; older pending hours are read as archived.
    cut = max(cut, _ceil(rng.now - timedelta(hours=settings.KEEP_CURRENT_HOURS), HOUR))
    return cut if cut < rng.end else None


def stored_span(rng: Range) -> tuple[datetime, datetime] | None:
    """The longest span (ipr.traffic.tables.SPANS) of whole days within the
    range, as (first day, end day), or None: a span is summed once a day by
    the daily rollup, so a year's top-N reads a row per key from it, and
    only the range's edges around it (today's traffic, and at hourly
    resolution the hours of the first day) from the tables of its
    resolution. Only where every hour still read from the window (pending,
    or running) is after the span: the rollup drops a span as soon as any
    hour or day in it changes (ipr.traffic.rollup.mark)."""
    if rng.resolution == "minute":
        return None
    from ipr.traffic.models import Span
    first, end = _ceil(rng.start, DAY), _floor(rng.end, DAY)
    cut = rng.hours_cut
    if cut is not None:
        end = min(end, _floor(cut, DAY))
    if end - first < timedelta(days=1):
        return None
    spans = Span.objects.filter(first_day__gte=first, end_day__lte=end).values_list("first_day", "end_day")
    best = max(spans, key=lambda s: (s[1] - s[0], s[1]), default=None)
    return None if best is None else (best[0].astimezone(UTC), best[1].astimezone(UTC))


def _named(cols: dict[str, str], names) -> str:
    """The select list of ``cols``' columns under their dimensions' names."""
    return ", ".join(f"{cols[d]} AS {d}" for d in names)


def _span_table(table: str) -> str | None:
    """The span table of an hourly or daily table (all but the totals have one)."""
    name = table.rsplit("_", 1)[0] + "_span"
    return name if name in tables.SPANS else None


def _span_source(rng: Range, filters: Filters, dims: set[str], measures: list[str], among,
                 span_table: str, cols: dict[str, str]) -> tuple[str, list, dict[str, str], None, str]:
    """:func:`_source` for a range with a span: the span's rows, and its
    edges read as any range is, as one union with the dimensions' names as
    columns (no time column: a span has no buckets)."""
    first, end = rng.span
    names = sorted(dims)
    summed = ", ".join(measures)
    clauses, params = _filter_clauses(filters, cols, among)
    parts = [f"SELECT {_named(cols, names)}, {summed} FROM {span_table} "
             f"WHERE {' AND '.join(['first_day = %s', 'end_day = %s'] + clauses)}"]
    params = [_time_param(first), _time_param(end)] + params
    read = [span_table]
    for start, stop in ((rng.start, first), (end, rng.end)):
        if start < stop:
            source, more, piece_cols, _, table = _source(rng.piece(start, stop), filters, dims, measures, among)
            parts.append(f"SELECT {_named(piece_cols, names)}, {summed} FROM {source}")
            params += more
            read.append(table)
    return f"({' UNION ALL '.join(parts)}) spanned", params, {d: d for d in names}, None, "+".join(read)


def _split_source(rng, filters, dims, table, time_col, cols, cut, measures=SUMS,
                  among=None) -> tuple[str, list, dict, str]:
    """(FROM clause, params, columns, time column) for an hourly range whose
    tail comes from the window, summed per hour."""
    names = [d for d in ("router", "traffic_type") if d in cols] + sorted(
        d for d in dims if d not in ("router", "traffic_type"))
    archived_cols = _named(cols, names)
    window_cols = {d: ("router_id" if d == "router" else d) for d in names}
    window = _named(window_cols, names)
    trunc = "date_trunc('hour', minute)" if _pg() else "substr(minute, 1, 13) || ':00:00+00:00'"
    w1, p1 = _where(rng, filters, cols, time_col, False, (max(rng.start, _floor(rng.start, HOUR)), cut), among)
    w2, p2 = _where(rng, filters, {**window_cols, **{d: d for d in _PREFIX_TABLE_DIMS}}, "minute", False,
                    (cut, rng.end), among)
    measures = ", ".join(measures)
    source = (f"(SELECT {time_col} AS t, {archived_cols}, {measures} FROM {table} WHERE {w1} "
              f"UNION ALL SELECT {trunc} AS t, {window}, {measures} FROM traffic_current WHERE {w2}) src")
    return source, p1 + p2, {d: d for d in names}, "t"


def _source(rng: Range, filters: Filters, dims: set[str], measures: list[str] = SUMS,
            among: tuple[str, list] | None = None,
            timed: bool = False) -> tuple[str, list, dict[str, str], str | None, str]:
    """(FROM clause, its parameters, {dimension: column}, time column, the
    table's name) for the rows of the range under ``filters``, from the
    table that has ``dims`` (see :func:`_pick`), with the open hours of an
    hourly range from the window. Unless the rows are grouped by time
    (``timed``), a span within the range stands for its days (see
    :func:`stored_span`; the time column is then None)."""
    dims = set(dims) | filters.dims()
    table, time_col, cols = _pick(rng.resolution, dims)
    span_table = None if timed else _span_table(table)
    if span_table is not None and rng.span is not None:
        return _span_source(rng, filters, dims, measures, among, span_table, cols)
    cut = rng.hours_cut
    if cut is not None:
        source, params, cols, time_col = _split_source(rng, filters, dims, table, time_col, cols, cut, measures,
                                                       among)
        return source, params, cols, time_col, table + "+traffic_current"
    where, params = _where(rng, filters, cols, time_col, table.startswith("traffic_path"), among=among)
    return f"{table} WHERE {where}", params, cols, time_col, table


def _shown(column: str) -> str:
    # cidr comes back as an ipaddress object from psycopg; text is what we show.
    return f"{column}::text" if (column == "prefix" and _pg()) else column


# Traffic reached through another AS: the neighbour is known and is not the
# origin (the peering report's condition).
TRANSIT = "origin_as <> 0 AND neighbor_as <> 0 AND neighbor_as <> origin_as"


def _transit_source(rng: Range, filters: Filters, dims: set[str], measures: list[str], among):
    """:func:`_source` of the traffic reached through another AS only."""
    source, params, cols, _, table = _source(rng, filters, dims | {"origin_as", "neighbor_as"}, measures, among)
    source = f"(SELECT {_named(cols, cols)}, {', '.join(measures)} FROM {source}) through WHERE {TRANSIT}"
    return source, params, {d: d for d in cols}, None, table


def _grouped(rng: Range, filters: Filters, by: list[str], measures: list[str] = SUMS,
             among: tuple[str, list] | None = None, few: bool = False,
             transit: bool = False) -> tuple[list[tuple], str]:
    """Rows of (key values..., sums of ``measures``...) grouped by the
    dimensions ``by`` (and 'time' for the table's time column); with
    ``among`` (dimension, values), of those values only; ``few``: few
    groups are expected (see :func:`_summed`); ``transit``: of the traffic
    reached through another AS only (not by time)."""
    dims = {d for d in by if d != "time"}
    source, params, cols, time_col, table = (
        _transit_source(rng, filters, dims, measures, among) if transit else
        _source(rng, filters, dims, measures, among, timed="time" in by))
    keys = [time_col if d == "time" else cols[d] for d in by]
    group = f" GROUP BY {', '.join(keys)}" if keys else ""
    # Times as epoch seconds on PostgreSQL: a month's series per hour has
    # 8,640 rows, and reading each timestamptz into a datetime took 50 ms.
    shown = [f"extract(epoch FROM {k})::bigint" if d == "time" and _pg() else _shown(k) for d, k in zip(by, keys)]

    def sql(how):
        return f"SELECT {', '.join(shown + [_select_sums(measures, how)])} FROM {source}{group}"
    return _summed(sql, params, len(keys), len(measures), few), table


# -- derived figures -------------------------------------------------------------

def percentile_ms(hist: list[int], q: float) -> float | None:
    """The q-quantile (0..1) of the RTT in ms, estimated from the histogram.

    Linear within the bucket that holds it (the first bucket starts at 0);
    in the open last bucket (> 2 s) its lower bound, 2000 ms, is returned:
    a floor, not an estimate. None without RTT samples.
    """
    total = sum(hist)
    if total <= 0:
        return None
    target = q * total
    seen = 0
    for i, n in enumerate(hist):
        if n and seen + n >= target:
            lo = EDGES_MS[i - 1] if i > 0 else 0.0
            if i >= len(EDGES_MS):
                return lo
            hi = EDGES_MS[i]
            return lo + (hi - lo) * (target - seen) / n
        seen += n
    return EDGES_MS[-1]


def figures(sums: Mapping[str, int], seconds: float) -> dict:
    """A row's measures and the figures derived from them.

    bytes are response bytes (what the servers sent, known for every
    response); bits/s divides them by the range's elapsed seconds;
    retransmit rate is retransmitted / data segments; RTT from TCP_INFO's
    smoothed RTT (mean over the records that carried one, percentiles from
    the histogram).
    """
    s = {m: int(sums.get(m) or 0) for m in SUMS}
    hist = [s[h] for h in HIST]
    return {
        "bytes": s["response_bytes"],
        "wire_bytes": s["wire_bytes"],
        "bps": s["response_bytes"] * 8 / seconds if seconds else None,
        "requests": s["requests"],
        "data_segs": s["data_segs"],
        "retrans_segs": s["retrans_segs"],
        "retrans_rate": s["retrans_segs"] / s["data_segs"] if s["data_segs"] else None,
        "rtt_samples": s["tcpinfo_records"],
        "rtt_mean_ms": s["rtt_sum_us"] / s["tcpinfo_records"] / 1000 if s["tcpinfo_records"] else None,
        "rtt_p50_ms": percentile_ms(hist, 0.50),
        "rtt_p95_ms": percentile_ms(hist, 0.95),
        "rtt_hist": hist,
        "rtt_sum_us": s["rtt_sum_us"],
    }


def _sums_of(values) -> dict[str, int]:
    return {m: int(v or 0) for m, v in zip(SUMS, values)}


def _subtract(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    return {m: a[m] - b[m] for m in SUMS}


def _add(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    return {m: a.get(m, 0) + b.get(m, 0) for m in SUMS}


ZERO = {m: 0 for m in SUMS}


# -- names -------------------------------------------------------------------------

def as_names(asns) -> dict[int, str]:
    """{asn: name} for the ASNs that have one (ipr.routing's AS names)."""
    from ipr.routing.models import ASName
    asns = {int(a) for a in asns if a is not None}
    if not asns:
        return {}
    return dict(ASName.objects.filter(asn__in=asns).values_list("asn", "name"))


def router_names() -> dict[int, str]:
    """{router id: name}, with router 0 named as the unknown router."""
    from ipr.routing.models import Router
    names = dict(Router.objects.values_list("pk", "name"))
    names.setdefault(0, "(no router)")
    return names


def asn_label(asn: int, names: Mapping[int, str] | None = None) -> str:
    """'AS64500 EXAMPLE-NET' (asdot for 32-bit ASNs is in ``asn_text``)."""
    if asn == 0:
        return "AS0 (no AS: unrouted or special-purpose)"
    name = (names or {}).get(asn)
    return f"{asn_text(asn)} {name}" if name else asn_text(asn)


def asn_text(asn: int) -> str:
    """'AS64500'; a 32-bit ASN also in asdot: 'AS4200000000 (AS64086.59904)'."""
    if asn > 65535:
        return f"{format_asn(asn)} ({format_asn(asn, asdot=True)})"
    return format_asn(asn)


def _labels(dim: str, keys: list) -> list[str]:
    if dim in ("origin_as", "neighbor_as"):
        names = as_names(keys)
        return [asn_label(int(k), names) for k in keys]
    if dim == "router":
        names = router_names()
        return [names.get(int(k), f"router #{k}") for k in keys]
    if dim == "country":
        return [country_label(k) for k in keys]
    if dim == "prefix":
        return [prefix_label(str(k)) for k in keys]
    if dim == "as_path":
        return [k or "(local or unrouted)" for k in keys]
    return [str(k) for k in keys]


def prefix_label(prefix: str) -> str:
    """'127.0.0.0/8 (loopback)' for a special-purpose block, '0.0.0.0/0
    (unrouted)', or the prefix alone."""
    from ipr.routing import special
    what = "unrouted" if prefix in ("0.0.0.0/0", "::/0") else special.label(prefix)
    return f"{prefix} ({what})" if what else prefix


def country_label(code: str) -> str:
    from ipr.routing import special
    from ipr.web.countries import NAMES
    if not code:
        return "(unknown)"
    if code == special.COUNTRY:
        return f"{code} {special.COUNTRY_NAME}"
    name = NAMES.get(code)
    return f"{code} {name}" if name else code


def _key(dim: str, value):
    if dim in ("router", "origin_as", "neighbor_as"):
        return int(value)
    if dim == "country":
        return (value or "").strip()
    return value if value is not None else ""


# -- what the pages read ---------------------------------------------------------

def totals(rng: Range, filters: Filters | None = None) -> dict:
    """The range's figures (see :func:`figures`) under ``filters``."""
    filters = filters or Filters()
    sums, table = _total(rng, filters)
    return {**figures(sums, rng.seconds), "table": table}


def _total(rng: Range, filters: Filters) -> tuple[dict[str, int], str]:
    """The range's sums under ``filters``, from the smallest table that has them."""
    rows, table = _grouped(rng, filters, [], few=True)
    return (_sums_of(rows[0]) if rows else dict(ZERO)), table


# Orders a top-N can take (largest first; for the rates, worst first).
ORDERS = ("bytes", "requests", "retrans_rate", "rtt_mean")


def top(rng: Range, by: str, filters: Filters | None = None, limit: int = 10,
        order: str = "bytes", total: Mapping[str, int] | None = None) -> dict:
    """The ``limit`` largest groups by dimension ``by``, with their other and total.

    Returns ``{"by", "rows", "other", "total", "count", "range", "filters"}``:
    each row has ``key`` (the ASN, country code, prefix text, router id,
    traffic type or AS path), ``label``, ``share`` of the total's bytes and
    the :func:`figures`; ``other`` is the total minus the rows (None when
    nothing is left over); ``count`` is how many groups there are in all.
    Rows + other = total, measure by measure. ``total``: the range's sums
    under the same filters, when the caller has them (a page's overview).
    """
    return tops(rng, by, filters, (limit,), order, total)[0]


def tops(rng: Range, by: str, filters: Filters | None = None, limits=(10,), order: str = "bytes",
         total: Mapping[str, int] | None = None) -> list[dict]:
    """:func:`top` at each of ``limits`` (0: every group), from one reading
    of the archive: a page that shows the same groups twice, as a table
    and on the map, pays once."""
    if by not in DIMENSIONS:
        raise QueryError(f"cannot group by {by!r}: expected one of {', '.join(DIMENSIONS)}")
    if order not in ORDERS:
        raise QueryError(f"cannot order by {order!r}: expected one of {', '.join(ORDERS)}")
    filters = filters or Filters()
    if all(limits) and order in ("bytes", "requests") and _pg():
        return _top_pg(rng, filters, by, limits, order, total)
    rows, table = _grouped(rng, filters, [by])
    groups = [(_key(by, r[0]), _sums_of(r[1:])) for r in rows]
    return [_top_of(rng, filters, by, groups, limit, order, table) for limit in limits]


def _ranked(rng: Range, filters: Filters, by: list[str], measure: str, limit: int,
            count: bool = True, among: tuple[str, list] | None = None,
            transit: bool = False) -> tuple[list[tuple], int | None, str]:
    """The ``limit`` largest groups of the dimensions ``by`` (with ``among``,
    of those whose dimension has one of the values; with ``transit``, of
    the traffic reached through another AS) by one measure, as rows (key
    values..., sum), largest first, cut by the database; the number of
    groups in all (if ``count``); the table read."""
    source, params, cols, _, table = (_transit_source if transit else _source)(
        rng, filters, set(by), [measure], among)
    keys = [cols[d] for d in by]
    counted = ", count(*) OVER ()" if count else ""
    if not _pg():
        rows = _run(f"SELECT {', '.join(_shown(k) for k in keys)}, sum({measure}) AS v{counted} "
                    f"FROM {source} GROUP BY {', '.join(keys)} ORDER BY v DESC, {', '.join(keys)} "
                    f"LIMIT {int(limit)}", params)
    else:
        # Summed in halves (see tables.EXACT): a year of the largest group's bytes
        # passes 2**53. The order is that of their float8 total: groups
        # within a few bytes in 9 PB of each other may swap places.
        high, low = _select_sums([measure], "halves").split(", ")
        rows = _joined(_run(
            f"SELECT {', '.join(_shown(k) for k in keys)}, {high}, {low}{counted} FROM {source} "
            f"GROUP BY {', '.join(keys)} ORDER BY {high} * {1 << LOW_BITS} + {low} DESC, {', '.join(keys)} "
            f"LIMIT {int(limit)}", params), len(keys), 1)
    if not count:
        return rows, None, table
    return [r[:-1] for r in rows], (int(rows[0][-1]) if rows else 0), table


def _top_pg(rng, filters, by, limits, order, total=None) -> list[dict]:
    """The top-N in three small queries instead of one that sums every
    measure of every group: the groups ranked by the one measure ordered
    by, cut by PostgreSQL to N (with the number of groups); every measure of
    those N (by the tables' key indexes); and the total, from the smallest
    table that has the filters (the coarse tables are sums of the same
    rows, so the total is the same). Only N + 1 rows leave the server,
    whatever the number of groups (50,000 ASes over a year)."""
    measure = "response_bytes" if order == "bytes" else "requests"
    ranked, count, table = _ranked(rng, filters, [by], measure, max(limits))
    keys = [r[0] for r in ranked]
    sums = {r[0]: _sums_of(r[1:]) for r in _grouped(rng, filters, [by], among=(by, keys), few=True)[0]} \
        if keys else {}
    # (A key gone between the two queries, as an hour was archived again: left out.)
    chosen = sorted(((_key(by, k), sums[k]) for k in keys if k in sums), key=_sort_key(order))
    if total is None:
        total, _ = _total(rng, filters)
    return [_shape(rng, filters, by, chosen[:limit], total, count, table) for limit in limits]


def _top_of(rng, filters, by, groups, limit, order, table) -> dict:
    total = dict(ZERO)
    for _, s in groups:
        total = _add(total, s)
    groups = sorted(groups, key=_sort_key(order))
    chosen = groups[:limit] if limit else groups
    return _shape(rng, filters, by, chosen, total, len(groups), table)


def _sort_key(order: str):
    def ratio(a, b):
        return -(a / b) if b else 0.0
    if order == "bytes":
        return lambda g: (-g[1]["response_bytes"], str(g[0]))
    if order == "requests":
        return lambda g: (-g[1]["requests"], str(g[0]))
    if order == "retrans_rate":
        return lambda g: (ratio(g[1]["retrans_segs"], g[1]["data_segs"]), str(g[0]))
    return lambda g: (ratio(g[1]["rtt_sum_us"], g[1]["tcpinfo_records"]), str(g[0]))


def _shape(rng, filters, by, chosen, total, count, table) -> dict:
    labels = _labels(by, [k for k, _ in chosen])
    seconds = rng.seconds
    tb = total["response_bytes"]
    out_rows = []
    covered = dict(ZERO)
    for (key, s), label in zip(chosen, labels):
        covered = _add(covered, s)
        out_rows.append({"key": key, "label": label, "share": s["response_bytes"] / tb if tb else None,
                         **figures(s, seconds)})
    rest = _subtract(total, covered)
    other = None
    if count > len(chosen):
        other = {"key": None, "label": f"other ({count - len(chosen)})",
                 "share": rest["response_bytes"] / tb if tb else None, **figures(rest, seconds)}
    return {"by": by, "rows": out_rows, "other": other,
            "total": {"key": None, "label": "total", "share": 1.0 if tb else None, **figures(total, seconds)},
            "count": count, "range": rng.as_dict(), "filters": filters.as_dict(), "table": table}


def series(rng: Range, filters: Filters | None = None, split: str | None = None,
           limit: int = 8) -> dict:
    """Figures per bucket of the range's resolution.

    Returns ``{"times": [datetime...], "step", "resolution", "series": [...],
    "total": {...}}``. Without ``split`` one series, key None. With
    ``split`` (a dimension) the ``limit`` largest groups over the range by
    bytes, then one 'other' series for the rest, so the series add up to the
    total per bucket. Each series has ``key``, ``label`` and per bucket
    lists: ``bytes``, ``bps``, ``requests``, ``retrans_rate``,
    ``rtt_mean_ms``, ``rtt_p50_ms``, ``rtt_p95_ms`` (None where there is
    nothing to compute from).
    """
    filters = filters or Filters()
    times = rng.buckets()
    by = ["time"] + ([split] if split else [])
    if split and split not in DIMENSIONS:
        raise QueryError(f"cannot split by {split!r}")
    if split == "as_path":
        raise QueryError("AS paths are a top-N, not a series")
    rows, table = _grouped(rng, filters, by)
    width = 2 if split else 1
    at, sums = _bucketed(rng, rows, width)
    if split:
        keys = [_key(split, r[1]) for r in rows]
        per_key = _fold_by(keys, at, sums, len(times))
    else:
        per_key = {None: _fold(at, sums, len(times))}
    return _series_of_keys(rng, filters, split, per_key, limit, table)


# Each series is a matrix: one row per bucket of the range, one column per
# measure (SUMS), summed with numpy (a month per hour is 720 buckets times
# each router and traffic type).
_BYTES, _REQUESTS = SUMS.index("response_bytes"), SUMS.index("requests")
_DATA, _RETRANS = SUMS.index("data_segs"), SUMS.index("retrans_segs")
_SAMPLES, _RTT_SUM = SUMS.index("tcpinfo_records"), SUMS.index("rtt_sum_us")
_HIST = slice(SUMS.index(HIST[0]), SUMS.index(HIST[-1]) + 1)


def _bucketed(rng: Range, rows: list[tuple], skip: int) -> tuple[np.ndarray, np.ndarray]:
    """(bucket index of each row, -1 outside the range; the rows' sums, after
    their first ``skip`` values, as an int64 matrix)."""
    start, n = int(rng.start.timestamp()), len(rng.buckets())
    seconds = np.array([r[0] if isinstance(r[0], int) else int(_as_time(r[0]).timestamp()) for r in rows],
                       dtype=np.int64) - start
    at = np.where((seconds % rng.step == 0) & (seconds >= 0) & (seconds < n * rng.step), seconds // rng.step, -1)
    sums = np.array([r[skip:] for r in rows], dtype=np.int64).reshape(len(rows), len(SUMS))
    return at, sums


def _fold(at: np.ndarray, sums: np.ndarray, n: int) -> np.ndarray:
    """The rows' sums per bucket (rows at -1 left out): an n × measures matrix."""
    out = np.zeros((n, len(SUMS)), dtype=np.int64)
    inside = at >= 0
    np.add.at(out, at[inside], sums[inside])
    return out


def _fold_by(keys: list, at: np.ndarray, sums: np.ndarray, n: int) -> dict:
    """{key: its rows' sums per bucket} for the keys that have a row in the range."""
    distinct = list(dict.fromkeys(k for k, i in zip(keys, at.tolist()) if i >= 0))
    code = {k: c for c, k in enumerate(distinct)}
    which = np.array([code.get(k, -1) for k in keys], dtype=np.int64)
    folded = _fold(np.where(at >= 0, which * n + at, -1), sums, len(distinct) * n)
    return {k: folded[c * n:(c + 1) * n] for k, c in code.items()}


def _sums_dict(row: np.ndarray) -> dict[str, int]:
    return dict(zip(SUMS, row.tolist()))


def _series_of_keys(rng, filters, split, per_key: dict, limit: int, table) -> dict:
    times = rng.buckets()
    if split:
        volume = {k: int(v[:, _BYTES].sum()) for k, v in per_key.items()}
        ordered = sorted(volume, key=lambda k: (-volume[k], str(k)))
        chosen, rest = ordered[:limit], ordered[limit:]
        labels = dict(zip(chosen, _labels(split, chosen)))
    else:
        chosen, rest, labels = [None], [], {None: "total"}
    empty = np.zeros((len(times), len(SUMS)), dtype=np.int64)
    elapsed = _elapsed(rng, times)
    out = [_series_of(k, labels[k], per_key.get(k, empty), elapsed) for k in chosen]
    if rest:
        merged = sum((per_key[k] for k in rest), empty)
        out.append(_series_of(None, f"other ({len(rest)})", merged, elapsed))
    return {"times": times, "step": rng.step, "resolution": rng.resolution, "split": split,
            "series": out, "range": rng.as_dict(), "filters": filters.as_dict(), "table": table}


_SERIES_FIELDS = ("bytes", "bps", "requests", "retrans_rate", "rtt_mean_ms", "rtt_p50_ms", "rtt_p95_ms")


def _elapsed(rng: Range, times: list[datetime]) -> np.ndarray:
    """Seconds of each bucket that have elapsed (at least 1): bits/s divides by them."""
    step = timedelta(seconds=rng.step)
    return np.array([max(1.0, (min(t + step, max(rng.now, t)) - t).total_seconds()) for t in times])


def _series_of(key, label, m: np.ndarray, elapsed: np.ndarray) -> dict:
    """A series' figures per bucket, as :func:`figures` computes them for one
    (the same operations in the same order, so the same floats)."""
    def where(values: np.ndarray, ok: np.ndarray) -> list:
        return [v if k else None for v, k in zip(values.tolist(), ok.tolist())]

    data, samples = m[:, _DATA], m[:, _SAMPLES]
    with np.errstate(divide="ignore", invalid="ignore"):
        retrans = m[:, _RETRANS] / data
        rtt_mean = m[:, _RTT_SUM] / samples / 1000
    hist = m[:, _HIST]
    return {"key": key, "label": label, "bytes": m[:, _BYTES].tolist(),
            "bps": (m[:, _BYTES] * 8 / elapsed).tolist(), "requests": m[:, _REQUESTS].tolist(),
            "retrans_rate": where(retrans, data != 0), "rtt_mean_ms": where(rtt_mean, samples != 0),
            "rtt_p50_ms": _percentiles_ms(hist, 0.50), "rtt_p95_ms": _percentiles_ms(hist, 0.95)}


_EDGES = np.array(EDGES_MS + [EDGES_MS[-1]])  # the open last bucket: its lower bound


def _percentiles_ms(hist: np.ndarray, q: float) -> list:
    """:func:`percentile_ms` of each row of histograms."""
    total = hist.sum(axis=1)
    target = q * total
    cum = hist.cumsum(axis=1)
    # The first bucket that reaches the target holds some of it (the one
    # before does not reach it).
    i = (cum >= target[:, None]).argmax(axis=1)
    rows = np.arange(len(hist))
    n = hist[rows, i]
    seen = cum[rows, i] - n
    lo = np.where(i > 0, _EDGES[np.maximum(i - 1, 0)], 0.0)
    hi = _EDGES[i]
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.where(i >= len(EDGES_MS), lo, lo + (hi - lo) * (target - seen) / n)
    return [v if t > 0 else None for v, t in zip(value.tolist(), total.tolist())]


def overview(rng: Range, filters: Filters | None = None, limit: int = 8) -> dict:
    """What a page's header and charts need, from ONE query (time × router ×
    traffic type): ``totals``, ``series`` (unsplit), ``by_router`` and
    ``by_type`` (series split as :func:`series` splits them), ``routers`` and
    ``types`` (top-N results, all rows). Each equals what the separate
    functions return; one scan instead of seven."""
    filters = filters or Filters()
    rows, table = _grouped(rng, filters, ["time", "router", "traffic_type"])
    n = len(rng.buckets())
    at, sums = _bucketed(rng, rows, 3)
    by_router = _fold_by([int(r[1]) for r in rows], at, sums, n)
    by_type = _fold_by([r[2] for r in rows], at, sums, n)
    overall = sum(by_router.values(), np.zeros((n, len(SUMS)), dtype=np.int64))
    total = _sums_dict(overall.sum(axis=0))
    return {
        "totals": {**figures(total, rng.seconds), "table": table},
        "sums": total,
        "series": _series_of_keys(rng, filters, None, {None: overall}, limit, table),
        "by_router": _series_of_keys(rng, filters, "router", by_router, limit, table),
        "by_type": _series_of_keys(rng, filters, "traffic_type", by_type, limit, table),
        "routers": _top_of(rng, filters, "router", [(k, _sums_dict(v.sum(axis=0))) for k, v in by_router.items()],
                           0, "bytes", table),
        "types": _top_of(rng, filters, "traffic_type", [(k, _sums_dict(v.sum(axis=0))) for k, v in by_type.items()],
                         0, "bytes", table),
    }


def groups(rng: Range, by: list[str], filters: Filters | None = None) -> list[dict]:
    """Every group of several dimensions (e.g. ['router', 'neighbor_as']):
    ``{"key": (values...), **figures}`` per group, largest bytes first."""
    filters = filters or Filters()
    for d in by:
        if d not in DIMENSIONS:
            raise QueryError(f"cannot group by {d!r}")
    rows, _ = _grouped(rng, filters, list(by))
    n = len(by)
    out = [{"key": tuple(_key(d, v) for d, v in zip(by, r[:n])), **figures(_sums_of(r[n:]), rng.seconds)}
           for r in rows]
    out.sort(key=lambda g: (-g["bytes"], str(g["key"])))
    return out


def flows(rng: Range, filters: Filters | None = None, limit: int = 15, origins: list[int] | None = None) -> dict:
    """Router → neighbour AS → origin AS, for a Sankey diagram.

    The diagram follows the largest origin ASes: of the (router, neighbour,
    origin) triples of the ``limit`` largest origin ASes by bytes (or of
    ``origins``, e.g. those a page's table shows), the ``limit`` largest; all
    other traffic is folded into an 'other' origin per (router, neighbour)
    and an 'other' neighbour per router, so every router's outflow is its
    whole traffic. Returns ``{"nodes": [{"id", "label", "kind"}], "links":
    [{"source", "target", "bytes"}], "total_bytes"}`` (indexes into nodes).
    """
    filters = filters or Filters()
    # Bytes only, and only what is drawn leaves the server: the largest
    # triples of the largest origins (read by the tables' origin index),
    # the bytes of their (router, neighbour) pairs and of each router.
    bytes_ = ["response_bytes"]
    if filters.origin_as is not None:
        origins = [filters.origin_as]
    elif origins is None:
        origins = [int(r[0]) for r in _ranked(rng, filters, ["origin_as"], "response_bytes", limit, count=False)[0]]
    ranked, _, _ = _ranked(rng, filters, ["router", "neighbor_as", "origin_as"], "response_bytes", limit,
                           count=False, among=("origin_as", list(origins)))
    kept = [(int(r[0]), int(r[1]), int(r[2]), int(r[3] or 0)) for r in ranked]
    per_router = {int(r[0]): int(r[1] or 0) for r in _grouped(rng, filters, ["router"], bytes_, few=True)[0]}
    neighbours = sorted({nb for _, nb, _, _ in kept})
    per_pair = {(int(r[0]), int(r[1])): int(r[2] or 0) for r in _grouped(
        rng, filters, ["router", "neighbor_as"], bytes_, among=("neighbor_as", neighbours), few=True)[0]} \
        if kept else {}
    routers = router_names()
    names = as_names({t[1] for t in kept} | {t[2] for t in kept})
    nodes, node_index = [], {}

    def node(kind, key, label):
        if (kind, key) not in node_index:
            node_index[(kind, key)] = len(nodes)
            nodes.append({"id": f"{kind}:{key}", "label": label, "kind": kind})
        return node_index[(kind, key)]

    links: dict[tuple[int, int], int] = {}

    def link(a, b, n):
        links[(a, b)] = links.get((a, b), 0) + n

    pairs: dict[tuple[int, int], int] = {}   # kept (router, neighbour): bytes of its kept triples
    for r, nb, org, n in kept:
        node("router", r, routers.get(r, f"router #{r}"))
        link(node("neighbor", nb, "via " + asn_label(nb, names)), node("origin", org, asn_label(org, names)), n)
        pairs[(r, nb)] = pairs.get((r, nb), 0) + n
    for (r, nb), shown in pairs.items():
        # The pair's whole traffic; what its other origins carry goes on to 'other'.
        a, b = node_index[("router", r)], node_index[("neighbor", nb)]
        link(a, b, per_pair.get((r, nb), shown))
        link(b, node("origin", "other", "other origin ASes"), per_pair.get((r, nb), shown) - shown)
    for r in sorted(per_router):
        rest = per_router[r] - sum(per_pair.get(p, n) for p, n in pairs.items() if p[0] == r)
        if rest > 0:
            b = node("neighbor", "other", "other neighbours")
            link(node("router", r, routers.get(r, f"router #{r}")), b, rest)
            link(b, node("origin", "other", "other origin ASes"), rest)
    return {"nodes": nodes, "links": [{"source": a, "target": b, "bytes": n} for (a, b), n in links.items() if n],
            "total_bytes": sum(per_router.values())}


def paths(rng: Range, filters: Filters | None = None, limit: int = 20) -> dict:
    """The AS paths of the traffic (filter by origin AS for one AS's paths).

    A top-N by ``as_path`` (see :func:`top`) from traffic_path_hour/day,
    plus ``available``: False (and no rows) while the archive has no path
    tables. Ranges at minute resolution read the whole hours that hold them.
    """
    filters = filters or Filters()
    if filters.country is not None or filters.prefix is not None:
        raise QueryError("AS paths cannot be filtered by country or prefix")
    if not has_paths():
        empty = {"key": None, "label": "total", "share": None, **figures(ZERO, rng.seconds)}
        return {"by": "as_path", "rows": [], "other": None, "total": empty, "count": 0,
                "range": rng.as_dict(), "filters": filters.as_dict(), "table": None, "available": False}
    return {**top(rng, "as_path", filters, limit), "available": True}


def coverage(rng: Range, by: str = "origin_as", filters: Filters | None = None,
             levels=(0.5, 0.9, 0.99)) -> dict:
    """How many groups (ASes by default) carry each share of the bytes.

    Returns ``{"count", "levels": [{"share", "groups"}], "total_bytes"}``:
    the smallest number of the largest groups whose bytes reach the share.
    """
    filters = filters or Filters()
    # Counted by the database: only the counts leave it. A group is needed
    # for a share while the bytes of the groups before it fall short of the
    # share. The running sums are float8 (a numeric window over 50,000 groups
    # took twice as long on PostgreSQL): a share's boundary is placed to
    # within 1e-15 of the total; the total itself is exact.
    source, params, cols, _, _ = _source(rng, filters, {by}, ["response_bytes"])
    needed = ", ".join("count(*) FILTER (WHERE c - v < %s * t)" for _ in levels)
    row = _run(f"SELECT count(*), {needed} FROM ("
               f"SELECT v, sum(v) OVER (ORDER BY v DESC ROWS UNBOUNDED PRECEDING) AS c, sum(v) OVER () AS t "
               f"FROM (SELECT sum(CAST(response_bytes AS DOUBLE PRECISION)) AS v FROM {source} "
               f"GROUP BY {cols[by]}) g) w", list(levels) + params)[0]
    out = [{"share": level, "groups": int(n)} for level, n in zip(levels, row[1:])]
    total = _total(rng, filters)[0]["response_bytes"]
    return {"by": by, "count": int(row[0]), "levels": out, "total_bytes": total}


TYPES_CACHE_SECONDS = 300
_types_cache: list = []


def known_types(rng: Range | None = None) -> list[str]:
    """The traffic types in the archive (from the totals tables and the
    hours of the per-minute window not archived yet, or the range's
    table), for the filter menus and the API's list."""
    if rng is None:
        # Every page's menu: a full scan of two tables, so kept a few minutes.
        now = time.monotonic()
        if _types_cache and now - _types_cache[0] < TYPES_CACHE_SECONDS:
            return _types_cache[1]
        rows = _run("SELECT DISTINCT traffic_type FROM traffic_total_day", [])
        rows += _run("SELECT DISTINCT traffic_type FROM traffic_total_hour", [])
        # The running hour and those pending their archive are in the window
        # only (its partitions from the cut on: an hour or two of rows).
        at = _now()
        window = Range(_ceil(at - timedelta(hours=settings.KEEP_CURRENT_HOURS), HOUR),
                       _floor(at, HOUR) + timedelta(hours=1), "hour", None, at)
        cut = open_hours_cut(window)
        if cut is not None:
            rows += _run("SELECT DISTINCT traffic_type FROM traffic_current WHERE minute >= %s",
                         [_time_param(cut)])
        _types_cache[:] = [now, sorted({r[0] for r in rows})]
        return _types_cache[1]
    else:
        rows, _ = _grouped(rng, Filters(), ["traffic_type"])
    return sorted({r[0] for r in rows})
