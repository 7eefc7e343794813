"""Longest-prefix match in memory, for batches of addresses.

A :class:`Table` is built once per table version from (prefix, value)
pairs and then answers whole numpy arrays of addresses at a time.

How: the prefixes (nested or not) are flattened into the sorted starts of
non-overlapping address intervals, each labelled with the most specific
prefix covering it (or none). A lookup is then one ``numpy.searchsorted``
over those starts: no Python loop per address, and nothing but flat
arrays in memory. docs/routing-countries.md has the measurements that
chose this over a C trie (pytricia).

Rules:

- Equal prefixes: the first one given wins; later duplicates are ignored.
- IPv4 and IPv6 share a table but never meet. Addresses come as 16 bytes
  in network order with IPv4 as ::ffff:a.b.c.d (the spool's form); such an
  address matches IPv4 prefixes only, and every other address IPv6
  prefixes only. So ``::/0`` does not catch IPv4 clients, and an IPv6
  prefix inside ::ffff:0:0/96 never matches anything.
- IPv6 keys are full 128-bit (two uint64 words): prefixes longer than /64
  are exact, not truncated.
"""
from __future__ import annotations

import socket
from array import array

import numpy as np

_U64 = np.uint64
_MAPPED = 0xFFFF  # bits 32..47 of the low word of ::ffff:a.b.c.d


