"""The archive tables: what each keeps, its key, and the SQL both databases run.

Every table has the same measures (the spool's sums, see
docs/spool-format.md) and its own key:

- ``traffic_current``, the per-minute window, is where the ingest appends
  the sums of spool rows, recording each segment in the same transaction
  (ipr.traffic.ingest);
- the hourly tables are computed from the window, an hour at a time, by the
  hourly archive (ipr.traffic.rollup), which replaces what the hour had, so
  running it again is harmless; traffic older than the window adds to them
  directly;
- the daily tables are computed from the hourly ones, a day at a time.

On PostgreSQL every table is partitioned by range of its time column, one
partition per month (per hour for the per-minute window, so that an hour's
rows are one partition: the ingest copies into it directly and the hourly
archive reads all of it), created before they are written and dropped by
the retention task. Unknown values are
sentinels, not NULL, so that they are keys like any other: router 0 (no
router serves the server address), AS 0 (unrouted; RFC 7607's reserved "no
AS"), country '' (unknown), AS path '' (unrouted, or a local route), and
prefix ``0.0.0.0/0`` or ``::/0`` for a client address that no route covers
(the family is kept). A special-purpose address (ipr.routing.special) has
AS 0, the country ``ZZ`` and its block as prefix.
"""
from datetime import datetime, timedelta, timezone

from django.db import OperationalError, connection, transaction

from collector.spool import RTT_BUCKETS, STATUS_CLASSES

STATUS_COLUMNS = [f"status_{c}" for c in STATUS_CLASSES]
HIST_COLUMNS = [f"rtt_h{i}" for i in range(RTT_BUCKETS)]
# Summed measures, in the order ingest writes them.
SUMS = (["records", "connections", "requests"] + STATUS_COLUMNS +
        ["response_bytes", "wire_bytes", "retrans_bytes", "bytes_records", "data_segs", "retrans_segs",
         "segs_records", "tcpinfo_records", "rtt_sum_us"] + HIST_COLUMNS + ["duration_sum_us"])
MEASURES = SUMS + ["min_rtt_us"]   # min_rtt_us: the least; NULL when no record carried one

# name: (time column, key columns after time). The time is a timestamp with
# time zone: the minute or the hour (or day) the traffic is in.
SPLIT = ["router_id", "traffic_type"]
PREFIX_KEY = ["prefix", "origin_as", "neighbor_as", "country"]
# The AS path each route had when its traffic was ingested ('' when unrouted
# or local); the origin and neighbour AS are in the key too, as an origin
# override can change the origin of a path.
PATH_KEY = ["origin_as", "neighbor_as", "as_path"]
# The tables the pages read most have coarser twins: the same rows summed
# over what most pages do not split by, so that a long range reads several
# times fewer rows (docs/archive.md). kind: (the table it is summed from, its
# key after time, by the source's column names).
COARSE = {
    # per router and traffic type alone: a page's totals, series and
    # router/type tables (from the per-country table, the smallest)
    "total": ("country", SPLIT),
    # router -> neighbour AS -> origin AS: the flow diagram, the peering
    # report (not the country: an origin's prefixes may be in many, and a
    # heavy hour's flow rows were three times as many with it, its archive
    # 8 s longer)
    "flow": ("path", ["router_id", "origin_as", "neighbor_as"]),
    # over all routers and traffic types: the top-N tables and reports
    "prefix_all": ("prefix", PREFIX_KEY),
    "origin_all": ("origin", ["asn"]),
    "neighbor_all": ("neighbor", ["asn"]),
    "country_all": ("country", ["country"]),
}
TABLES = {
    # per minute, kept IPR_KEEP_CURRENT_HOURS; with the AS path, so that the
    # hourly path table can be computed from it
    "traffic_current": ("minute", SPLIT + PREFIX_KEY + ["as_path"]),
    **{f"traffic_{kind}_{unit}": (unit, SPLIT + key) for unit in ("hour", "day")
       for kind, key in (("prefix", PREFIX_KEY), ("origin", ["asn"]), ("neighbor", ["asn"]),
                         ("country", ["country"]), ("path", PATH_KEY))},
    **{f"traffic_{kind}_{unit}": (unit, key) for unit in ("hour", "day") for kind, (_, key) in COARSE.items()},
}
# Each coarse table is a sum of another table of its resolution, computed
# after it: by the hourly archive (again when late traffic adds to an hour)
# and by the daily rollup.
DERIVED = {f"traffic_{kind}_{unit}": f"traffic_{source}_{unit}"
           for unit in ("hour", "day") for kind, (source, _) in COARSE.items()}
