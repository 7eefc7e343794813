"""Route dumps: every format a router can give us, turned into one shape.

Each parser module (``bird``, ``frr``, ``mrt``) exposes
``parse(stream, source="name") -> Iterator[Route]`` over a binary stream.
They all yield :class:`Route` tuples whose :class:`Attrs` part is shared
between routes with the same path attributes (a full table has ~1M routes
but far fewer distinct attribute sets), and they all raise
:class:`DumpError` naming the source and the line or byte offset, for any
bad input: a dump that does not end where its format says it ends (cut
short) included. :func:`open_dump` opens a file for any of them,
decompressed, with decompression failures DumpErrors too.

AS path policy, the same for every format (docs/routing.md):

- ``as_path`` is text: ASNs separated by spaces, an AS_SET as ``{a b}``,
  confederation segments are left out (they are internal to the
  neighbour's confederation and never name the origin).
- ``neighbor_as`` is the first ASN of the path: the transit or peer that
  carries the route. ``None`` for a locally originated route.
- ``origin_as`` is the last ASN of the last AS_SEQUENCE. A path that ends
  in an AS_SET of one member has that member as origin; one that ends in a
  larger AS_SET (an aggregate) has the aggregating AS, the last ASN of the
  sequence before the set. ``None`` for an empty path or one that is only a
  larger AS_SET (an aggregate the router made): the loader then uses the
  router's own ASN, and such a path has no neighbour AS.
"""

from __future__ import annotations

import bz2
import io
import lzma
import zlib
from typing import BinaryIO, Iterable, Iterator, NamedTuple


class DumpError(ValueError):
    """A dump that cannot be read. ``where`` is 'line N' or 'byte N'."""

    def __init__(self, source: str, where: str, message: str):
        self.source = source
        self.where = where
        self.message = message
        super().__init__(f"{source}: {where}: {message}")


class CutShort(DumpError, EOFError):
    """A compressed stream that ends before its end mark.

    An EOFError too, so a reader that can stop at the last complete record
    (``mrt.parse(accept_truncated=True)``) does, as it does at the end of a
    file cut short.
    """


# Compression by magic bytes: (name, magic, a new decompressor).
_COMPRESSIONS = (
    ("gzip", b"\x1f\x8b", lambda: zlib.decompressobj(31)),
    ("bzip2", b"BZh", bz2.BZ2Decompressor),
    ("xz", b"\xfd7zXZ\x00", lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ)),
)
_CHUNK = 1 << 20


def open_dump(path: str, source: str | None = None) -> BinaryIO:
    """``path`` as a binary stream with ``peek``, decompressed by its magic
    bytes (gzip, bzip2, xz; several concatenated streams are one).

    Corrupt compressed data, a compressed stream cut short and bytes after
    the last stream that are not another stream raise :class:`DumpError`
    (:class:`CutShort` for a cut) naming ``source`` (default: the path) and
    ``byte N``, N being the offset in the decompressed data up to which
    everything was read; the message adds the compressed offset.
    """
    source = path if source is None else source
    raw = open(path, "rb")
    try:
        magic = raw.read(6)
        raw.seek(0)
    except BaseException:
        raw.close()
        raise
    for name, mark, new in _COMPRESSIONS:
        if magic.startswith(mark):
            return io.BufferedReader(_Decompressing(raw, name, mark, new, source), _CHUNK)
    return raw


# MED and LOCAL_PREF are 4-byte BGP attributes (RFC 4271): a text dump that
# prints a larger value is not a router's table.
U32_MAX = 0xFFFFFFFF


class Attrs(NamedTuple):
    next_hop: str | None      # first next hop, text ('192.0.2.1', '2001:db8::1')
    as_path: str              # '64500 64501 {64502 64503}', '' when local
    origin_as: int | None
    neighbor_as: int | None
    local_pref: int | None
    med: int | None
    communities: str          # '65001:100 65001:200 65001:1:2' (standard, then large)


class Route(NamedTuple):
    prefix: str               # canonical network text, host bits zero: '192.0.2.0/24'
    attrs: Attrs
    best: bool | None         # True/False where the dump says; None where it cannot (MRT)


def path_asns(segments: Iterable[tuple[str, list[int]]]) -> tuple[str, int | None, int | None]:
    """(as_path text, origin_as, neighbor_as) from AS path segments.

    ``segments`` are ('seq' | 'set' | 'confed_seq' | 'confed_set', [asn, ...])
    in path order.
    """
    parts: list[str] = []
    first = None
    origin = None
    last_kind = None
    for kind, asns in segments:
        if kind.startswith("confed") or not asns:
            continue
        if first is None:
            # A path that starts with a set (an aggregate this router made)
            # names no neighbour that carries it.
            first = asns[0] if kind == "seq" else 0
        if kind == "seq":
            parts.append(" ".join(map(str, asns)))
            origin = asns[-1]
        else:
            parts.append("{" + " ".join(map(str, asns)) + "}")
            if len(asns) == 1:
                origin = asns[0]
        last_kind = kind
    del last_kind
    return " ".join(parts), origin, first or None