class Table:
    """An immutable longest-prefix-match table; build it with :meth:`build`
    (prefix texts) or :meth:`build_packed` (arrays, as the loader has them).

    ``values[i]`` is the value of the i-th prefix given to ``build``; every
    "match" result is such an index ``i`` (-1: no prefix covers the address).
    """

    def __init__(self):
        # The items' values, then -1: indexing with a match result (-1 for
        # none) gives the value or -1 in one step.
        self._values = np.full(1, -1, dtype=np.int64)
        # Per item: >= 0 index into the IPv4 arrays, < 0 is ~index into the IPv6 ones.
        self._pos = np.empty(0, dtype=np.int32)
        self._v4_start = np.empty(0, dtype=np.uint32)
        self._v4_len = np.empty(0, dtype=np.uint8)
        self._v6_hi = np.empty(0, dtype=_U64)
        self._v6_lo = np.empty(0, dtype=_U64)
        self._v6_len = np.empty(0, dtype=np.uint8)
        # Interval k starts at bounds[k] and is covered by item match[k + 1];
        # match[0] = -1 is the space below the first start.
        self._b4 = np.empty(0, dtype=np.uint32)
        self._m4 = np.full(1, -1, dtype=np.int32)
        self._b6_hi = np.empty(0, dtype=_U64)
        self._b6_lo = np.empty(0, dtype=_U64)
        self._m6 = np.full(1, -1, dtype=np.int32)
        # True when some IPv6 interval starts inside a /64 (a prefix longer
        # than /64): only then do lookups need the low word.
        self._v6_fine = False

    # -- building ------------------------------------------------------------

    @classmethod
    def build(cls, items) -> "Table":
        """A table from an iterable of (prefix text, value int >= 0).

        Raises ValueError naming the item for a malformed prefix, one with
        host bits set, or a negative value.
        """
        v4_packed, v4_len, v4_item = bytearray(), array("B"), array("q")
        v6_packed, v6_len, v6_item = bytearray(), array("B"), array("q")
        values = array("q")
        i = -1
        text = None
        inet_pton = socket.inet_pton
        try:
            # The one Python loop of a build: text to packed bytes, nothing more.
            for i, (text, value) in enumerate(items):
                addr, slash, length = text.partition("/")
                if ":" in addr:
                    v6_packed += inet_pton(socket.AF_INET6, addr)
                    v6_len.append(int(length) if slash else 128)
                    v6_item.append(i)
                else:
                    v4_packed += inet_pton(socket.AF_INET, addr)
                    v4_len.append(int(length) if slash else 32)
                    v4_item.append(i)
                values.append(value)
        except (OSError, ValueError, TypeError, OverflowError) as exc:
            raise ValueError(f"item {i}: not a (prefix, value >= 0) pair: {text!r}: {exc}") from None

        words = np.frombuffer(v6_packed, dtype=">u8").astype(_U64).reshape(-1, 2)
        return cls._assemble(
            np.frombuffer(values, dtype=np.int64),
            np.frombuffer(v4_item, dtype=np.int64), np.frombuffer(v4_packed, dtype=">u4").astype(np.uint32),
            np.frombuffer(v4_len, dtype=np.uint8).copy(),
            np.frombuffer(v6_item, dtype=np.int64), np.ascontiguousarray(words[:, 0]),
            np.ascontiguousarray(words[:, 1]), np.frombuffer(v6_len, dtype=np.uint8).copy())

    @classmethod
    def build_packed(cls, v6, plen, addr, values=None) -> "Table":
        """A table from prefixes as arrays, the form :meth:`networks` returns:
        ``v6`` (n,) bool, ``plen`` (n,) prefix lengths, ``addr`` (n, 16) uint8
        in network order (an IPv4 address in the first 4 bytes, the rest
        zero); ``values`` (n,) ints >= 0, by default 0, 1, 2, ... The same
        table, and the same errors, as :meth:`build` of their texts.
        """
        v6 = np.asarray(v6, dtype=bool)
        plen = np.asarray(plen)
        addr = np.asarray(addr)
        n = len(v6)
        if plen.shape != (n,) or addr.shape != (n, 16) or addr.dtype != np.uint8:
            raise ValueError(f"build_packed: v6 {v6.shape}, plen {plen.shape} and addr {addr.shape} "
                             f"{addr.dtype} must be (n,), (n,) and (n, 16) uint8")
        if plen.dtype.kind not in "ui":
            raise ValueError(f"build_packed: prefix lengths must be integers, not {plen.dtype}")
        _check((plen < 0) | (plen > 255), np.arange(n), "not a prefix length", plen)
        values = np.arange(n, dtype=np.int64) if values is None else np.asarray(values)
        if values.shape != (n,) or values.dtype.kind not in "ui":
            raise ValueError(f"build_packed: values {values.shape} {values.dtype} must be (n,) integers")
        four = np.nonzero(~v6)[0]
        _check(addr[four, 4:].any(axis=1), four, "IPv4 address with bytes past the fourth set")
        six = np.nonzero(v6)[0]
        words = addr[six].view(">u8").astype(_U64)
        return cls._assemble(
            values.astype(np.int64), four, addr[four, :4].copy().view(">u4").ravel().astype(np.uint32),
            plen[four].astype(np.uint8), six, np.ascontiguousarray(words[:, 0]),
            np.ascontiguousarray(words[:, 1]), plen[six].astype(np.uint8))

    @classmethod
    def _assemble(cls, values, v4_item, v4_start, v4_len, v6_item, v6_hi, v6_lo, v6_len) -> "Table":
        """The table of items given per family: their numbers (``*_item``),
        addresses and lengths; ``values`` per item."""
        table = cls()
        table._values = np.append(values, -1)
        _check(table.values < 0, np.arange(len(table.values)), "negative value", table.values)
        table._pos = np.empty(len(table.values), dtype=np.int32)
        table._pos[v4_item] = np.arange(len(v4_item), dtype=np.int32)
        table._pos[v6_item] = ~np.arange(len(v6_item), dtype=np.int32)
        table._v4_start, table._v4_len = v4_start, v4_len
        table._v6_hi, table._v6_lo, table._v6_len = v6_hi, v6_lo, v6_len
        table._build_v4(v4_item)
        table._build_v6(v6_item)
        return table

    def _build_v4(self, items: np.ndarray) -> None:
        _check(self._v4_len > 32, items, "prefix length over 32", self._v4_len)
        length = self._v4_len.astype(_U64)
        start = self._v4_start.astype(_U64)
        _check(start & ((_U64(1) << (_U64(32) - length)) - _U64(1)) != 0, items, "host bits set")
        # Sorted by (start, length) with a stable sort: of equal prefixes the
        # first given comes first, and is the one kept.
        key = start << _U64(6) | length
        del start, length
        order = np.argsort(key, kind="stable")
        key = key[order]
        first = np.ones(len(key), dtype=bool)
        first[1:] = key[1:] != key[:-1]
        key, kept = key[first], order[first]
        del order, first
        open_at = key >> _U64(6)
        close_at = np.sort(open_at + (_U64(1) << (_U64(32) - (key & _U64(63)))))
        del key
        bounds, top = _sweep(open_at, close_at)
        keep = bounds < (1 << 32)  # the end of a prefix reaching 255.255.255.255
        (self._b4,), self._m4 = _intervals((bounds[keep].astype(np.uint32),), top[keep], items[kept])

    def _build_v6(self, items: np.ndarray) -> None:
        _check(self._v6_len > 128, items, "prefix length over 128", self._v6_len)
        hi, lo, length = self._v6_hi, self._v6_lo, self._v6_len.astype(_U64)
        # Prefix size and host mask as (hi, lo) words. /0 (size 2**128) gets
        # size 0: its end is never needed, it closes past the top.
        short = length <= 64
        one = _U64(1)
        size_hi = np.where(short & (length > 0), one << (_U64(64) - np.clip(length, one, _U64(64))), _U64(0))
        size_lo = np.where(short, _U64(0), one << (_U64(128) - np.clip(length, _U64(65), _U64(128))))
        host_hi = np.where(length == 0, ~_U64(0), np.where(short, size_hi - one, _U64(0)))
        host_lo = np.where(short, ~_U64(0), size_lo - one)
        _check(((hi & host_hi) | (lo & host_lo)) != 0, items, "host bits set")

        # Sorted by (start, length), input order last: the first of equal prefixes is kept.
        order = np.lexsort((np.arange(len(hi)), length, lo, hi))
        hi, lo, length = hi[order], lo[order], length[order]
        first = np.ones(len(hi), dtype=bool)
        first[1:] = (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1]) | (length[1:] != length[:-1])
        kept = order[first]
        hi, lo = hi[first], lo[first]
        end_lo = lo + size_lo[kept]
        end_hi = hi + size_hi[kept] + (end_lo < lo)
        # end + 1 wraps to 0 only for a prefix reaching ffff:...:ffff: it never closes.
        closes = (end_hi != 0) | (end_lo != 0)
        # 128-bit coordinates are replaced by their rank among all starts and
        # ends, so the sweep works on plain integers.
        all_hi = np.concatenate([hi, end_hi[closes]])
        all_lo = np.concatenate([lo, end_lo[closes]])
        order = np.lexsort((all_lo, all_hi))
        all_hi, all_lo = all_hi[order], all_lo[order]
        new = np.ones(len(order), dtype=bool)
        new[1:] = (all_hi[1:] != all_hi[:-1]) | (all_lo[1:] != all_lo[:-1])
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.cumsum(new) - 1
        n = len(hi)
        bounds, top = _sweep(rank[:n], np.sort(rank[n:]))
        (self._b6_hi, self._b6_lo), self._m6 = _intervals(
            (all_hi[new][bounds], all_lo[new][bounds]), top, items[kept])
        self._v6_fine = bool((self._b6_lo != 0).any())

    # -- lookups -------------------------------------------------------------

    def match_many(self, addrs) -> np.ndarray:
        """Index (into the items given to ``build``) of the longest prefix
        covering each address; -1 where none does. ``addrs``: numpy 'V16'
        (or 'S16') array, or (N, 16) uint8, network order, IPv4 as ::ffff:a.b.c.d."""
        hi, lo = _words(addrs)
        out = np.full(len(hi), -1, dtype=np.int64)
        v4 = (hi == 0) & ((lo >> _U64(32)) == _MAPPED)
        n4 = int(np.count_nonzero(v4))
        if n4 and len(self._b4):
            q = (lo[v4] if n4 < len(hi) else lo).astype(np.uint32)
            found = self._m4[_search(self._b4, q)]
            if n4 == len(hi):
                out[:] = found
            else:
                out[v4] = found
        if n4 < len(hi) and len(self._b6_hi):
            sel = ~v4
            out[sel] = self._m6[self._count6(hi[sel], lo[sel])]
        return out

    def lookup_many(self, addrs) -> np.ndarray:
        """The value of the longest prefix covering each address (int64), -1 where none."""
        return self._values[self.match_many(addrs)]

    def match(self, address: str) -> int:
        """``match_many`` for one address text."""
        return int(self.match_many(_packed(address))[0])

    def lookup(self, address: str) -> int:
        """``lookup_many`` for one address text."""
        return int(self.lookup_many(_packed(address))[0])

    def prefix(self, index: int) -> str:
        """The canonical text of item ``index`` (a ``match`` result)."""
        if index < 0:
            raise IndexError(f"no prefix {index}: -1 means nothing matched")
        pos = int(self._pos[index])
        if pos >= 0:
            return f"{socket.inet_ntop(socket.AF_INET, int(self._v4_start[pos]).to_bytes(4, 'big'))}" \
                   f"/{self._v4_len[pos]}"
        pos = ~pos
        packed = int(self._v6_hi[pos]).to_bytes(8, "big") + int(self._v6_lo[pos]).to_bytes(8, "big")
        return f"{socket.inet_ntop(socket.AF_INET6, packed)}/{self._v6_len[pos]}"

    def networks(self, indices) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Items ``indices`` (all >= 0) as arrays: is IPv6 (bool), prefix
        length (uint8) and the 16 address bytes (IPv4 in the first 4)."""
        pos = self._pos[np.asarray(indices, dtype=np.int64)]
        v6 = pos < 0
        bits = np.empty(len(pos), np.uint8)
        addr = np.zeros((len(pos), 16), np.uint8)
        four = pos[~v6]
        bits[~v6] = self._v4_len[four]
        addr[~v6, :4] = self._v4_start[four].astype(">u4").view(np.uint8).reshape(-1, 4)
        six = ~pos[v6]
        bits[v6] = self._v6_len[six]
        addr[v6, :8] = self._v6_hi[six].astype(">u8").view(np.uint8).reshape(-1, 8)
        addr[v6, 8:] = self._v6_lo[six].astype(">u8").view(np.uint8).reshape(-1, 8)
        return v6, bits, addr

    def prefix_of(self, address: str) -> str | None:
        """The longest prefix covering one address text, or None."""
        index = self.match(address)
        return None if index < 0 else self.prefix(index)

    def arrays(self) -> dict[str, np.ndarray]:
        """The whole state as named numpy arrays, e.g. for ``np.savez``: a
        worker can load a table another process built instead of building it."""
        return {name: np.asarray(value) for name, value in vars(self).items()}

    @classmethod
    def from_arrays(cls, arrays) -> "Table":
        """The table that :meth:`arrays` gave (any mapping of name -> array)."""
        table = cls()
        names = set(vars(table))
        missing = names - set(arrays)
        if missing:
            raise ValueError(f"not a saved lookup table: {', '.join(sorted(missing))} missing")
        for name in names:
            value = np.asarray(arrays[name])
            if value.dtype != np.asarray(getattr(table, name)).dtype:
                raise ValueError(f"not a saved lookup table: {name} is {value.dtype}")
            setattr(table, name, value.item() if value.ndim == 0 else value)
        return table

    @property
    def values(self) -> np.ndarray:
        """The value of each item given to ``build`` (int64)."""
        return self._values[:-1]

    def __len__(self) -> int:
        return len(self._values) - 1

    @property
    def nbytes(self) -> int:
        """Bytes held by the table's arrays."""
        return sum(a.nbytes for a in (
            self._values, self._pos, self._v4_start, self._v4_len, self._v6_hi, self._v6_lo,
            self._v6_len, self._b4, self._m4, self._b6_hi, self._b6_lo, self._m6))

    def _count6(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """Per address, the number of IPv6 interval starts <= it (128-bit compare)."""
        b_hi, b_lo = self._b6_hi, self._b6_lo
        right = _search(b_hi, hi)
        if not self._v6_fine:
            return right  # every start has a zero low word: the high word decides
        # Where the last start counted shares the address's high word but has
        # a larger low word, the run of starts with that high word is bisected
        # on the low word (vectorised; such runs exist only inside a /64).
        prev = np.maximum(right - 1, 0)
        fix = np.nonzero((right > 0) & (b_hi[prev] == hi) & (b_lo[prev] > lo))[0]
        if len(fix):
            a = np.searchsorted(b_hi, hi[fix], side="left")
            b, q = right[fix], lo[fix]
            while True:
                active = a < b
                if not active.any():
                    break
                mid = (a + b) // 2
                below = active & (b_lo[np.minimum(mid, len(b_lo) - 1)] <= q)
                a = np.where(below, mid + 1, a)
                b = np.where(active & ~below, mid, b)
            right[fix] = a
        return right

def _sweep(open_at: np.ndarray, close_at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flatten nested prefixes into intervals.

    ``open_at``: the prefixes' starts, sorted by (start, length); ``close_at``:
    their ends + 1, sorted. Returns every distinct coordinate (an interval
    starts at each) and the prefix covering that interval: its index in
    ``open_at``, or -1.

    This is a sweep with a stack, where at one address closes come before
    opens and outer prefixes open before inner ones, done with sorted
    searches instead of a loop: a prefix's depth is the count of prefixes
    open just after it opens, and since prefixes are nested or disjoint, the
    one covering an interval of depth d is the last prefix opened so far at
    depth d.
    """
    n = len(open_at)
    index = np.arange(n, dtype=np.int64)
    depth = index + 1 - np.searchsorted(close_at, open_at, side="right")
    stride = n + 1
    key = depth * stride + index
    del depth
    owner = np.argsort(key)
    key = key[owner]
    bounds = np.sort(np.concatenate([open_at, close_at]))
    distinct = np.ones(len(bounds), dtype=bool)
    distinct[1:] = bounds[1:] != bounds[:-1]
    bounds = bounds[distinct]
    del distinct
    opened = np.searchsorted(open_at, bounds, side="right")
    level = opened - np.searchsorted(close_at, bounds, side="right")
    at = np.searchsorted(key, level * stride + opened - 1, side="right") - 1
    top = np.where(level > 0, owner[np.maximum(at, 0)] if n else -1, -1)
    return bounds, top

def _search(bounds: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """``searchsorted(bounds, keys, side="right")``, with the keys sorted
    first: neighbouring searches then touch the same cache lines, which is
    about three times faster on a table of a million intervals."""
    if len(keys) < 64:
        return np.searchsorted(bounds, keys, side="right")
    order = np.argsort(keys)
    out = np.empty(len(keys), dtype=np.intp)
    out[order] = np.searchsorted(bounds, keys[order], side="right")
    return out


def _intervals(bounds: tuple, top: np.ndarray, item_of: np.ndarray):
    """(interval starts, match) with neighbours matching the same item merged.

    ``top`` indexes the deduplicated prefixes; ``item_of`` maps them to items.
    """
    if not len(top):
        return tuple(b[:0] for b in bounds), np.full(1, -1, dtype=np.int32)
    match = np.where(top >= 0, item_of[np.maximum(top, 0)], -1)
    keep = np.empty(len(match), dtype=bool)
    keep[1:] = match[1:] != match[:-1]
    keep[0] = match[0] != -1  # below the first start nothing matches anyway
    return (tuple(np.ascontiguousarray(b[keep]) for b in bounds),
            np.concatenate([[-1], match[keep]]).astype(np.int32))


def _check(bad: np.ndarray, items: np.ndarray, message: str, show=None) -> None:
    if len(bad) and bad.any():
        k = int(np.argmax(bad))
        detail = f" ({show[k]})" if show is not None else ""
        raise ValueError(f"item {items[k]}: {message}{detail}")


def _words(addrs) -> tuple[np.ndarray, np.ndarray]:
    """The high and low 64-bit words (native uint64) of 16-byte addresses."""
    a = np.asarray(addrs)
    if a.dtype == np.uint8 and a.ndim == 2 and a.shape[1] == 16:
        raw = np.ascontiguousarray(a)
    elif a.dtype.itemsize == 16 and a.dtype.kind in "VS" and a.ndim == 1:
        raw = np.ascontiguousarray(a).view(np.uint8).reshape(-1, 16)
    else:
        raise TypeError(f"addresses must be 16-byte values ('V16' or (N, 16) uint8), not {a.dtype} {a.shape}")
    words = raw.view(">u8").reshape(-1, 2).astype(_U64)
    return words[:, 0], words[:, 1]


def pack(addresses) -> np.ndarray:
    """A 'V16' array (the lookups' input) from address texts."""
    return np.frombuffer(b"".join(map(_pack_one, addresses)), dtype="V16")


def _pack_one(address: str) -> bytes:
    text = address.strip()
    if ":" in text:
        return socket.inet_pton(socket.AF_INET6, text)
    return b"\0" * 10 + b"\xff\xff" + socket.inet_pton(socket.AF_INET, text)


def _packed(address: str) -> np.ndarray:
    return np.frombuffer(_pack_one(address), dtype="V16")
