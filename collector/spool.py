"""Spool: the collector's durable output and the aggregation's input.

docs/spool-format.md is the specification. In short: a spool directory has

    open/        segments a collector worker is appending to
    incoming/    closed segments, ready to be claimed (renamed) by the aggregation
    processing/  segments the aggregation has claimed
    state/       replay-protection state of each worker
    metrics/     Prometheus multiprocess files (wiped at start)

A segment is a 32-byte file header followed by blocks. Each block is one
flush: a 24-byte block header (with a CRC-32 of its rows) and ``count``
fixed-size little-endian rows, one per minute x server x client x type seen
since the previous flush. A block is written whole and fsynced; a crash can
leave only a torn last block, which ``read_segment`` ignores and
``recover_open`` cuts off.
"""
from __future__ import annotations

import ctypes
import json
import os
import struct
import sys
import zlib
from pathlib import Path

import numpy as np

from ipr_agent import wire

FILE_MAGIC = b"IPRSPOOL"
FILE_VERSION = 1
FILE_HEADER = struct.Struct("<8sIIQII")  # magic, version, row size, created ms, worker, reserved
BLOCK_MAGIC = b"BLK1"
BLOCK_HEADER = struct.Struct("<4sIIIQ")  # magic, row count, crc32 of rows, reserved, flush ms

# Upper bounds (µs) of the RTT histogram buckets; the last bucket is open.
RTT_EDGES_US = (1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000,
                200_000, 500_000, 1_000_000, 2_000_000)
RTT_BUCKETS = len(RTT_EDGES_US) + 1
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "other")
NO_MIN_RTT = 0xFFFFFFFF

# One record as it arrives (see ipr_agent.wire.RECORD): big-endian.
RAW = np.dtype([
    ("client", "V16"), ("server", "V16"), ("type", "V16"),
    ("port", ">u2"), ("status", ">u2"), ("flags", ">u2"), ("httpv", "u1"),
    ("_r1", "u1"), ("requests", ">u4"), ("duration_us", ">u4"),
    ("response_bytes", ">u8"), ("wire_bytes", ">u8"), ("retrans_bytes", ">u8"),
    ("data_segs", ">u4"), ("retrans_segs", ">u4"), ("rtt_us", ">u4"),
    ("rttvar_us", ">u4"), ("min_rtt_us", ">u4"), ("_r2", ">u4"),
    ("delivery_rate", ">u8"),
])
assert RAW.itemsize == wire.RECORD_SIZE

# One spool row: little-endian, packed, in this order.
ROW = np.dtype([
    ("minute", "<u4"),             # Unix time // 60 of the datagrams' timestamps
    ("client", "V16"),             # address, IPv4 as ::ffff:a.b.c.d
    ("server", "V16"),
    ("traffic_type", "S16"),       # NUL-padded ASCII
    ("records", "<u4"),            # agent records summed into this row
    ("connections", "<u4"),        # records flagged as a connection's first request
    ("requests", "<u8"),
    ("status", "<u4", (6,)),       # requests per class 1xx..5xx, other
    ("response_bytes", "<u8"),
    ("wire_bytes", "<u8"),         # over bytes_records
    ("retrans_bytes", "<u8"),      # over bytes_records
    ("data_segs", "<u8"),          # over segs_records
    ("retrans_segs", "<u8"),       # over tcpinfo_records
    ("tcpinfo_records", "<u4"),    # records carrying rtt and retransmits
    ("segs_records", "<u4"),       # records carrying data segments and min RTT
    ("bytes_records", "<u4"),      # records carrying wire and retransmitted bytes
    ("rate_records", "<u4"),       # records carrying a delivery rate
    ("rtt_sum_us", "<u8"),         # over tcpinfo_records
    ("rtt_hist", "<u4", (RTT_BUCKETS,)),
    ("min_rtt_us", "<u4"),         # minimum over segs_records; NO_MIN_RTT if none
    ("rate_sum", "<u8"),           # bytes/s, over rate_records
    ("duration_sum_us", "<u8"),
])
SUM_FIELDS = ("records", "connections", "requests", "status", "response_bytes",
              "wire_bytes", "retrans_bytes", "data_segs", "retrans_segs",
              "tcpinfo_records", "segs_records", "bytes_records",
              "rate_records", "rtt_sum_us", "rtt_hist", "rate_sum",
              "duration_sum_us")


U32_MAX = np.uint64(0xFFFF_FFFF)
U64_MAX = np.uint64(0xFFFF_FFFF_FFFF_FFFF)