# Spans: each daily table (but the totals, a dozen rows a day) summed again
# over the whole days of the longest preset ranges, so that a year's top-N
# groups one row per key instead of one per key and day (a year of 2,000
# ASes a day: 730,000 rows). The lengths are the whole closed days in the
# presets 7d, 30d, 90d and 1y (docs/archive.md); each span ends at the
# midnight that starts today and is computed by the daily rollup once the
# days before it are final. name: the daily table it sums.
SPAN_DAYS = (6, 29, 89, 364)
SPANS = {name[:-4] + "_span": name for name, (column, _) in TABLES.items()
         if column == "day" and name != "traffic_total_day"}
# Daily rollups and the hourly tables they come from.
ROLLUPS = {name: name[:-4] + "_hour" for name, (column, _) in TABLES.items()
           if column == "day" and name not in DERIVED}
HOURLY = [name for name, (column, _) in TABLES.items() if column == "hour"]
# Each hourly table that is not derived is a sum of the window's rows of the
# hour over these columns (after router and traffic type), in the table's
# key order.
HOURLY_SOURCES = {
    "traffic_prefix_hour": PREFIX_KEY,
    "traffic_path_hour": PATH_KEY,
    "traffic_origin_hour": ["origin_as"],
    "traffic_neighbor_hour": ["neighbor_as"],
    "traffic_country_hour": ["country"],
}

# Text keys compare bytewise ("C"): they are codes, not words, and the
# archive's GROUP BYs compare them for every row.
TYPE_TYPE = ('varchar(16) COLLATE "C"', "text")
KEY_TYPES = {"prefix": ("cidr", "text"), "origin_as": ("bigint", "integer"),
             "neighbor_as": ("bigint", "integer"), "asn": ("bigint", "integer"),
             "country": ('char(2) COLLATE "C"', "text"), "as_path": ('text COLLATE "C"', "text")}


def key_columns(name: str) -> list[str]:
    time_column, keys = TABLES[name]
    return [time_column] + keys


def create_sql(name: str, postgresql: bool) -> list[str]:
    """The table and its indexes.

    No primary key: a table is a multiset of rows that every reader sums
    (a key may have several rows: two segments of one minute, or late
    traffic added to an hour older than the window). Exactly once comes from
    the ingest's segment records and from the archive replacing whole hours
    and days, not from upserts; so a write is a plain append, and the costly
    part of an upsert, a unique index probed and updated per row, is gone.
    """
    time_column, keys = TABLES[name]
    cols = [f"{time_column} {'timestamptz' if postgresql else 'text'} NOT NULL"] + _columns(keys, postgresql)
    partition = f" PARTITION BY RANGE ({time_column})" if postgresql else ""
    statements = [f"CREATE TABLE {name} ({', '.join(cols)}){partition}"]
    # Every page's query: the rows of a time range (series, top-N, totals).
    # Rows arrive in time order, a minute or an hour at a time, so a BRIN
    # index (a few pages per partition, nearly free to keep) finds them.
    # The window (it takes the most writes) needs none on PostgreSQL: its
    # partitions are hours, and its reads (the hourly archive, pages of the
    # last hours) take whole hours or most of one.
    if name == "traffic_current":
        return statements if postgresql else statements + [f"CREATE INDEX {name}_time ON {name} ({time_column})"]
    using = "USING brin " if postgresql else ""
    statements.append(f"CREATE INDEX {name}_time ON {name} {using}({time_column})")
    extra = [c for c in keys if c not in SPLIT]
    if extra and extra[0] in ("asn", "country"):
        # The per-ASN and per-country pages: one ASN's (country's) series over a range.
        statements.append(f"CREATE INDEX {name}_{extra[0]}_time ON {name} ({extra[0]}, {time_column})")
    elif "origin_as" in extra:
        # The per-ASN page's prefixes, AS paths and flows: its rows over a range.
        statements.append(f"CREATE INDEX {name}_origin_time ON {name} (origin_as, {time_column})")
    return statements


