"""Rows for PostgreSQL's binary COPY, built by numpy a column at a time.

The binary format is, per row, a 16-bit field count and per field a 32-bit
length (-1: NULL) and that many bytes, all big-endian. Each column here is
a (lengths, bytes) pair: a (n,) int32 array and an (n, width) uint8 matrix
whose first ``length`` bytes of each row are the value. No Python runs per
row: see :func:`encode`.
"""
from __future__ import annotations

import struct

import numpy as np

HEADER = b"PGCOPY\n\xff\r\n\0" + struct.pack(">ii", 0, 0)
TRAILER = struct.pack(">h", -1)
PG_EPOCH = 946_684_800   # 2000-01-01 UTC, where PostgreSQL's timestamps count from
CHUNK = 100_000          # rows encoded at once (bounds the matrices' memory)


class Int8:
    """A bigint column (NULL where ``null``): kept as numbers until encoded."""

    def __init__(self, values: np.ndarray, null: np.ndarray | None = None):
        self.values = np.asarray(values, dtype=np.int64)
        self.null = null if null is not None and null.any() else None

    def __len__(self):
        return len(self.values)

    def __getitem__(self, sl):
        return Int8(self.values[sl], None if self.null is None else self.null[sl])

    def as_bytes(self):
        lengths = np.full(len(self.values), 8, np.int32)
        if self.null is not None:
            lengths[self.null] = -1
        return lengths, self.values.astype(">i8").view(np.uint8).reshape(-1, 8)


def int8(values: np.ndarray, null: np.ndarray | None = None) -> Int8:
    return Int8(values, null)


def timestamptz(unix_seconds: np.ndarray):
    return int8((np.asarray(unix_seconds, dtype=np.int64) - PG_EPOCH) * 1_000_000)


def texts(values: list[str]):
    """A column of the distinct ``values``: index it with each row's id."""
    encoded = [v.encode("utf-8") for v in values]
    width = max((len(e) for e in encoded), default=0) or 1
    data = np.array(encoded or [b""], dtype=f"S{width}").view(np.uint8).reshape(-1, width)
    return np.array([len(e) for e in encoded] or [0], np.int32), data


def cidr(is_v6: np.ndarray, bits: np.ndarray, addr: np.ndarray):
    """inet/cidr's binary form: family, bits, is_cidr, address length, address."""
    n = len(bits)
    data = np.zeros((n, 20), np.uint8)
    data[:, 0] = np.where(is_v6, 3, 2)   # PGSQL_AF_INET6, PGSQL_AF_INET
    data[:, 1] = bits
    data[:, 2] = 1
    data[:, 3] = np.where(is_v6, 16, 4)
    data[:, 4:] = addr
    return np.where(is_v6, 20, 8).astype(np.int32), data


def take(column, ids: np.ndarray):
    """The column of distinct values, one row per id."""
    lengths, data = column
    return lengths[ids], data[ids]


def _plain(column) -> bool:
    """A bigint column without NULLs: laid out with the other such as numbers."""
    return isinstance(column, Int8) and column.null is None


def encode(columns: list) -> np.ndarray:
    """The rows of the columns (in order) as COPY BINARY tuples, in one
    uint8 buffer.

    The rows are taken in groups that share the lengths of the columns that
    are not plain bigints, so that each group is one fixed layout. Within a
    group, the leading bigint columns without NULLs are one structured array
    (a field per length and value), filled a column at a time, already in
    the group order; each group's fields are then laid side by side straight
    into its slice of the buffer. The order of the rows is not kept (COPY
    does not need it); the order of the fields is. Put the plain bigint
    columns first.
    """
    n = len(columns[0])
    k = 0
    while k < len(columns) and _plain(columns[k]):
        k += 1
    rest = [c.as_bytes() if isinstance(c, Int8) else c for c in columns[k:]]
    order = None
    if rest:
        widths = np.stack([np.maximum(lengths, 0) for lengths, _ in rest], axis=1)
        order = np.lexsort(widths.T[::-1])
        ordered = widths[order]
        starts = np.flatnonzero(np.r_[True, (ordered[1:] != ordered[:-1]).any(axis=1)])
        shapes, bounds = ordered[starts].tolist(), np.r_[starts, n]
    layout = [("count", ">i2")] + [(f"{kind}{i}", ">i4" if kind == "l" else ">i8")
                                   for i in range(k) for kind in ("l", "v")]
    head = np.empty(n, np.dtype(layout))
    head["count"] = len(columns)
    for i, column in enumerate(columns[:k]):
        head[f"l{i}"] = 8
        head[f"v{i}"] = column.values if order is None else column.values[order]
    head = head.view(np.uint8).reshape(n, -1)
    if not rest:
        return head.reshape(-1)
    tails = [(lengths[order].astype(">i4").view(np.uint8).reshape(-1, 4), data[order]) for lengths, data in rest]
    row_sizes = [head.shape[1] + sum(4 + w for w in shape) for shape in shapes]
    out = np.empty(int(sum(size * (bounds[g + 1] - bounds[g]) for g, size in enumerate(row_sizes))), np.uint8)
    at = 0
    for g, shape in enumerate(shapes):
        sl = slice(bounds[g], bounds[g + 1])
        rows = bounds[g + 1] - bounds[g]
        parts = [head[sl]]
        for (length, data), width in zip(tails, shape):
            parts += [length[sl], data[sl, :width]]
        size = row_sizes[g] * rows
        np.concatenate(parts, axis=1, out=out[at:at + size].reshape(rows, row_sizes[g]))
        at += size
    return out


def copy(cursor, table: str, names: list[str], columns) -> None:
    """COPY the columns into ``table`` (a psycopg cursor), in chunks; the
    plain bigint columns go first (see :func:`encode`)."""
    order = sorted(range(len(columns)), key=lambda i: not _plain(columns[i]))
    names = [names[i] for i in order]
    columns = [columns[i] for i in order]
    n = len(columns[0])
    with cursor.copy(f"COPY {table} ({', '.join(names)}) FROM STDIN (FORMAT binary)") as out:
        out.write(HEADER)
        for start in range(0, n, CHUNK):
            sl = slice(start, start + CHUNK)
            out.write(memoryview(encode([c[sl] if isinstance(c, Int8) else (c[0][sl], c[1][sl]) for c in columns])))
        out.write(TRAILER)