def mark_best(routes: Iterable[Route]) -> Iterator[Route]:
    """Routes with ``best`` decided where the dump did not say (MRT).

    Routes of one prefix must be adjacent. Among them the best is the one
    BGP's decision process would pick from what a dump keeps: highest
    local preference (missing = 100), then shortest AS path (a set counts
    as one), then lowest MED (missing = 0), then the first in the dump.
    """
    group: list[Route] = []
    for route in routes:
        if group and route.prefix != group[0].prefix:
            yield from _pick(group)
            group = []
        group.append(route)
    if group:
        yield from _pick(group)


def _path_length(as_path: str) -> int:
    length = 0
    in_set = False
    for token in as_path.split():
        if token.startswith("{"):
            length += 1
            in_set = not token.endswith("}")
        elif in_set:
            in_set = not token.endswith("}")
        else:
            length += 1
    return length


def _rank(route: Route):
    a = route.attrs
    return (-(100 if a.local_pref is None else a.local_pref),
            _path_length(a.as_path), a.med or 0)


def _pick(group: list[Route]) -> Iterator[Route]:
    if len(group) == 1:
        yield group[0]._replace(best=True)
        return
    best = min(range(len(group)), key=lambda i: _rank(group[i]))
    for i, route in enumerate(group):
        yield route._replace(best=(i == best))


class _Decompressing(io.RawIOBase):
    """The decompressed bytes of a file, every failure a DumpError.

    The decompressor gets the data in small pieces, so a failure is placed
    within one piece: the offsets name where the data was still good.
    """

    PIECE = 1 << 14      # compressed bytes per call
    OUT = 1 << 16        # decompressed bytes per call at most

    def __init__(self, raw: BinaryIO, name: str, mark: bytes, new, source: str):
        self.raw, self.name, self.mark, self.new, self.source = raw, name, mark, new, source
        self.d = new()
        self.zlib = name == "gzip"
        self.pending = memoryview(b"")  # read from the file, not given to the decompressor yet
        self.fed = 0           # compressed bytes given to the decompressor
        self.produced = 0      # decompressed bytes handed out
        self.done = False

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.raw.close()
        super().close()

    def readinto(self, b) -> int:
        while not self.done:
            data = self._more(min(len(b), self.OUT))
            if data:
                b[:len(data)] = data
                self.produced += len(data)
                return len(data)
        return 0

    def _piece(self) -> bytes:
        """The next compressed bytes, b'' at the end of the file."""
        if not self.pending:
            self.pending = memoryview(self.raw.read(_CHUNK))
        piece, self.pending = self.pending[:self.PIECE], self.pending[self.PIECE:]
        self.fed += len(piece)
        return bytes(piece)

    def _more(self, size: int) -> bytes:
        d = self.d
        if d.eof:
            # The end of one stream: another may follow (gzip members, xz
            # and bzip2 streams written one after the other).
            rest = d.unused_data or self._piece()
            if not rest:
                self.done = True
                return b""
            if not self.mark.startswith(rest[:len(self.mark)]):
                raise self.error(f"the bytes after the end of the {self.name} data are not {self.name} "
                                 f"(trailing garbage)", self.fed - len(rest))
            d = self.d = self.new()
            data = rest
        elif self.zlib and d.unconsumed_tail:
            data = d.unconsumed_tail  # input it had no room to decompress
        elif self.zlib or d.needs_input:
            data = self._piece()
            if not data:
                out = d.decompress(b"", size) if self.zlib else b""  # output zlib still holds
                if out or d.eof:
                    return out
                raise CutShort(self.source, f"byte {self.produced}",
                               f"compressed stream cut short: the {self.name} data ends before its end "
                               f"mark, after {self.produced} bytes of decompressed data "
                               f"(compressed size {self.fed})")
        else:
            data = b""
        try:
            return d.decompress(data, size)
        except (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError) as exc:
            raise self.error(f"corrupt {self.name} data: {exc}", self.fed) from None

    def error(self, message: str, at: int) -> DumpError:
        return DumpError(self.source, f"byte {self.produced}",
                         f"{message}, after {self.produced} bytes of good decompressed data "
                         f"(compressed byte {at} or before)")