def _columns(keys: list[str], postgresql: bool) -> list[str]:
    """The definitions of a table's key columns and measures."""
    pg = 0 if postgresql else 1
    types = {"router_id": ("bigint", "bigint"), "traffic_type": TYPE_TYPE, **KEY_TYPES}
    return ([f"{c} {types[c][pg]} NOT NULL" for c in keys] +
            [f"{m} bigint NOT NULL DEFAULT 0" for m in SUMS] + ["min_rtt_us bigint"])


def span_create_sql(name: str, postgresql: bool) -> list[str]:
    """A span table: the key and measures of its daily table, for the days
    [first_day, end_day). At most eight spans (two ends of four lengths),
    each a row per key of its days: no partitions."""
    keys = TABLES[SPANS[name]][1]
    time_type = "timestamptz" if postgresql else "text"
    cols = [f"first_day {time_type} NOT NULL", f"end_day {time_type} NOT NULL"] + _columns(keys, postgresql)
    # Every read: the rows of one span (a top-N, coverage, the flows).
    statements = [f"CREATE TABLE {name} ({', '.join(cols)})",
                  f"CREATE INDEX {name}_span ON {name} (end_day, first_day)"]
    # The AS and country pages: the rows of one AS (country) in a span.
    for col in [c for c in keys if c in ("asn", "origin_as", "country")]:
        statements.append(f"CREATE INDEX {name}_{col} ON {name} ({col}, end_day, first_day)")
    return statements


def migration(names: tuple[str, ...], statements=None):
    """The (create, drop) functions of a migration that adds these tables
    (made by ``statements(name, postgresql)``, :func:`create_sql` by default)."""
    statements = statements or create_sql

    def create(apps, schema_editor):
        pg = schema_editor.connection.vendor == "postgresql"
        for name in names:
            for sql in statements(name, pg):
                schema_editor.execute(sql)

    def drop(apps, schema_editor):
        for name in names:
            schema_editor.execute(f"DROP TABLE IF EXISTS {name}")
    return create, drop


# On SQLite the ingest stages rows with numbers instead of text keys: each
# text key is an id into a staged table of its distinct values, joined back
# as the rows are appended (PostgreSQL takes them whole, by binary COPY).
DIMENSIONS = {"traffic_type": "staged_types", "prefix": "staged_prefixes", "country": "staged_countries",
              "as_path": "staged_paths"}


def staged_columns(name: str) -> list[str]:
    return [f"{c}_id" if c in DIMENSIONS else c for c in key_columns(name)] + MEASURES


def insert_sql(name: str, staged: str) -> str:
    """Append the staged rows of ``name`` (ids for text keys; min RTT -1 for none)."""
    keys = key_columns(name)
    select, joins = [], []
    for col in keys:
        if col in DIMENSIONS:
            dim = DIMENSIONS[col]
            select.append(f"{col}_d.value")
            joins.append(f"JOIN {dim} {col}_d ON {col}_d.id = s.{col}_id")
        else:
            select.append(f"s.{col}")
    select += [f"s.{m}" for m in SUMS] + ["nullif(s.min_rtt_us, -1)"]
    return (f"INSERT INTO {name} ({', '.join(keys + MEASURES)}) SELECT {', '.join(select)} "
            f"FROM {staged} s {' '.join(joins)}")


