"""From spool segments to the archive: claim, enrich, sum, upsert, once.

A segment is claimed by renaming it from ``incoming/`` to ``processing/``
(only one worker's rename succeeds). Claimed segments are taken in batches
of up to ``IPR_INGEST_BATCH_ROWS`` rows: a batch's rows are enriched by the
resolver (router from the server address, route, AS path and origin/neighbour
AS from the client address in that router's active table, country), summed
per table key, and added to every archive table in ONE transaction that also
records each of its segments as ingested. Only after the commit are the
files removed.

So a crash before the commit leaves the files in ``processing/`` and nothing
in the database: :func:`recover` puts them back and they are ingested again.
A crash after the commit leaves files and records: the rerun sees the
records and only removes the files. Nothing is lost or counted twice.

Speed: everything per row is numpy (lookups, grouping on a 64-bit hash of
the key, sums), and on PostgreSQL each table's rows are appended with one
binary COPY that numpy builds (ipr.traffic.pgcopy): no upsert, as the tables
are multisets that readers sum (ipr.traffic.tables). SQLite, the embedded
default, appends through small staged tables instead.
"""
from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone as tz
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from django.conf import settings
from django.db import connection, transaction

from collector import spool
from ipr.routing import special
from ipr.routing.lookup import AS_PATHS, resolver
from ipr.traffic import pgcopy, tables
from ipr.traffic.models import IngestedSegment

log = logging.getLogger("ipr.ingest")

# Beside each claimed segment, NAME.seg.claim names its worker: "host pid
# start", the start being the process's start time in clock ticks since
# boot (Linux; empty elsewhere), so that a pid used again is not mistaken
# for the worker.
CLAIM_SUFFIX = ".claim"


MAPPED = b"\0" * 10 + b"\xff\xff"
NONE = np.iinfo(np.int64).max   # "no min RTT" while taking minima


@dataclass
class Result:
    segments: int = 0
    rows: int = 0
    skipped: int = 0      # segments already ingested (a rerun after a crash)
    batches: int = 0
    bad: int = 0          # segments that did not parse, set aside


def claim(spool_dir: Path, limit: int) -> list[Path]:
    """Move up to ``limit`` incoming segments, oldest first, to processing/,
    each with a note of this worker beside it."""
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
        _write_owner(target)
        claimed.append(target)
        if len(claimed) >= limit:
            break
    return claimed


def recover(spool_dir: Path, older_than: float | None = None) -> list[str]:
    """Put claimed segments whose worker is gone back into incoming/: at once
    when the claim's note names a process of this host that no longer runs,
    otherwise once the claim is older than ``older_than`` (default
    IPR_STALE_CLAIM_SECONDS): a worker on another host, or one that died
    before it wrote its note."""
    if older_than is None:
        older_than = settings.STALE_CLAIM_SECONDS
    processing = spool_dir / "processing"
    back = []
    now = time.time()
    for path in processing.glob("*.seg"):
        note = path.with_name(path.name + CLAIM_SUFFIX)
        try:
            stale = now - path.stat().st_mtime > older_than
            if not stale and not _owner_gone(note):
                continue
            # The note first: a new claim of the segment writes its own.
            note.unlink(missing_ok=True)
            os.rename(path, spool_dir / "incoming" / path.name)
            back.append(path.name)
        except FileNotFoundError:
            continue  # ingested or taken back meanwhile
    # Notes (and notes half written) of segments no longer claimed: the
    # ingest removes only the segment, and a worker may die mid-write.
    for note in processing.glob(f"*.seg{CLAIM_SUFFIX}*"):
        segment = note.name[:note.name.index(f".seg{CLAIM_SUFFIX}")] + ".seg"
        if not (processing / segment).exists():
            note.unlink(missing_ok=True)
    return back