def column_max(name: str) -> np.uint64:
    """The largest value a row's field holds: where its sums saturate."""
    return np.uint64(np.iinfo(ROW[name].base).max)


def _sum_at(values: np.ndarray, starts: np.ndarray, limit: np.uint64 = U64_MAX) -> np.ndarray:
    """Per-group sums (groups begin at ``starts``) of non-negative integers,
    as uint64, none above ``limit``: a sum too big for its field saturates
    at the field's maximum instead of wrapping.

    Values of 32 bits or less cannot overflow a 64-bit sum (fewer than 2**32
    of them). 64-bit values can: unless the largest times their number fits,
    the high and low 32-bit halves are summed apart, each exactly, and any
    sum that reaches 2**64 is set to the maximum.
    """
    if values.dtype.itemsize < 8:
        sums = np.add.reduceat(values.astype(np.uint64), starts, axis=0)
        return sums if limit == U64_MAX else np.minimum(sums, limit)
    values = values.astype(np.uint64, copy=False)
    if int(values.max(initial=0)) * len(values) <= int(limit):  # the usual case: no sum can overflow
        return np.add.reduceat(values, starts, axis=0)
    high = np.add.reduceat(values >> np.uint64(32), starts, axis=0)
    low = np.add.reduceat(values & U32_MAX, starts, axis=0)
    high += low >> np.uint64(32)
    sums = (high << np.uint64(32)) | (low & U32_MAX)
    sums[high > U32_MAX] = U64_MAX
    return np.minimum(sums, limit)


class SpoolError(ValueError):
    """A segment that does not parse: names the file and the byte offset."""