# Sums in float8 are exact while every partial sum stays below 2**53, and
# PostgreSQL keeps a float8 sum in a plain 8-byte state, where a bigint sum
# keeps a 128-bit one allocated per group and aggregate: several times
# slower, and a few KB of memory per group. All measures are >= 0, so a sum
# in float8 reaches 2**53 if the exact sum does, and a sum of a subset of
# rows whose total is below 2**53 is exact too.
EXACT = 2 ** 53


# A sum of a column saturates at the bigint maximum, as the ingest's sums do
# (a saturated spool sum is stored as BIGINT_MAX): the archive of an hour
# with two such rows must not fail, every time it runs.
BIGINT_MAX = 2 ** 63 - 1


def saturated_sum(expr: str, postgresql: bool) -> str:
    """The SQL of ``sum(expr)`` over integers, exact up to BIGINT_MAX and
    BIGINT_MAX beyond it, never an error.

    PostgreSQL sums bigints in numeric, so the sum only needs capping.
    SQLite's sum() raises 'integer overflow' and total() is a float (inexact
    past 2**53), so each value is summed as two halves, its high 31 and low
    32 bits, whose sums cannot overflow (fewer than 2**31 rows): the total
    is high * 2**32 + low, and it reaches 2**63 exactly when high + (low >>
    32) reaches 2**31."""
    if postgresql:
        # Not least(): it takes the maximum for the NULL sum of no rows.
        return f"(CASE WHEN sum({expr}) > {BIGINT_MAX} THEN {BIGINT_MAX} ELSE sum({expr}) END)::bigint"
    high, low = f"sum(({expr}) >> 32)", f"sum(({expr}) & 4294967295)"
    return f"(CASE WHEN {high} + ({low} >> 32) >= 2147483648 THEN {BIGINT_MAX} ELSE ({high} << 32) + {low} END)"


def sums_select(cast: str = "", named: bool = False, back: str = "", postgresql: bool | None = None) -> str:
    """The aggregate of every measure, for an INSERT ... SELECT ... GROUP BY
    (each summed as ``cast`` if given, e.g. '::float8', and the sum cast
    ``back``, e.g. '::bigint'; only below EXACT). Without a cast, each sum
    saturates at BIGINT_MAX (:func:`saturated_sum`) on ``postgresql``
    (default: the connection's database) or SQLite."""
    alias = (lambda m: f" AS {m}") if named else (lambda m: "")
    if cast:
        sums = [f"sum({m}{cast}){back}" for m in SUMS]
    else:
        pg = connection.vendor == "postgresql" if postgresql is None else postgresql
        sums = [saturated_sum(m, pg) for m in SUMS]
    return ", ".join([f"{s}{alias(m)}" for s, m in zip(sums, SUMS)] +
                     [f"min(min_rtt_us){alias('min_rtt_us')}"])


# -- partitions (PostgreSQL) --------------------------------------------------

def partition_unit(name: str) -> str:
    return "hour" if name == "traffic_current" else "month"


def ensure_partitions(name: str, stamps: set[str]) -> dict[str, str]:
    """Create the partitions of ``name`` that hold these times; the partition
    that holds each time (its own, or one of another span made before, e.g.
    a day's partition of the window from before it was partitioned by hour)."""
    unit = partition_unit(name)
    ranges = {s: partition_range(s, unit) for s in stamps}
    made: dict[tuple, str] = {}
    existing = None
    with connection.cursor() as cur:
        for start, end, suffix in sorted(set(ranges.values())):
            part = f"{name}_{suffix}"
            cur.execute("SELECT 1 FROM pg_class WHERE relname = %s", [part])
            if not cur.fetchone():
                if existing is None:
                    existing = partitions(cur, name)
                lower = datetime.fromisoformat(start[:-3]).replace(tzinfo=timezone.utc)
                covering = [p for p, low, high in existing if low <= lower < high]
                if covering:
                    part = covering[0]
                else:
                    # Two workers may need the same new partition at once.
                    cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [part])
                    cur.execute(f"CREATE TABLE IF NOT EXISTS {part} PARTITION OF {name} "
                                f"FOR VALUES FROM ('{start}') TO ('{end}')")
            made[(start, end, suffix)] = part
    return {s: made[r] for s, r in ranges.items()}