def _process(pid: int) -> tuple[str, str]:
    """(state, start) of ``pid`` from /proc/PID/stat (fields 3 and 22: 'Z'
    for a zombie; the start in clock ticks since boot), or ('', '') where
    that cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return "", ""
    # The command name (field 2) may hold spaces and parentheses: the fields
    # after its closing parenthesis start at field 3.
    fields = stat[stat.rindex(b")") + 2:].split()
    return (fields[0].decode(), fields[19].decode()) if len(fields) > 19 else ("", "")


def _write_owner(target: Path) -> None:
    note = target.with_name(target.name + CLAIM_SUFFIX)
    tmp = note.with_name(f"{note.name}.{os.getpid()}.tmp")
    pid = os.getpid()
    tmp.write_text(f"{socket.gethostname()} {pid} {_process(pid)[1]}\n")
    os.rename(tmp, note)


def _owner_gone(note: Path) -> bool:
    """True when the claim's note names a process of this host that no
    longer runs (or whose pid now belongs to a process started later)."""
    try:
        host, pid, *start = note.read_text().split()
        pid = int(pid)
    except (OSError, ValueError):
        return False  # no note (yet), or unreadable: only the delay applies
    if host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it runs, as another user
    state, started = _process(pid)
    return state == "Z" or bool(start and started) and started != start[0]


def ingest(spool_dir: Path | None = None, limit: int = 1000, batch_rows: int | None = None) -> Result:
    """Claim and ingest what is waiting; the beat task and the command call this.

    Segments are claimed one at a time as the batch fills, so a claim is
    never older than one batch's work (``recover`` takes back a claim of a
    live worker only once it is older than IPR_STALE_CLAIM_SECONDS). A
    segment that does not parse is set aside as NAME.seg.bad, with the
    reason logged, and the others go on.
    """
    spool_dir = Path(spool_dir or settings.SPOOL_DIR)
    batch_rows = batch_rows or settings.INGEST_BATCH_ROWS
    result = Result()
    for name in recover(spool_dir):
        log.warning("segment %s: its worker died; claimed again", name)
    # On PostgreSQL, outside a caller's transaction, a thread stores one
    # batch while this one reads and sums the next (see _Writer).
    writer = _Writer(result) if connection.vendor == "postgresql" and not connection.in_atomic_block else None
    batch, size = [], 0
    try:
        for _ in range(limit):
            claimed = claim(spool_dir, 1)
            if not claimed:
                break
            path = claimed[0]
            try:
                rows = spool.read_segment(path)
            except FileNotFoundError:
                continue  # taken back by recover() elsewhere: its new claimant has it
            except spool.SpoolError as exc:
                bad = spool_dir / "incoming" / (path.name + ".bad")
                os.rename(path, bad)
                log.error("%s; set aside as %s, nothing of it ingested", exc, bad)
                result.bad += 1
                continue
            batch.append((path, rows))
            size += len(rows)
            if size >= batch_rows:
                writer.submit(batch) if writer else _ingest_batch(batch, result)
                batch, size = [], 0
        if batch:
            writer.submit(batch) if writer else _ingest_batch(batch, result)
    finally:
        if writer:
            writer.finish()
    return result


def _ingest_batch(batch: list[tuple[Path, np.ndarray]], result: Result) -> None:
    done = ingest_segments(batch)
    if done is not None:
        _count(batch, done, result)


def _count(batch, done: set[str], result: Result) -> None:
    for path, rows in batch:
        if path.name in done:
            result.segments += 1
            result.rows += len(rows)
        else:
            result.skipped += 1
            log.info("segment %s: ingested before; removed", path.name)
    result.batches += 1


def ingest_segments(batch: list[tuple[Path, np.ndarray]]) -> set[str] | None:
    """Add claimed segments (path, rows) to the archive in one transaction;
    the names that were new (the others had been ingested before), or None
    if the batch was left claimed (see :func:`_store`)."""
    return _store(batch, *_prepare(batch))


def _prepare(batch) -> tuple[set[str], Iterator[dict[str, Part]]]:
    """The names not recorded yet, and the archive rows of those segments,
    in parts summed as they are taken (:func:`summarise_parts`)."""
    names = [p.name for p, _ in batch]
    known = set(IngestedSegment.objects.filter(name__in=names).values_list("name", flat=True))
    rows = [r for p, r in batch if p.name not in known and len(r)]
    parts = summarise_parts(np.concatenate(rows) if len(rows) > 1 else rows[0]) if rows else iter(())
    return set(names) - known, parts


def _store(batch, expected: set[str], parts: Iterable[dict[str, Part]]) -> set[str] | None:
    """Record the batch and write its rows, part by part, in one transaction,
    then remove its files. Should a segment have been recorded since it was
    claimed (another worker holding a claim taken back too early), the
    transaction is rolled back and the files stay claimed, to be taken back
    and ingested again: nothing is counted twice. So it is too when the
    parts stop coming (the caller failed while summing them)."""
    try:
        with transaction.atomic():
            new = _record(batch)
            if new != expected:
                raise _Recorded(sorted(expected - new))
            late: set[int] = set()
            for part in parts:
                late |= write(part, derive=False)
            derive_hours(late)
    except _Recorded as exc:
        log.warning("segments %s were ingested by another worker meanwhile: this batch is left "
                    "claimed, to be taken back and ingested again", ", ".join(exc.args[0]))
        return None
    except _Abandoned:
        return None
    for path, _ in batch:
        path.unlink()
    return new


class _Writer:
    """Stores batches (:func:`_store`) in a thread of its own, with its own
    connection, in the order given, while the caller sums them: a batch's
    parts are handed over one by one as they are summed, so the thread
    stores one part while the caller sums the next (and a whole batch while
    the caller reads the next one). An error in the thread stops it and is
    raised in the caller.
    """

    def __init__(self, result: Result):
        self.result = result
        self.queue: queue.Queue = queue.Queue(maxsize=1)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="ipr-ingest-writer", daemon=True)
        self.thread.start()

    def submit(self, batch) -> None:
        expected, parts = _prepare(batch)
        channel: queue.Queue = queue.Queue()
        self._put((batch, expected, channel))
        try:
            for part in parts:
                channel.put(part)
                self._raise()
        except BaseException:
            channel.put(_ABANDON)
            raise
        channel.put(_END)

    def finish(self) -> None:
        while self.thread.is_alive():
            try:
                self.queue.put(None, timeout=0.5)
                break
            except queue.Full:
                continue
        self.thread.join()
        self._raise()

    def _put(self, item) -> None:
        while True:
            self._raise()
            try:
                self.queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def _raise(self) -> None:
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def _run(self) -> None:
        try:
            while (item := self.queue.get()) is not None:
                batch, expected, channel = item
                done = _store(batch, expected, _received(channel))
                if done is not None:
                    _count(batch, done, self.result)
        except BaseException as exc:  # raised in the caller
            self.error = exc
        finally:
            connection.close()


_END, _ABANDON = object(), object()


def _received(channel: queue.Queue) -> Iterator[dict[str, Part]]:
    """The parts put on ``channel``, until its end; _Abandoned if the caller
    gave up on the batch."""
    while (part := channel.get()) is not _END:
        if part is _ABANDON:
            raise _Abandoned()
        yield part


class _Abandoned(Exception):
    """The caller stopped summing a batch: its transaction is rolled back."""


class _Recorded(Exception):
    """Segments of a batch recorded by another worker after it was summed."""


def _record(batch) -> set[str]:
    """Record the segments as ingested, first, so that a second worker holding
    the same segment (a claim recovered too early) waits for this
    transaction and then finds the record; the names that were new."""
    table = IngestedSegment._meta.db_table
    now = datetime.now(tz.utc) if connection.vendor == "postgresql" else datetime.now(tz.utc).isoformat(" ")
    new = set()
    with connection.cursor() as cur:
        for path, rows in batch:
            cur.execute(f"INSERT INTO {table} (name, rows, bytes, at) VALUES (%s, %s, %s, %s) "
                        f"ON CONFLICT (name) DO NOTHING RETURNING name",
                        [path.name, len(rows), path.stat().st_size, now])
            if cur.fetchone():
                new.add(path.name)
    return new


# -- enrichment and sums ------------------------------------------------------

def _columns(rows: np.ndarray) -> list[np.ndarray]:
    """The summed measures of spool rows, in SUMS order: views, not copies."""
    status, hist = rows["status"], rows["rtt_hist"]
    out = []
    for col in tables.SUMS:
        if col.startswith("status_"):
            out.append(status[:, tables.STATUS_COLUMNS.index(col)])
        elif col.startswith("rtt_h"):
            out.append(hist[:, tables.HIST_COLUMNS.index(col)])
        else:
            out.append(rows[col])
    return out


@dataclass
class Part:
    """One table's rows from a batch: key columns (int64 arrays, text keys as
    ids into ``dims``), the measures (a row per measure, in SUMS order) and
    the least min RTT."""
    keys: dict[str, np.ndarray]
    sums: np.ndarray
    mins: np.ndarray
    dims: dict[str, list[str]]

    def __len__(self):
        return len(self.mins)


def _group(keys: dict[str, np.ndarray], sums: np.ndarray, mins: np.ndarray):
    """Sum ``sums`` (and take the least of ``mins``) per distinct key."""
    matrix = np.empty((len(mins), len(keys)), np.int64)
    for i, k in enumerate(keys.values()):
        matrix[:, i] = k
    order, starts = spool._group(matrix.view(np.uint64))
    groups = len(starts)
    ids = np.empty(len(mins), np.int64)
    ids[order] = np.repeat(np.arange(groups), np.diff(np.r_[starts, len(mins)]))
    first = order[starts]
    out_keys = {n: k[first] for n, k in keys.items()}
    return out_keys, _sum_by(ids, groups, sums), np.minimum.reduceat(mins[order], starts)


CHUNK = 1 << 20


BIGINT_MAX = np.iinfo(np.int64).max  # the archive's measures are PostgreSQL bigint


def _sum_by(ids: np.ndarray, groups: int, values) -> np.ndarray:
    """Exact per-group sums of each non-negative integer array in ``values``,
    saturating at BIGINT_MAX: a sum the archive's bigint columns cannot
    hold is stored as their maximum, never wrapped or negative.

    np.bincount sums in float64, exact below 2**53: at most 2**20 rows are
    summed at once, each below 2**32 (a column with a larger value is split
    into its low and high 32 bits), so every partial sum stays below 2**52. No sort or gather of the
    measures is needed, and strided views are read as they are.
    """
    out = np.zeros((len(values), groups), np.int64)
    for start in range(0, len(ids), CHUNK):
        part = ids[start:start + CHUNK]
        for i, column in enumerate(values):
            column = column[start:start + CHUNK]
            if column.dtype.itemsize <= 4 or column.max(initial=0) < 2 ** 32:  # one pass is exact
                sums = np.bincount(part, column, groups).astype(np.int64)
            else:
                column = column.astype(np.uint64, copy=False)
                low = np.bincount(part, column & np.uint64(0xFFFFFFFF), groups).astype(np.int64)
                high = np.bincount(part, column >> np.uint64(32), groups).astype(np.int64)
                high += low >> 32
                sums = np.where(high >= 2 ** 31, BIGINT_MAX, (high << 32) | (low & 0xFFFFFFFF))
            out[i] = np.where(out[i] > BIGINT_MAX - sums, BIGINT_MAX, out[i] + sums)
    return out


FEW = 8  # up to this many distinct values are found by comparing, not sorting


def _ids(values: np.ndarray, few: bool = False) -> tuple[list, np.ndarray]:
    """The distinct values and each value's index among them (``few``: there
    are usually at most FEW of them)."""
    if values.dtype.kind in "SU" and values.dtype.itemsize in (8, 16) and len(values):
        # Fixed-width text of one or two 64-bit words: find the distinct
        # words, not strings (two words are mixed into one and checked).
        words = np.ascontiguousarray(values).view(np.uint64).reshape(len(values), -1)
        key = words[:, 0] if words.shape[1] == 1 else spool._mix(words[:, 0] ^ spool._mix(words[:, 1]))
        first, ids = _few(key) if few else (None, None)
        if first is None:
            _, first, ids = np.unique(key, return_index=True, return_inverse=True)
            ids = ids.ravel().astype(np.int64)
        if words.shape[1] == 1 or (words == words[first][ids]).all():
            return values[first].tolist(), ids
    uniq, inverse = np.unique(values, return_inverse=True)
    return uniq.tolist(), inverse.astype(np.int64).ravel()


def _few(key: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(first index of each distinct value, each key's index among them) when
    there are at most FEW distinct values (traffic types: a handful per
    segment), found with one comparison pass per value instead of a sort;
    (None, None) when there are more."""
    ids = np.zeros(len(key), np.int64)
    left = np.ones(len(key), bool)
    first = []
    at = 0
    while len(first) < FEW:
        first.append(at)
        same = key == key[at]
        ids[same] = len(first) - 1
        left &= ~same
        rest = np.flatnonzero(left[at:])
        if not len(rest):
            return np.array(first), ids
        at += int(rest[0])
    return None, None