def _mix(a: np.ndarray) -> np.ndarray:
    # splitmix64 finaliser: spreads key bits so one u64 stands for the key.
    a = (a ^ (a >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    a = (a ^ (a >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return a ^ (a >> np.uint64(31))


def _group(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort order and group starts for rows of a (n, k) uint64 key matrix.

    Sorts on a 64-bit hash of the key (one column sorts far faster than k),
    then checks every row against its group's first row; on a collision,
    which is never expected, it falls back to sorting on the full key.
    """
    with np.errstate(over="ignore"):
        h = np.zeros(len(keys), np.uint64)
        for col in keys.T:
            h = _mix(h ^ col)
    order = np.argsort(h, kind="stable")
    sk = keys[order]
    hs = h[order]
    starts = np.flatnonzero(np.r_[True, hs[1:] != hs[:-1]])
    first = np.repeat(starts, np.diff(np.r_[starts, len(sk)]))
    if not (sk == sk[first]).all():
        order = np.lexsort(keys.T[::-1])
        sk = keys[order]
        starts = np.flatnonzero(np.r_[True, (sk[1:] != sk[:-1]).any(axis=1)])
    return order, starts


def aggregate(records: bytes | bytearray | memoryview, minutes: np.ndarray) -> np.ndarray:
    """Sum raw wire records into spool rows, one per minute x server x client x type.

    ``records`` holds n packed wire records, ``minutes`` their n minutes.
    """
    raw = np.frombuffer(records, RAW)
    n = len(raw)
    if n == 0:
        return np.zeros(0, ROW)
    # Key: minute, then client, server, type as six u64 words (byte order
    # is irrelevant for equality).
    key_bytes = np.frombuffer(records, np.uint8).reshape(n, wire.RECORD_SIZE)[:, :48]
    keys = np.empty((n, 7), np.uint64)
    keys[:, 0] = minutes
    keys[:, 1:] = np.ascontiguousarray(key_bytes).view(np.uint64)
    order, starts = _group(keys)
    raw = raw[order]
    groups = len(starts)
    gid = np.repeat(np.arange(groups), np.diff(np.r_[starts, n]))

    flags = raw["flags"].astype(np.uint32)
    tcpinfo = (flags & wire.F_TCPINFO) != 0
    segs = (flags & wire.F_TCPINFO_SEGS) != 0
    sent = (flags & wire.F_BYTES_SENT) != 0
    rate = (flags & wire.F_DELIVERY_RATE) != 0
    requests = raw["requests"].astype(np.uint64)

    rows = np.zeros(groups, ROW)

    def put(name, values, mask=None):
        # Every sum saturates at its field's maximum (see _sum_at).
        values = values.astype(values.dtype.newbyteorder("="))
        if mask is not None:
            values = np.where(mask, values, values.dtype.type(0))
        rows[name] = _sum_at(values, starts, column_max(name))

    rows["minute"] = minutes[order][starts]
    rows["client"] = raw["client"][starts]
    rows["server"] = raw["server"][starts]
    rows["traffic_type"] = raw["type"][starts].view("S16")
    rows["records"] = np.minimum(np.bincount(gid, minlength=groups), U32_MAX)
    put("connections", flags & wire.F_NEW_CONNECTION != 0)
    put("requests", requests)
    status_class = np.minimum(raw["status"] // 100, 6).astype(np.int64) - 1
    status_class[status_class < 0] = 5
    rows["status"] = np.minimum(_bincount2(gid, status_class, groups, 6, requests), U32_MAX)
    put("response_bytes", raw["response_bytes"])
    put("wire_bytes", raw["wire_bytes"], sent)
    put("retrans_bytes", raw["retrans_bytes"], sent)
    put("data_segs", raw["data_segs"], segs)
    put("retrans_segs", raw["retrans_segs"], tcpinfo)
    put("tcpinfo_records", tcpinfo)
    put("segs_records", segs)
    put("bytes_records", sent)
    put("rate_records", rate)
    put("rtt_sum_us", raw["rtt_us"], tcpinfo)
    bucket = np.searchsorted(np.array(RTT_EDGES_US), raw["rtt_us"].astype(np.int64), side="right")
    rows["rtt_hist"] = np.minimum(_bincount2(gid[tcpinfo], bucket[tcpinfo], groups, RTT_BUCKETS), U32_MAX)
    min_rtt = np.where(segs, raw["min_rtt_us"].astype(np.uint32), np.uint32(NO_MIN_RTT))
    rows["min_rtt_us"] = np.minimum.reduceat(min_rtt, starts)
    put("rate_sum", raw["delivery_rate"], rate)
    put("duration_sum_us", raw["duration_us"])
    return rows


def _bincount2(gid, col, groups, width, weights=None):
    """Per-group counts (or weighted sums) of a small categorical column."""
    flat = gid.astype(np.int64) * width + col
    if weights is None:
        counts = np.bincount(flat, minlength=groups * width)
    else:  # integer weights: sum them exactly, not through float64
        counts = np.zeros(groups * width, np.uint64)
        np.add.at(counts, flat, weights)
    return counts.reshape(groups, width)


def merge(rows: np.ndarray) -> np.ndarray:
    """Merge rows with the same minute x server x client x type into one."""
    if len(rows) == 0:
        return rows
    n = len(rows)
    keys = np.empty((n, 7), np.uint64)
    keys[:, 0] = rows["minute"]
    packed = np.empty((n, 48), np.uint8)
    for i, name in enumerate(("client", "server", "traffic_type")):
        packed[:, 16 * i:16 * i + 16] = np.ascontiguousarray(rows[name]).view(np.uint8).reshape(n, 16)
    keys[:, 1:] = packed.view(np.uint64)
    order, starts = _group(keys)
    rows = rows[order]
    out = rows[starts].copy()
    for name in SUM_FIELDS:  # saturating at each field's maximum, never wrapping
        out[name] = _sum_at(rows[name], starts, column_max(name))
    out["min_rtt_us"] = np.minimum.reduceat(rows["min_rtt_us"], starts)
    return out


class SegmentWriter:
    """Appends flush blocks to one open segment; closes it into incoming/."""

    def __init__(self, spool_dir: Path, name: str, worker: int, now_ms: int):
        self.spool_dir = Path(spool_dir)
        self.path = self.spool_dir / "open" / name
        self.created_ms = now_ms
        self.rows_written = 0
        self.file = open(self.path, "xb")
        self.file.write(FILE_HEADER.pack(FILE_MAGIC, FILE_VERSION, ROW.itemsize, now_ms, worker, 0))
        self.size = FILE_HEADER.size
        self._sync()
        fsync_dir(self.path.parent)

    def append(self, rows: np.ndarray, now_ms: int) -> None:
        """Write one block and fsync it; on failure leave the file as it was."""
        body = rows.tobytes()
        block = BLOCK_HEADER.pack(BLOCK_MAGIC, len(rows), zlib.crc32(body), 0, now_ms) + body
        try:
            self.file.write(block)
            self._sync()
        except OSError:
            # Cut a partial block so the next append starts on a boundary.
            self.file.truncate(self.size)
            self.file.seek(self.size)
            raise
        self.size += len(block)
        self.rows_written += len(rows)

    def close(self) -> Path | None:
        """Close the segment and move it to incoming/ (or drop it if empty)."""
        self.file.close()
        if self.rows_written == 0:
            self.path.unlink()
            return None
        target = self.spool_dir / "incoming" / self.path.name
        os.rename(self.path, target)
        fsync_dir(target.parent)
        return target

    def _sync(self):
        self.file.flush()
        os.fsync(self.file.fileno())


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(spool_dir: Path) -> None:
    for sub in ("open", "incoming", "processing", "state"):
        (Path(spool_dir) / sub).mkdir(parents=True, exist_ok=True)


def scan_segment(data: bytes, name: str = "<segment>") -> tuple[list[np.ndarray], int, str | None]:
    """Parse a segment: (row arrays per block, bytes of valid prefix, tail problem).

    A problem in a complete block before the end raises SpoolError; an
    incomplete or corrupt last block is reported as the tail problem,
    since only a crash mid-flush leaves one.
    """
    if len(data) < FILE_HEADER.size:
        return [], 0, f"{name}: file header cut at byte {len(data)}"
    magic, version, row_size, _created, _worker, _r = FILE_HEADER.unpack_from(data)
    if magic != FILE_MAGIC:
        raise SpoolError(f"{name}: not a spool segment (bad magic at byte 0)")
    if version != FILE_VERSION:
        raise SpoolError(f"{name}: unsupported segment version {version} at byte {len(FILE_MAGIC)}")
    if row_size != ROW.itemsize:
        raise SpoolError(f"{name}: row size {row_size} at byte {len(FILE_MAGIC) + 4} "
                         f"is not version {FILE_VERSION}'s {ROW.itemsize}")
    blocks, offset = [], FILE_HEADER.size
    view = memoryview(data)  # the CRC reads each block in place
    while offset < len(data):
        if len(data) - offset < BLOCK_HEADER.size:
            return blocks, offset, f"{name}: block header cut at byte {offset}"
        bmagic, count, crc, _r, _ms = BLOCK_HEADER.unpack_from(data, offset)
        end = offset + BLOCK_HEADER.size + count * ROW.itemsize
        problem = None
        if bmagic != BLOCK_MAGIC:
            problem = f"{name}: bad block magic at byte {offset}"
        elif end > len(data):
            problem = f"{name}: block at byte {offset} cut short ({len(data) - offset} of {end - offset} bytes)"
        elif zlib.crc32(view[offset + BLOCK_HEADER.size:end]) != crc:
            problem = f"{name}: block at byte {offset} fails its CRC"
        if problem:
            if end >= len(data):
                return blocks, offset, problem
            raise SpoolError(problem)
        blocks.append(np.frombuffer(data, ROW, count, offset + BLOCK_HEADER.size))
        offset = end
    return blocks, offset, None


def read_segment(path: Path) -> np.ndarray:
    """All rows of a segment (a torn last block, left by a crash, is skipped).

    The file is read into one numpy buffer, checked block by block, and its
    blocks' rows are then moved together in place (over the block headers),
    so the rows are one array without a second copy of the file.
    """
    path = Path(path)
    with open(path, "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        buf = np.empty(size, np.uint8)
        view, got = memoryview(buf), 0
        while got < size and (n := f.readinto(view[got:])):
            got += n
    blocks, _valid, _tail = scan_segment(view[:got], str(path))
    if not blocks:
        return np.zeros(0, ROW)
    base, at = buf.ctypes.data, 0
    for block in blocks:
        start = block.ctypes.data - base
        if start != at:
            ctypes.memmove(base + at, base + start, block.nbytes)
        at += block.nbytes
    return np.frombuffer(buf, ROW, at // ROW.itemsize)


def recover_open(spool_dir: Path, prefix: str = "") -> list[str]:
    """Move segments left in open/ by a stopped collector (or, with
    ``prefix``, by the one dead worker whose segment names start with it)
    to incoming/.

    A torn last block is cut off (it was never acknowledged as flushed).
    Returns one line per segment saying what was done.
    """
    spool_dir = Path(spool_dir)
    notes = []
    for path in sorted((spool_dir / "open").iterdir()):
        if not path.name.startswith(prefix):
            continue
        data = path.read_bytes()
        try:
            blocks, valid, tail = scan_segment(data, str(path))
        except SpoolError as exc:
            target = spool_dir / "incoming" / (path.name + ".bad")
            os.rename(path, target)
            notes.append(f"{exc}; kept as {target.name} for inspection")
            continue
        if tail:
            with open(path, "r+b") as f:
                f.truncate(valid)
                os.fsync(f.fileno())
            notes.append(f"{tail}: cut to {valid} bytes")
        if not blocks or sum(len(b) for b in blocks) == 0:
            path.unlink()
            notes.append(f"{path.name}: empty, removed")
            continue
        os.rename(path, spool_dir / "incoming" / path.name)
        notes.append(f"{path.name}: recovered {sum(len(b) for b in blocks)} rows")
    if notes:
        fsync_dir(spool_dir / "incoming")
    return notes


def status(spool_dir: Path, now: float, stale_after: float | None = None) -> dict:
    """Per spool directory, its segments (``*.seg``): how many, their bytes
    and the oldest's age in seconds (None with none). Also ``bad``, the
    segments set aside as ``.seg.bad`` for a person to inspect, and with
    ``stale_after``, ``stale_claims``: the claims in processing/ older than
    that (a segment's mtime there is its claim).
    """
    out = {"bad": 0, "stale_claims": 0}
    for sub in ("open", "incoming", "processing"):
        count = size = 0
        oldest = None
        for entry in os.scandir(Path(spool_dir) / sub):
            if entry.name.endswith(".seg.bad"):
                out["bad"] += 1
                continue
            if not entry.name.endswith(".seg"):
                continue
            try:
                st = entry.stat()
            except FileNotFoundError:  # claimed or ingested meanwhile
                continue
            count += 1
            size += st.st_size
            oldest = st.st_mtime if oldest is None else min(oldest, st.st_mtime)
            if sub == "processing" and stale_after is not None and now - st.st_mtime > stale_after:
                out["stale_claims"] += 1
        out[sub] = {"segments": count, "bytes": size,
                    "oldest_age": round(now - oldest, 1) if oldest is not None else None}
    return out


def row_dicts(rows: np.ndarray) -> list[dict]:
    """Rows as plain dicts with text addresses (for tools, tests, the demo)."""
    out = []
    for r in rows:
        d = {name: r[name].tolist() for name in ROW.names}
        d["client"] = wire.unpack_address(bytes(r["client"]))
        d["server"] = wire.unpack_address(bytes(r["server"]))
        d["traffic_type"] = wire.unpack_type(bytes(r["traffic_type"]))
        d["status"] = dict(zip(STATUS_CLASSES, d["status"]))
        out.append(d)
    return out


def read_dir(spool_dir: Path, subdirs=("incoming",)) -> np.ndarray:
    # *.seg only: a segment recovery set aside as NAME.seg.bad is for a person to inspect.
    arrays = [read_segment(p) for sub in subdirs
              for p in sorted((Path(spool_dir) / sub).glob("*.seg"))]
    return np.concatenate(arrays) if arrays else np.zeros(0, ROW)


def main(argv: list[str]) -> int:
    """``python -m collector.spool dump FILE|DIR...`` prints rows as JSON lines;
    ``summary DIR`` prints totals per client and traffic type."""
    if len(argv) < 2 or argv[0] not in ("dump", "summary"):
        print(main.__doc__, file=sys.stderr)
        return 2
    paths = [Path(p) for p in argv[1:]]
    try:
        arrays = [read_dir(p, ("incoming", "processing")) if p.is_dir() else read_segment(p)
                  for p in paths]
    except (OSError, SpoolError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    rows = np.concatenate(arrays) if arrays else np.zeros(0, ROW)
    if argv[0] == "dump":
        for d in row_dicts(rows):
            print(json.dumps(d))
        return 0
    by_client = rows.copy()
    by_client["minute"] = 0
    by_client["server"] = b"\0" * 16
    merged = merge(by_client)
    print(f"{len(rows)} spool rows; per client and traffic type:")
    print(f"{'client':<40} {'type':<10} {'requests':>8} {'bytes':>12} {'retr.segs':>9} {'avg rtt':>9}")
    for d in sorted(row_dicts(merged), key=lambda d: -d["response_bytes"])[:40]:
        rtt = d["rtt_sum_us"] / d["tcpinfo_records"] / 1000 if d["tcpinfo_records"] else float("nan")
        print(f"{d['client']:<40} {d['traffic_type']:<10} {d['requests']:>8} "
              f"{d['response_bytes']:>12} {d['retrans_segs']:>9} {rtt:>7.2f}ms")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