def partitions(cur, name: str) -> list[tuple[str, datetime, datetime]]:
    """The partitions of ``name``: (name, lower bound, upper bound)."""
    cur.execute(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s",
        [name])
    out = []
    for part, bound in cur.fetchall():
        # FOR VALUES FROM ('2026-11-01 00:00:00+00') TO ('2026-12-01 00:00:00+00')
        low, high = (b.split("'", 1)[0] for b in bound.split("('")[1:3])
        out.append((part, *(datetime.fromisoformat(v.replace("+00", "+00:00")) for v in (low, high))))
    return out


def summarize(names, stamps=None) -> int:
    """Summarize the page ranges written since the last summary in the BRIN
    time indexes of these tables' partitions (those that hold ``stamps``,
    or every one); ranges summarized. PostgreSQL leaves a new range
    unsummarized until a VACUUM, and the index then answers "maybe" for
    it: a query for a few hours read every page of a month's partition
    (a 30-day range's first hours: 5,200 pages and 29 ms, against 128
    pages and 1 ms summarized). The archive calls this after each hour and
    day it writes, outside its transaction: a summary only speeds reads,
    so a lock held by a VACUUM (which summarizes too) is not waited for."""
    if connection.vendor != "postgresql":
        return 0
    wanted = None if stamps is None else [datetime.fromisoformat(s[:19]).replace(tzinfo=timezone.utc)
                                          for s in stamps]
    with connection.cursor() as cur:
        parts = [part for name in names if name != "traffic_current" for part, low, high in partitions(cur, name)
                 if wanted is None or any(low <= t < high for t in wanted)]
        cur.execute("SELECT i.indexrelid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                    "JOIN pg_am a ON a.oid = c.relam JOIN pg_class t ON t.oid = i.indrelid "
                    "WHERE a.amname = 'brin' AND t.relname = ANY(%s) ORDER BY 1", [parts])
        indexes = [r[0] for r in cur.fetchall()]
    summarized = 0
    for index in indexes:
        try:
            with transaction.atomic(), connection.cursor() as cur:
                cur.execute("SET LOCAL lock_timeout = '2s'")
                cur.execute("SELECT brin_summarize_new_values(%s::regclass)", [index])
                summarized += cur.fetchone()[0]
                cur.execute("SET LOCAL lock_timeout TO DEFAULT")  # a caller's transaction goes on
        except OperationalError:   # a VACUUM has the table: it summarizes it
            continue
    return summarized


def partition_range(stamp: str, unit: str) -> tuple[str, str, str]:
    """The partition (start, end, name suffix) that holds a time stamp:
    partitions are an ``unit`` ('hour' or 'month') long."""
    t = datetime.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S")
    if unit == "hour":
        start = t.replace(minute=0, second=0)
        end = start + timedelta(hours=1)
        return f"{start:%Y-%m-%d %H:00}+00", f"{end:%Y-%m-%d %H:00}+00", f"h{start:%Y%m%d%H}"
    start = t.replace(day=1, hour=0, minute=0, second=0)
    end = start.replace(year=start.year + (start.month == 12), month=start.month % 12 + 1)
    return f"{start:%Y-%m-%d %H:%M}+00", f"{end:%Y-%m-%d %H:%M}+00", f"m{start:%Y%m}"
