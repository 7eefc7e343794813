"""From spool segments to the archive: claim, enrich, sum, upsert, once.

A segment is claimed by renaming it from ``incoming/`` to ``processing/``
(only one worker's rename succeeds). Its rows are enriched in batch by the
resolver (router from the server address, route and origin/neighbour AS
from the client address in that router's active table, country), summed per
table key, and added to every archive table in ONE transaction that also
records the segment as ingested. Only after the commit is the file removed.

So a crash before the commit leaves the file in ``processing/`` and nothing
in the database: :func:`recover` puts it back and it is ingested again. A
crash after the commit leaves the file and the record: the rerun sees the
record and only removes the file. Nothing is lost or counted twice.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone as tz
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import connection, transaction

from collector import spool
from ipr.routing.load import copy_rows
from ipr.routing.lookup import resolver
from ipr.traffic import tables
from ipr.traffic.models import IngestedSegment

log = logging.getLogger("ipr.ingest")

# A claim older than this is from a worker that died: the segment goes back.
STALE_CLAIM_SECONDS = 600
MAPPED = b"\0" * 10 + b"\xff\xff"


@dataclass
class Result:
    segments: int = 0
    rows: int = 0
    skipped: int = 0      # segments already ingested (a rerun after a crash)


def claim(spool_dir: Path, limit: int) -> list[Path]:
    """Move up to ``limit`` incoming segments, oldest first, to processing/."""
    incoming, processing = spool_dir / "incoming", spool_dir / "processing"
    processing.mkdir(parents=True, exist_ok=True)
    claimed = []
    for path in sorted(incoming.glob("*.seg"), key=lambda p: p.name.rsplit("-", 1)[-1]):
        target = processing / path.name
        try:
            os.rename(path, target)
        except FileNotFoundError:
            continue  # another worker claimed it
        os.utime(target)  # the claim's time, for recover()
        claimed.append(target)
        if len(claimed) >= limit:
            break
    return claimed


def recover(spool_dir: Path, older_than: float = STALE_CLAIM_SECONDS) -> list[str]:
    """Put segments whose worker died back into incoming/."""
    back = []
    now = time.time()
    for path in (spool_dir / "processing").glob("*.seg"):
        try:
            if now - path.stat().st_mtime > older_than:
                os.rename(path, spool_dir / "incoming" / path.name)
                back.append(path.name)
        except FileNotFoundError:
            continue
    return back


def ingest(spool_dir: Path | None = None, limit: int = 100) -> Result:
    """Claim and ingest what is waiting; the beat task and the command call this."""
    spool_dir = Path(spool_dir or settings.SPOOL_DIR)
    result = Result()
    for name in recover(spool_dir):
        log.warning("segment %s: its worker died; claimed again", name)
    for path in claim(spool_dir, limit):
        rows = ingest_segment(path)
        if rows is None:
            result.skipped += 1
        else:
            result.segments += 1
            result.rows += rows
    return result


def ingest_segment(path: Path) -> int | None:
    """Ingest one claimed segment; None if it had been ingested already."""
    rows = spool.read_segment(path)
    with transaction.atomic():
        _, created = IngestedSegment.objects.get_or_create(
            name=path.name, defaults={"rows": len(rows), "bytes": path.stat().st_size})
        if created and len(rows):
            write(summarise(rows))
    path.unlink()
    if not created:
        log.info("segment %s: ingested before; removed", path.name)
        return None
    return len(rows)


# -- enrichment and sums ------------------------------------------------------

def _measures(rows: np.ndarray) -> dict[str, np.ndarray]:
    m = {"records": rows["records"], "connections": rows["connections"], "requests": rows["requests"]}
    for i, col in enumerate(tables.STATUS_COLUMNS):
        m[col] = rows["status"][:, i]
    for col in ("response_bytes", "wire_bytes", "retrans_bytes", "bytes_records", "data_segs",
                "retrans_segs", "segs_records", "tcpinfo_records", "rtt_sum_us", "duration_sum_us"):
        m[col] = rows[col]
    for i, col in enumerate(tables.HIST_COLUMNS):
        m[col] = rows["rtt_hist"][:, i]
    return {k: v.astype(np.int64) for k, v in m.items()}


def _group(keys: dict[str, np.ndarray], sums: dict[str, np.ndarray], mins: np.ndarray):
    """Sum ``sums`` (and take the least of ``mins``) per distinct key."""
    names = list(keys)
    packed = np.rec.fromarrays([keys[n] for n in names], names=names)
    uniq, inverse = np.unique(packed, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(inverse[order]) != 0])
    out_sums = {k: np.add.reduceat(v[order], starts) for k, v in sums.items()}
    out_min = np.minimum.reduceat(mins[order], starts)
    return {n: uniq[n] for n in names}, out_sums, out_min


def summarise(rows: np.ndarray) -> dict[str, list[tuple]]:
    """Rows for every archive table from one segment's spool rows."""
    res = resolver()
    got = res.resolve(rows["client"], rows["server"])
    router = np.where(got.router_id < 0, 0, got.router_id)
    v4 = np.frombuffer(rows["client"].tobytes(), np.uint8).reshape(-1, 16)[:, :12]
    is_v4 = (v4 == np.frombuffer(MAPPED, np.uint8)).all(axis=1)
    # A route is named by (router, best-route number); unrouted ones by family.
    route = np.where(got.route < 0, np.where(is_v4, -1, -2), got.route)
    minute = rows["minute"].astype(np.int64)
    no_min = rows["min_rtt_us"] == spool.NO_MIN_RTT
    mins = np.where(no_min, np.iinfo(np.int64).max, rows["min_rtt_us"].astype(np.int64))
    keys = {"minute": minute, "router": router, "type": rows["traffic_type"], "route": route,
            "origin": np.maximum(got.origin_as, 0), "neighbor": np.maximum(got.neighbor_as, 0),
            "country": got.country}
    mk, ms, mmin = _group(keys, _measures(rows), mins)
    prefix_text = _prefixes(res, mk["router"], mk["route"])
    out = {"traffic_current": _rows(mk, ms, mmin, "minute", 60, prefix_text)}
    hk, hs, hmin = _group({**mk, "minute": mk["minute"] // 60 * 60}, ms, mmin)
    hour_prefix = _prefixes(res, hk["router"], hk["route"])
    out["traffic_prefix_hour"] = _rows(hk, hs, hmin, "minute", 60, hour_prefix)
    for table, field in (("traffic_origin_hour", "origin"), ("traffic_neighbor_hour", "neighbor"),
                         ("traffic_country_hour", "country")):
        k, s, mn = _group({"minute": hk["minute"], "router": hk["router"], "type": hk["type"],
                           field: hk[field]}, hs, hmin)
        out[table] = _rows(k, s, mn, "minute", 60, None, extra=[field])
    return out


def _prefixes(res, routers: np.ndarray, routes: np.ndarray) -> list[str]:
    texts = []
    for router, route in zip(routers.tolist(), routes.tolist()):
        if route == -1:
            texts.append("0.0.0.0/0")
        elif route == -2:
            texts.append("::/0")
        else:
            texts.append(res.tables[router].engine.prefix(route))
    return texts


def _stamp(minutes: int) -> str:
    return datetime.fromtimestamp(minutes * 60, tz.utc).strftime("%Y-%m-%d %H:%M:%S+00:00")


def _rows(keys, sums, mins, time_field, _unit, prefixes, extra=None) -> list[tuple]:
    n = len(keys[time_field])
    types = [t.rstrip(b"\0").decode("ascii", "replace") for t in keys["type"].tolist()]
    stamps = {m: _stamp(m) for m in set(keys[time_field].tolist())}
    columns = [sums[c].tolist() for c in tables.SUMS]
    least = [None if v == np.iinfo(np.int64).max else v for v in mins.tolist()]
    out = []
    for i in range(n):
        head = [stamps[int(keys[time_field][i])], int(keys["router"][i]), types[i]]
        if prefixes is not None:
            head += [prefixes[i], int(keys["origin"][i]), int(keys["neighbor"][i]), str(keys["country"][i])]
        else:
            value = keys[extra[0]][i]
            head.append(str(value) if extra[0] == "country" else int(value))
        out.append(tuple(head + [c[i] for c in columns] + [least[i]]))
    return out


# -- writing -----------------------------------------------------------------

def write(batches: dict[str, list[tuple]]) -> None:
    """Add every table's rows, in the caller's transaction."""
    pg = connection.vendor == "postgresql"
    for name, rows in batches.items():
        if not rows:
            continue
        if pg:
            ensure_partitions(name, {r[0] for r in rows})
        cols = tables.key_columns(name) + tables.MEASURES
        temp = f"incoming_{name}"
        with connection.cursor() as cur:
            if pg:
                cur.execute(f"CREATE TEMP TABLE {temp} (LIKE {name})")
            else:
                cur.execute(f"CREATE TEMP TABLE {temp} AS SELECT * FROM {name} WHERE 0")
        copy_rows(temp, cols, rows)
        with connection.cursor() as cur:
            cur.execute(tables.upsert_sql(name, temp, pg))
            cur.execute(f"DROP TABLE {temp}")


def ensure_partitions(name: str, stamps: set[str]) -> None:
    """Create the partitions of ``name`` that hold these times (PostgreSQL)."""
    daily = name == "traffic_current"
    with connection.cursor() as cur:
        for start, end, suffix in sorted({partition_range(s, daily) for s in stamps}):
            part = f"{name}_{suffix}"
            cur.execute("SELECT 1 FROM pg_class WHERE relname = %s", [part])
            if cur.fetchone():
                continue
            # Two workers may need the same new partition at once.
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [part])
            cur.execute(f"CREATE TABLE IF NOT EXISTS {part} PARTITION OF {name} "
                        f"FOR VALUES FROM ('{start}') TO ('{end}')")


def partition_range(stamp: str, daily: bool) -> tuple[str, str, str]:
    t = datetime.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S")
    if daily:
        start = t.replace(hour=0, minute=0, second=0)
        end = datetime.fromordinal(start.toordinal() + 1)
        return f"{start:%Y-%m-%d}+00", f"{end:%Y-%m-%d}+00", f"d{start:%Y%m%d}"
    start = t.replace(day=1, hour=0, minute=0, second=0)
    end = start.replace(year=start.year + (start.month == 12), month=start.month % 12 + 1)
    return f"{start:%Y-%m-%d}+00", f"{end:%Y-%m-%d}+00", f"m{start:%Y%m}"