def window_start(now: datetime | None = None) -> int:
    """The first minute (Unix minutes) of the hours the window holds whole.

    Traffic of an hour from here on is added to the per-minute window and
    archived hourly from it; older traffic is added to the hourly tables
    directly, as the window may no longer hold the rest of its hour. The
    margin keeps this well inside what retention leaves in the window.
    """
    now = now or datetime.now(tz.utc)
    keep = settings.KEEP_CURRENT_HOURS * 60
    first = int(now.timestamp() // 60) - keep + min(360, keep // 4)
    return -(-first // 60) * 60  # the next whole hour


# A batch is summed and stored in parts of about this many spool rows (at
# most MAX_PARTS), so that the writer stores one while the next is summed.
PART_ROWS = 50_000
MAX_PARTS = 8


def summarise(rows: np.ndarray, now: datetime | None = None) -> dict[str, Part]:
    """Rows for the archive tables from a batch of spool rows: the window's,
    and the hourly tables' for traffic older than the window."""
    return next(summarise_parts(rows, now, parts=1))


def summarise_parts(rows: np.ndarray, now: datetime | None = None,
                    parts: int | None = None) -> Iterator[dict[str, Part]]:
    """:func:`summarise`'s rows in ``parts`` parts (one per PART_ROWS spool
    rows by default) that share no key of the window or of the hourly
    prefix table: each route's rows are in one part. The lookups are done
    for the whole batch first; each part is then grouped and summed as it
    is taken."""
    res = resolver()
    got = res.resolve(rows["client"], rows["server"])
    router = np.where(got.router_id < 0, 0, got.router_id)
    head = np.frombuffer(rows["client"].tobytes(), np.uint8).reshape(-1, 16)[:, :12]
    is_v4 = (head == np.frombuffer(MAPPED, np.uint8)).all(axis=1)
    # A route is named by (router, best-route number); unrouted ones by
    # family, special-purpose ones by block (see _pack_pair).
    route = np.where(got.route < 0, np.where(is_v4, -1, -2), got.route)
    route = np.where(got.special >= 0, -3 - got.special, route)
    types, type_id = _ids(rows["traffic_type"], few=True)
    countries, country_id = _ids(got.country)
    dims = {"traffic_type": [t.rstrip(b"\0").decode("ascii", "replace") for t in types],
            "country": countries}
    no_min = rows["min_rtt_us"] == spool.NO_MIN_RTT
    mins = np.where(no_min, NONE, rows["min_rtt_us"].astype(np.int64))
    keys = {"minute": rows["minute"].astype(np.int64), "router_id": router, "traffic_type": type_id,
            "route": route, "origin_as": np.maximum(got.origin_as, 0),
            "neighbor_as": np.maximum(got.neighbor_as, 0), "country": country_id}
    columns = _columns(rows)
    parts = parts or min(MAX_PARTS, max(1, len(rows) // PART_ROWS))
    if parts == 1:
        yield _summarised(res, keys, columns, mins, dims, now)
        return
    with np.errstate(over="ignore"):
        which = (spool._mix(_pack_pair(router, route).view(np.uint64)) % np.uint64(parts)).astype(np.int64)
    order = np.argsort(which, kind="stable")
    bounds = np.searchsorted(which[order], np.arange(parts + 1))
    for p in range(parts):
        sel = order[bounds[p]:bounds[p + 1]]
        if len(sel):
            yield _summarised(res, {k: v[sel] for k, v in keys.items()}, [c[sel] for c in columns],
                              mins[sel], dims, now)


def _summarised(res, keys: dict[str, np.ndarray], columns: list[np.ndarray], mins: np.ndarray,
                dims: dict, now: datetime | None) -> dict[str, Part]:
    """Group and sum enriched spool rows (per-row keys, measure columns,
    min RTTs) into the tables' rows."""
    dims = dict(dims)
    mk, ms, mmin = _group(keys, columns, mins)
    # Prefix and AS path texts of the routes these rows reached.
    packed, pair_of = np.unique(_pack_pair(mk["router_id"], mk["route"]), return_inverse=True)
    pairs = np.stack([packed >> 33, (packed & ((1 << 33) - 1)) - ROUTE_OFFSET], axis=1)
    pair_of = pair_of.ravel()
    dims["prefix"], path_ids = _route_keys(res, pairs, text=connection.vendor != "postgresql")
    dims["as_path"] = AS_PATHS
    mk["prefix"], mk["as_path"] = pair_of, path_ids[pair_of]

    def part(k, s, mn, columns, rename=None):
        return Part({(rename or {}).get(c, c): k[c] for c in columns}, s, mn, dims)

    recent = mk["minute"] >= window_start(now)
    out = {}
    if recent.all():
        out["traffic_current"] = part(mk, ms, mmin, ["minute"] + tables.key_columns("traffic_current")[1:])
        return out
    if recent.any():
        sel = {c: v[recent] for c, v in mk.items()}
        out["traffic_current"] = part(sel, ms[:, recent], mmin[recent],
                                      ["minute"] + tables.key_columns("traffic_current")[1:])
    old = ~recent
    hour_keys = {c: v[old] for c, v in mk.items() if c != "route"}
    hour_keys["minute"] = hour_keys["minute"] // 60 * 60
    hk, hs, hmin = _group(hour_keys, ms[:, old], mmin[old])
    for name, source in tables.HOURLY_SOURCES.items():
        base = ["minute", "router_id", "traffic_type"] + source
        k, sums, least = _group({c: hk[c] for c in base}, hs, hmin)
        out[name] = part(k, sums, least, base, dict(zip(source, tables.key_columns(name)[3:])))
    return out


# Route numbers below 0: -1 and -2 the unrouted IPv4 and IPv6 addresses,
# -3 - i the special-purpose block i (ipr.routing.special.BLOCKS).
ROUTE_OFFSET = 2 + len(special.BLOCKS)


def _pack_pair(routers: np.ndarray, routes: np.ndarray) -> np.ndarray:
    """(router, route) as one sortable int64 (routes from -ROUTE_OFFSET)."""
    return routers * (1 << 33) + (routes + ROUTE_OFFSET)


def _pair_ids(pairs: np.ndarray, routers: np.ndarray, routes: np.ndarray) -> np.ndarray:
    """Index in ``pairs`` (sorted unique (router, route) rows) of each pair."""
    return np.searchsorted(_pack_pair(pairs[:, 0], pairs[:, 1]), _pack_pair(routers, routes))


def _route_keys(res, pairs: np.ndarray, text: bool):
    """Per (router, route) pair: its prefix (texts, or as arrays for a binary
    COPY: is IPv6, length, address) and its AS path's id in AS_PATHS."""
    n = len(pairs)
    path_ids = np.zeros(n, np.int64)
    prefixes = [""] * n if text else None
    is_v6 = pairs[:, 1] == -2  # the unrouted: 0.0.0.0/0 and ::/0
    bits = np.zeros(n, np.uint8)
    addr = np.zeros((n, 16), np.uint8)
    own = np.flatnonzero(pairs[:, 1] <= -3)  # special-purpose blocks
    blocks = -3 - pairs[own, 1]
    if text:
        for i, b in zip(own.tolist(), blocks.tolist()):
            prefixes[i] = special.BLOCKS[b][0]
    elif len(own):
        is_v6[own], bits[own], addr[own] = special.networks(blocks)
    for router in np.unique(pairs[:, 0]).tolist():
        sel = np.flatnonzero((pairs[:, 0] == router) & (pairs[:, 1] >= 0))
        if not len(sel):
            continue
        table = res.tables[router]
        routes = pairs[sel, 1]
        path_ids[sel] = table.path_ids(routes)
        if text:
            for i, prefix in zip(sel.tolist(), table.prefixes(routes.tolist())):
                prefixes[i] = prefix
        else:
            is_v6[sel], bits[sel], addr[sel] = table.engine.networks(routes)
    if text:
        for i in np.flatnonzero((pairs[:, 1] < 0) & (pairs[:, 1] >= -2)).tolist():
            prefixes[i] = "0.0.0.0/0" if pairs[i, 1] == -1 else "::/0"
        return prefixes, path_ids
    return pgcopy.cidr(is_v6, bits, addr), path_ids


# -- writing -----------------------------------------------------------------

def write(parts: dict[str, Part], derive: bool = True) -> set[int]:
    """Add every table's rows, in the caller's transaction, and mark the
    hours (of the window) and days (of the hourly tables) they change as
    pending for the hourly archive and the daily rollup. Returns the hours
    (as minutes) that rows were added to straight, as late traffic; their
    coarse tables are computed again unless ``derive`` is False (a batch
    written in parts does it once, after its last: :func:`derive_hours`)."""
    from ipr.traffic import rollup

    pg = connection.vendor == "postgresql"
    dims = next((p.dims for p in parts.values()), None)
    if dims is None:
        return set()
    window = parts.get("traffic_current")
    if window is not None and len(window):
        rollup.mark("hour", {_stamp(m) for m in np.unique(window.keys["minute"] // 60 * 60).tolist()})
    direct = {m for name, p in parts.items() if name != "traffic_current" for m in np.unique(p.keys["minute"]).tolist()}
    if direct:
        # An hour still waiting for its archive from the window would replace
        # what is added here: archive it now, first.
        rollup.archive_pending(hours=[_stamp(m) for m in sorted(direct)])
        rollup.mark("day", {_stamp(m // 1440 * 1440) for m in direct})
    if pg:
        _copy_parts(parts, dims)
    else:
        _insert_parts(parts, dims)
    if derive:
        derive_hours(direct)
    return direct


def derive_hours(hours: set[int]) -> None:
    """Compute again the coarse tables (sums of the others) of these hours
    (as minutes), in the caller's transaction."""
    from ipr.traffic import rollup
    for m in sorted(hours):
        rollup.derive("hour", _stamp(m), _stamp(m + 60))


def _insert_parts(parts: dict[str, Part], dims: dict) -> None:
    """SQLite: each table's rows through a staged temporary table."""
    _stage_dimensions(dims)
    for name, part in parts.items():
        if not len(part):
            continue
        minutes = part.keys["minute"]
        staged = f"staged_{name}"
        columns = tables.staged_columns(name)
        with connection.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {staged}")
            cur.execute(f"CREATE TEMP TABLE {staged} ({', '.join(columns)})")
            values = [part.keys[c] for c in tables.key_columns(name)[1:]]
            mins = np.where(part.mins == NONE, -1, part.mins)
            stamps = {m: _stamp(m) for m in np.unique(minutes).tolist()}
            head = [[stamps[m] for m in minutes.tolist()]] + [v.tolist() for v in values]
            cols = head + part.sums.tolist() + [mins.tolist()]
            marks = ", ".join(["%s"] * len(columns))
            cur.executemany(f"INSERT INTO {staged} VALUES ({marks})", list(zip(*cols)))
            cur.execute(tables.insert_sql(name, staged))
            cur.execute(f"DROP TABLE {staged}")


def _copy_parts(parts: dict[str, Part], dims: dict) -> None:
    """PostgreSQL: each table's rows in one binary COPY, text keys and all."""
    distinct = {"traffic_type": pgcopy.texts(dims["traffic_type"]), "country": pgcopy.texts(dims["country"]),
                "as_path": _path_texts(dims["as_path"]), "prefix": dims["prefix"]}
    with connection.cursor() as cur:
        for name, part in parts.items():
            if not len(part):
                continue
            minutes = part.keys["minute"]
            held = set(tables.ensure_partitions(name, {_stamp(m) for m in np.unique(minutes).tolist()}).values())
            # Rows of one partition (a minute's segment, of one hour) go
            # straight into it, without PostgreSQL routing each row.
            target = held.pop() if len(held) == 1 else name
            keys = tables.key_columns(name)
            columns = [pgcopy.timestamptz(minutes * 60)]
            for col in keys[1:]:
                ids = part.keys[col]
                columns.append(pgcopy.take(distinct[col], ids) if col in distinct else pgcopy.int8(ids))
            columns += [pgcopy.int8(row) for row in part.sums]
            columns.append(pgcopy.int8(part.mins, null=part.mins == NONE))
            pgcopy.copy(cur.cursor, target, keys + tables.MEASURES, columns)


_path_column: tuple = (0, None)


def _path_texts(paths: list[str]):
    """The AS paths as a COPY column, made again only when paths were added
    (the list only grows)."""
    global _path_column
    if _path_column[0] != len(paths):
        _path_column = (len(paths), pgcopy.texts(paths))
    return _path_column[1]


def _stage_dimensions(dims: dict[str, list[str]]) -> None:
    """SQLite: each text key's distinct values, by id, to join when appending."""
    with connection.cursor() as cur:
        for column, staged in tables.DIMENSIONS.items():
            cur.execute(f"DROP TABLE IF EXISTS {staged}")
            cur.execute(f"CREATE TEMP TABLE {staged} (id integer PRIMARY KEY, value text)")
            cur.executemany(f"INSERT INTO {staged} VALUES (%s, %s)", list(enumerate(dims.get(column, []))))


def _stamp(minutes: int) -> str:
    return datetime.fromtimestamp(minutes * 60, tz.utc).strftime("%Y-%m-%d %H:%M:%S+00:00")
