"""The archive tables: what each keeps, its key, and the SQL both databases run.

Every table has the same measures (the spool's sums, see
docs/spool-format.md) and its own key. Rows are only ever added to with an
upsert (``measure = measure + new``; min RTT takes the least), so a spool
segment's contribution is applied exactly once by recording the segment in
the same transaction (ipr.traffic.ingest).

On PostgreSQL every table is partitioned by range of its time column, one
partition per month (per day for the per-minute window), created by the
ingest before it writes and dropped by the retention task. Unknown values are
sentinels, not NULL, so that they are keys like any other: router 0 (no
router serves the server address), AS 0 (unrouted; RFC 7607's reserved "no
AS"), country '' (unknown), and prefix ``0.0.0.0/0`` or ``::/0`` for a client
address that no route covers (the family is kept).
"""
from collector.spool import RTT_BUCKETS, STATUS_CLASSES

STATUS_COLUMNS = [f"status_{c}" for c in STATUS_CLASSES]
HIST_COLUMNS = [f"rtt_h{i}" for i in range(RTT_BUCKETS)]
# Summed measures, in the order ingest writes them.
SUMS = (["records", "connections", "requests"] + STATUS_COLUMNS +
        ["response_bytes", "wire_bytes", "retrans_bytes", "bytes_records", "data_segs", "retrans_segs",
         "segs_records", "tcpinfo_records", "rtt_sum_us"] + HIST_COLUMNS + ["duration_sum_us"])
MEASURES = SUMS + ["min_rtt_us"]   # min_rtt_us: the least; NULL when no record carried one

# name: (time column, key columns after time and router/type). The time is a
# timestamp with time zone: the minute or the hour (or day) the traffic is in.
PREFIX_KEY = ["prefix", "origin_as", "neighbor_as", "country"]
# The AS path each route had when its traffic was ingested ('' when unrouted
# or local); the origin and neighbour AS are in the key too, as an origin
# override can change the origin of a path.
PATH_KEY = ["origin_as", "neighbor_as", "as_path"]
TABLES = {
    "traffic_current": ("minute", PREFIX_KEY),        # per minute, kept IPR_CURRENT_HOURS
    "traffic_prefix_hour": ("hour", PREFIX_KEY),
    "traffic_origin_hour": ("hour", ["asn"]),
    "traffic_neighbor_hour": ("hour", ["asn"]),
    "traffic_country_hour": ("hour", ["country"]),
    "traffic_path_hour": ("hour", PATH_KEY),
    "traffic_prefix_day": ("day", PREFIX_KEY),
    "traffic_origin_day": ("day", ["asn"]),
    "traffic_neighbor_day": ("day", ["asn"]),
    "traffic_country_day": ("day", ["country"]),
    "traffic_path_day": ("day", PATH_KEY),
}
# Daily rollups and the hourly tables they come from.
ROLLUPS = {"traffic_prefix_day": "traffic_prefix_hour", "traffic_origin_day": "traffic_origin_hour",
           "traffic_neighbor_day": "traffic_neighbor_hour", "traffic_country_day": "traffic_country_hour",
           "traffic_path_day": "traffic_path_hour"}
# Hourly tables that are sums of traffic_prefix_hour over fewer keys (so an
# hour of them can be recomputed from it), and the column each keeps.
DERIVED_HOURLY = {"traffic_origin_hour": "origin_as", "traffic_neighbor_hour": "neighbor_as",
                  "traffic_country_hour": "country"}

KEY_TYPES = {"prefix": ("cidr", "text"), "origin_as": ("bigint", "integer"),
             "neighbor_as": ("bigint", "integer"), "asn": ("bigint", "integer"),
             "country": ("char(2)", "text"), "as_path": ("text", "text")}


def key_columns(name: str) -> list[str]:
    time_column, extra = TABLES[name]
    return [time_column, "router_id", "traffic_type"] + extra


def create_sql(name: str, postgresql: bool) -> list[str]:
    time_column, extra = TABLES[name]
    pg = 0 if postgresql else 1
    cols = [f"{time_column} {'timestamptz' if postgresql else 'text'} NOT NULL",
            "router_id bigint NOT NULL", "traffic_type varchar(16) NOT NULL"]
    cols += [f"{c} {KEY_TYPES[c][pg]} NOT NULL" for c in extra]
    cols += [f"{m} bigint NOT NULL DEFAULT 0" for m in SUMS] + ["min_rtt_us bigint"]
    key = ", ".join(key_columns(name))
    partition = f" PARTITION BY RANGE ({time_column})" if postgresql else ""
    # The primary key, time first, serves what every page asks of a table:
    # the rows of a time range (series, top-N), and the ingest's upserts.
    statements = [f"CREATE TABLE {name} ({', '.join(cols)}, PRIMARY KEY ({key})){partition}"]
    if extra and extra[0] in ("asn", "country"):
        # The per-ASN and per-country pages: one ASN's (country's) series over a range.
        statements.append(f"CREATE INDEX {name}_{extra[0]}_time ON {name} ({extra[0]}, {time_column})")
    if extra and extra[0] in ("prefix", "origin_as"):
        # The per-ASN page's prefixes and AS paths: its rows over a range.
        statements.append(f"CREATE INDEX {name}_origin_time ON {name} (origin_as, {time_column})")
    return statements


# The ingest stages rows with numbers instead of text keys: each text key is
# an id into a small staged table of its distinct values (so the bulk load is
# fixed-width binary, see ipr.traffic.ingest), joined back in the upsert.
DIMENSIONS = {"traffic_type": ("staged_types", "varchar(16)"), "prefix": ("staged_prefixes", "cidr"),
              "country": ("staged_countries", "char(2)"), "as_path": ("staged_paths", "text")}


def staged_columns(name: str) -> list[str]:
    return [f"{c}_id" if c in DIMENSIONS else c for c in key_columns(name)] + MEASURES


def upsert_sql(name: str, staged: str, postgresql: bool) -> str:
    """Add the staged rows of ``name`` (ids for text keys; min RTT -1 for
    none) into it: sums add up, min RTT takes the least."""
    keys = key_columns(name)
    select, joins = [], []
    for col in keys:
        if col in DIMENSIONS:
            dim = DIMENSIONS[col][0]
            select.append(f"{col}_d.value")
            joins.append(f"JOIN {dim} {col}_d ON {col}_d.id = s.{col}_id")
        else:
            select.append(f"s.{col}")
    select += [f"s.{m}" for m in SUMS] + ["nullif(s.min_rtt_us, -1)"]
    least = "LEAST" if postgresql else "min"
    sets = [f"{m} = {name}.{m} + excluded.{m}" for m in SUMS]
    sets.append(f"min_rtt_us = coalesce({least}({name}.min_rtt_us, excluded.min_rtt_us), "
                f"{name}.min_rtt_us, excluded.min_rtt_us)")
    where = " WHERE true" if not postgresql else ""  # SQLite's parser needs it before ON CONFLICT
    return (f"INSERT INTO {name} ({', '.join(keys + MEASURES)}) SELECT {', '.join(select)} "
            f"FROM {staged} s {' '.join(joins)}{where} "
            f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {', '.join(sets)}")
