"""MRT routing table dumps (RFC 6396, add-path RFC 8050): TABLE_DUMP_V2 and TABLE_DUMP.

``parse(stream, source)`` yields one :class:`Route` per RIB entry with
``best`` decided by :func:`mark_best` (MRT does not say which path a router
chose); ``entries`` yields the same routes with what the dump says of each
entry besides (peer, path id, ORIGIN), for tools and tests.

Read: TABLE_DUMP_V2 PEER_INDEX_TABLE, RIB_IPV4_UNICAST, RIB_IPV6_UNICAST,
their ADDPATH variants and RIB_GENERIC(_ADDPATH) for IPv4/IPv6 unicast;
legacy TABLE_DUMP for IPv4 and IPv6 (2-byte ASNs, AS4_PATH merged as RFC
6793 says). Everything else (multicast, BGP4MP updates, other SAFIs) is
skipped and counted in :class:`Stats`.

Speed: a full table has ~1M routes but only ~100k distinct attribute
blobs, so the attributes are parsed once per distinct blob (a dict keyed
by the raw bytes) and the same :class:`Attrs` object is shared. The data
is read in multi-megabyte chunks; a tight loop takes the common record (a
RIB_IPV4/IPV6_UNICAST record of one well-formed entry) and leaves anything
else to the general code, which checks everything. :func:`batches`, the
loader's input, runs the compiled parser (``_mrt.c``) where it is built:
the same batches, Stats and errors. See docs/routing-mrt.md, "Speed".

Errors raise :class:`DumpError` with ``where = 'byte N'``: N is the file
offset (decompressed) of the record at fault, or of the RIB entry or path
attribute when the fault is inside one. A stream that ends inside a record
or a compressed stream cut short is an error too, raised after the routes of
every complete record were yielded, unless ``accept_truncated=True``: then
it stops there, logs a warning and sets ``Stats.truncated_at``.
"""
from __future__ import annotations

import io
import logging
import struct
from collections import Counter
from dataclasses import dataclass, field
from socket import AF_INET6, inet_ntoa, inet_ntop
from typing import Iterator, NamedTuple

# open_dump (decompression by magic bytes) is shared by every format; kept
# importable from here.
from ipr.routing.dumps import Attrs, DumpError, Route, mark_best, open_dump, path_asns  # noqa: F401
from ipr.routing.dumps import _path_length

log = logging.getLogger("ipr.routing")

CHUNK = 8 << 20  # bytes read at a time: big enough that re-slicing the tail costs nothing

TABLE_DUMP, TABLE_DUMP_V2 = 12, 13
PEER_INDEX_TABLE = 1
ORIGINS = ("IGP", "EGP", "INCOMPLETE")
SEGMENT_KINDS = {1: "set", 2: "seq", 3: "confed_seq", 4: "confed_set"}

# TABLE_DUMP_V2 RIB subtypes read: bit 0 = IPv6, bit 1 = add-path, bit 2 = RIB_GENERIC.
_V6, _ADDPATH, _GENERIC = 1, 2, 4
_RIB = {TABLE_DUMP_V2 << 16 | 2: 0, TABLE_DUMP_V2 << 16 | 4: _V6,
        TABLE_DUMP_V2 << 16 | 8: _ADDPATH, TABLE_DUMP_V2 << 16 | 10: _V6 | _ADDPATH,
        TABLE_DUMP_V2 << 16 | 6: _GENERIC, TABLE_DUMP_V2 << 16 | 12: _GENERIC | _ADDPATH}

_HEADER = struct.Struct(">IHHI").unpack_from
_ENTRY = struct.Struct(">HIH").unpack_from
_ENTRY_AP = struct.Struct(">HIIH").unpack_from
# The fast loop's: type+subtype as one, length, plen; entry count, peer, attr_len
# (padding skips what it does not need: fewer ints made).
_FAST = struct.Struct(">4xII4xB").unpack_from
_COUNT_ENTRY = struct.Struct(">HH4xH").unpack_from
_T_V4, _T_V6 = TABLE_DUMP_V2 << 16 | 2, TABLE_DUMP_V2 << 16 | 4
_U16 = struct.Struct(">H").unpack_from
_U32 = struct.Struct(">I").unpack_from

_PAD4 = [bytes(4 - n) for n in range(5)]
_PAD16 = [bytes(16 - n) for n in range(17)]
_SLASH = [f"/{n}" for n in range(129)]
_HOST_BITS = [0, 0x7F, 0x3F, 0x1F, 0x0F, 0x07, 0x03, 0x01]  # by plen % 8
# The unspecified address as a next hop (a route the router originates) is no
# next hop, as the text formats show it.
_ANY4, _ANY6 = bytes(4), bytes(16)
_new = tuple.__new__  # Route(...) through NamedTuple's __new__ is 3x slower


class Entry(NamedTuple):
    """One RIB entry as the dump has it: the route and where it came from."""
    route: Route
    time: int               # the record's timestamp
    peer_ip: str
    peer_as: int
    path_id: int | None     # add-path records only
    origin: str | None      # the ORIGIN attribute: 'IGP', 'EGP', 'INCOMPLETE'


@dataclass
class Stats:
    """What a parse went through: final once the iterator is exhausted (or failed)."""
    records: int = 0
    routes: int = 0
    peer_tables: int = 0                                  # one per dump in the file
    last_peer_table_at: int | None = None                 # byte offset: where the last dump starts
    # records not read, by (type, subtype), or (type, subtype, afi, safi) for RIB_GENERIC
    skipped: Counter = field(default_factory=Counter)
    attr_sets: int = 0                                    # distinct attribute sets (Attrs values)
    bytes: int = 0                                        # decompressed bytes read
    truncated_at: int | None = None                       # set only with accept_truncated


def parse(stream, source: str = "mrt", *, accept_truncated: bool = False,
          stats: Stats | None = None) -> Iterator[Route]:
    """Routes of an MRT dump (a decompressed binary stream, or bytes)."""
    return _scan(stream, source, False, accept_truncated, stats)


def entries(stream, source: str = "mrt", *, accept_truncated: bool = False,
            stats: Stats | None = None) -> Iterator[Entry]:
    """Like :func:`parse`, with each route's peer, path id, ORIGIN and time."""
    return _scan(stream, source, True, accept_truncated, stats)


def _scan(stream, source, detail, accept_truncated, stats):
    if isinstance(stream, (bytes, bytearray, memoryview)):
        stream = io.BytesIO(stream)
    read = getattr(stream, "read1", None) or stream.read
    stats = stats if stats is not None else Stats()

    buf = b""
    pos = 0                 # next record in buf
    base = 0                # file offset of buf[0]
    eof = cut = False
    need = 12               # bytes from pos the next record needs
    peers = None            # [(ip, asn)] of the current PEER_INDEX_TABLE
    npeers = 0
    caches = ({}, {}, {}, {})   # attrs by blob: TABLE_DUMP_V2 v4/v6, TABLE_DUMP v4/v6
    cache4, cache6 = caches[0], caches[1]
    parse_attrs = _AttrParser(source, keep_origin=detail)
    origins = parse_attrs.origins  # ORIGIN attribute by blob, for entries()
    # The routes of a prefix are held until the next record shows a new one
    # (mark_best needs them all): a lone one from the fast loop as ``pending``
    # (best already decided), others in ``out``. gp is their prefix.
    pending = None
    out: list = []
    gp = None
    # gp's routes in out: [index of the first, index of the best, the best's
    # rank or None until a second route needs it] (see _add).
    group = [0, -1, None]
    nrec = nroutes = 0      # records and routes seen by the general code
    nfast = 0               # records (one route each) of the fast loop
    # Locals for the fast loop (a global lookup per use adds up over 1M records).
    fast_header, count_entry, new, ntoa, ntop = _FAST, _COUNT_ENTRY, _new, inet_ntoa, inet_ntop
    pad4, pad16, slash, host_bits, T_V4, T_V6 = _PAD4, _PAD16, _SLASH, _HOST_BITS, _T_V4, _T_V6
    try:
        while True:
            end = len(buf)
            while pos + 12 <= end:
                if not detail and npeers:
                    # Fast loop: TABLE_DUMP_V2 RIB_IPV4/IPV6_UNICAST records of one
                    # well-formed entry, a new prefix each: a router's own table.
                    # Its route is the best. Anything else is left to the general
                    # code below, which checks everything and names the fault.
                    while pos + 17 <= end:
                        tsub, length, plen = fast_header(buf, pos)
                        rec_end = pos + 12 + length
                        if rec_end > end:
                            break
                        n = (plen + 7) >> 3
                        q = pos + 17 + n
                        if tsub == T_V4:
                            if plen > 32 or q + 10 > rec_end:
                                break
                            # For n = 3 the 4th byte is the entry count's high byte:
                            # zero, as the count must be 1 (checked below).
                            raw = buf[pos + 17:pos + 21] if n >= 3 else buf[pos + 17:q] + pad4[n]
                            if plen & 7 and raw[n - 1] & host_bits[plen & 7]:
                                break
                            prefix = ntoa(raw) + slash[plen]
                            count, peer, alen = count_entry(buf, q)
                            if count != 1 or q + 10 + alen != rec_end or peer >= npeers or prefix == gp:
                                break
                            blob = buf[q + 10:rec_end]
                            attrs = cache4.get(blob)
                            if attrs is None:
                                try:
                                    attrs = cache4[blob] = parse_attrs(blob, True, False, base + q + 10)
                                except DumpError:
                                    nrec += 1  # counted as the general code counts it
                                    raise
                        elif tsub == T_V6:  # the same for IPv6
                            if plen > 128 or q + 10 > rec_end:
                                break
                            raw = buf[pos + 17:q] + pad16[n]
                            if plen & 7 and raw[n - 1] & host_bits[plen & 7]:
                                break
                            prefix = ntop(AF_INET6, raw) + slash[plen]
                            count, peer, alen = count_entry(buf, q)
                            if count != 1 or q + 10 + alen != rec_end or peer >= npeers or prefix == gp:
                                break
                            blob = buf[q + 10:rec_end]
                            attrs = cache6.get(blob)
                            if attrs is None:
                                try:
                                    attrs = cache6[blob] = parse_attrs(blob, True, True, base + q + 10)
                                except DumpError:
                                    nrec += 1  # counted as the general code counts it
                                    raise
                        else:
                            break
                        # The previous prefix's routes are complete: hand them out.
                        if pending is not None:
                            yield pending
                        elif out:
                            yield from out
                            out.clear()
                        pending = new(Route, (prefix, attrs, True))
                        gp = prefix
                        pos = rec_end
                        nfast += 1
                    if pos + 12 > end:
                        break
                # -- general code: one record of any kind ----------------------------
                if pending is not None:
                    group[:] = [len(out), len(out), None]
                    out.append(pending)
                    pending = None
                elif len(out) >= 64:
                    # Hand out all but the last prefix's routes: the next record
                    # may add to those (and change which is the best).
                    keep = group[0]
                    yield from out[:keep]
                    del out[:keep]
                    group[0] -= keep
                    group[1] -= keep
                time, rtype, sub, length = _HEADER(buf, pos)
                rec_end = pos + 12 + length
                if rec_end > end:
                    need = rec_end - pos
                    break
                nrec += 1
                code = _RIB.get(rtype << 16 | sub)
                if code is not None:
                    p = pos + 16  # after the sequence number
                    if code & _GENERIC:
                        if p + 3 > rec_end:
                            raise _error(source, base + pos, "RIB_GENERIC record too short for its AFI/SAFI")
                        afi, safi = _U16(buf, p)[0], buf[p + 2]
                        if safi != 1 or afi not in (1, 2):
                            stats.skipped[(rtype, sub, afi, safi)] += 1
                            pos = rec_end
                            continue
                        code |= _V6 if afi == 2 else 0
                        p += 3
                    if peers is None:
                        raise _error(source, base + pos, f"RIB record (subtype {sub}) before any "
                                     "PEER_INDEX_TABLE: cannot tell its peers")
                    v6 = code & _V6
                    if p >= rec_end:
                        raise _error(source, base + pos, "RIB record too short for its prefix")
                    plen = buf[p]
                    if plen > (128 if v6 else 32):
                        raise _error(source, base + pos,
                                     f"bad prefix length {plen} for {'IPv6' if v6 else 'IPv4'}")
                    n = (plen + 7) >> 3
                    q = p + 1 + n
                    if q + 2 > rec_end:
                        raise _error(source, base + pos, "RIB record too short for its prefix")
                    raw = buf[p + 1:q]
                    if plen & 7 and raw[-1] & _HOST_BITS[plen & 7]:
                        raw = raw[:-1] + bytes((raw[-1] & ~_HOST_BITS[plen & 7] & 0xFF,))
                    prefix = (inet_ntop(AF_INET6, raw + _PAD16[n]) if v6
                              else inet_ntoa(raw + _PAD4[n])) + _SLASH[plen]
                    cache = caches[v6]
                    addpath = code & _ADDPATH
                    count = (buf[q] << 8) | buf[q + 1]
                    q += 2
                    found = []
                    for i in range(count):
                        if addpath:
                            a = q + 12
                            if a > rec_end:
                                raise _overrun(source, base, pos, i, count)
                            peer, _orig, path_id, alen = _ENTRY_AP(buf, q)
                        else:
                            a = q + 8
                            if a > rec_end:
                                raise _overrun(source, base, pos, i, count)
                            peer, _orig, alen = _ENTRY(buf, q)
                            path_id = None
                        if peer >= npeers:
                            raise _error(source, base + q, f"RIB entry names peer {peer}, but the "
                                         f"PEER_INDEX_TABLE has {npeers} peer(s)")
                        e = a + alen
                        if e > rec_end:
                            raise _error(source, base + q, f"RIB entry's {alen} bytes of attributes "
                                         f"run {e - rec_end} bytes past the end of its record "
                                         f"(record at byte {base + pos})")
                        blob = buf[a:e]
                        attrs = cache.get(blob)
                        if attrs is None:
                            attrs = cache[blob] = parse_attrs(blob, True, v6, base + a)
                        found.append((attrs, (time, *peers[peer], path_id, origins[blob])
                                      if detail else None))
                        q = e
                    if q != rec_end:
                        raise _error(source, base + pos, f"{rec_end - q} bytes left over after the "
                                     f"{count} entries of the RIB record")
                    _add(out, prefix, prefix == gp, found, detail, group)
                    gp = prefix
                    nroutes += count
                elif rtype == TABLE_DUMP_V2 and sub == PEER_INDEX_TABLE:
                    peers = _peer_table(buf, pos + 12, rec_end, base + pos, source)
                    npeers = len(peers)
                    stats.peer_tables += 1
                    stats.last_peer_table_at = base + pos
                elif rtype == TABLE_DUMP and sub in (1, 2):
                    prefix, attrs, extra = _legacy(buf, pos, rec_end, sub, base, caches, parse_attrs, source)
                    _add(out, prefix, prefix == gp, [(attrs, (time, *extra) if detail else None)], detail,
                         group)
                    gp = prefix
                    nroutes += 1
                else:
                    stats.skipped[(rtype, sub)] += 1
                pos = rec_end
                need = 12

            if eof:
                break
            # Keep the incomplete tail, read at least what the next record needs.
            parts = [buf[pos:]]
            have = end - pos
            base += pos
            pos = 0
            want = max(need, CHUNK)
            while have < want:
                try:
                    chunk = read(want - have)
                except EOFError:  # a compressed stream cut short
                    eof = cut = True
                    break
                if not chunk:
                    eof = True
                    break
                parts.append(chunk)
                have += len(chunk)
            buf = b"".join(parts)

        left = len(buf) - pos
        if left or cut:
            at = base + pos
            ends = base + len(buf)
            if left >= 12:
                time, rtype, sub, length = _HEADER(buf, pos)
                what = (f"record (type {rtype}, subtype {sub}) of {length} bytes runs "
                        f"{12 + length - left} bytes past the end of the data (byte {ends})")
            elif left:
                what = f"the data ends {left} bytes into a record header"
            else:
                what = f"no more data after {ends} bytes"
            if cut:
                what = f"compressed stream cut short: {what}"
            if not accept_truncated:
                raise _error(source, at, what)
            log.warning("%s: byte %d: %s; kept the %d routes of the complete records before it",
                        source, at, what, nroutes + nfast)
            stats.truncated_at = at
        if pending is not None:
            yield pending
        yield from out
    finally:
        stats.records, stats.routes = nrec + nfast, nroutes + nfast
        stats.attr_sets = len(parse_attrs.values)
        stats.bytes = base + len(buf)


def _add(out: list, prefix: str, same: bool, found: list, detail: bool, group: list) -> None:
    """Append a record's routes of ``prefix``: found = [(attrs, entry details)].

    ``same``: out already ends with routes of this prefix (an adjacent record
    of the same prefix), ``group`` says where they start and which is the
    best. Each new route is compared with that best only, so the best of a
    prefix with many routes (TABLE_DUMP: one record per peer) costs one
    rank per route. The same choice as :func:`mark_best`: highest local
    preference, shortest path, lowest MED, the first of equals.
    """
    if not same:
        group[:] = [len(out), -1, None]
    best, rank = group[1], group[2]
    for attrs, extra in found:
        i = len(out)
        if best < 0:
            is_best, best, rank = True, i, None
        else:
            if rank is None:
                rank = _rank_of(out[best].route.attrs if detail else out[best].attrs)
            new_rank = _rank_of(attrs)
            is_best = new_rank < rank
            if is_best:
                old = out[best]
                out[best] = (old._replace(route=old.route._replace(best=False)) if detail
                             else old._replace(best=False))
                best, rank = i, new_rank
        route = _new(Route, (prefix, attrs, is_best))
        out.append(_new(Entry, (route, *extra)) if detail else route)
    group[1], group[2] = best, rank


def _rank_of(attrs: Attrs) -> tuple[int, int, int]:
    """What mark_best orders a prefix's routes by: lower is better."""
    return (-(100 if attrs.local_pref is None else attrs.local_pref),
            _path_length(attrs.as_path), attrs.med or 0)


def _error(source: str, offset: int, message: str) -> DumpError:
    return DumpError(source, f"byte {offset}", message)


def _overrun(source, base, pos, i, count) -> DumpError:
    return _error(source, base + pos, f"RIB record ends inside entry {i + 1} of the {count} it declares")


def _peer_table(buf: bytes, p: int, end: int, at: int, source: str) -> list[tuple[str, int]]:
    """[(peer ip, peer asn)] of a PEER_INDEX_TABLE record body buf[p:end]."""
    def short():
        return _error(source, at, "PEER_INDEX_TABLE record ends inside its peer list")

    if p + 6 > end:
        raise short()
    name_len = _U16(buf, p + 4)[0]
    p += 6 + name_len
    if p + 2 > end:
        raise short()
    count = _U16(buf, p)[0]
    p += 2
    peers = []
    for _ in range(count):
        if p + 5 > end:
            raise short()
        ptype = buf[p]
        ip_len = 16 if ptype & 0x01 else 4
        as_len = 4 if ptype & 0x02 else 2
        p += 5  # type, BGP id
        if p + ip_len + as_len > end:
            raise short()
        ip = inet_ntop(AF_INET6, buf[p:p + 16]) if ip_len == 16 else inet_ntoa(buf[p:p + 4])
        p += ip_len
        asn = _U32(buf, p)[0] if as_len == 4 else _U16(buf, p)[0]
        p += as_len
        peers.append((ip, asn))
    return peers


def _legacy(buf, pos, rec_end, sub, base, caches, parse_attrs, source):
    """(prefix, attrs, (peer ip, peer as, None, ORIGIN)) of a TABLE_DUMP record.

    ``view u16 | seq u16 | prefix | plen u8 | status u8 | originated u32 |
    peer ip | peer as u16 | attr_len u16 | attrs``; 2-byte ASNs.
    """
    v6 = sub == 2
    size = 16 if v6 else 4
    p = pos + 12
    fixed = 4 + size + 6  # view, seq, prefix, plen, status, originated
    # Some writers put a 4-byte peer address in IPv6 records: tell by the length.
    for peer_size in ((size, 4) if v6 else (size,)):
        a = p + fixed + peer_size + 4
        if a <= rec_end and a + _U16(buf, a - 2)[0] == rec_end:
            break
    else:
        raise _error(source, base + pos, "TABLE_DUMP record length does not match its attribute length")
    plen = buf[p + 4 + size]
    if plen > size * 8:
        raise _error(source, base + pos, f"bad prefix length {plen} for {'IPv6' if v6 else 'IPv4'}")
    prefix = _prefix_text(buf[p + 4:p + 4 + size], plen, v6)
    ip_at = p + fixed
    peer_ip = (inet_ntop(AF_INET6, buf[ip_at:ip_at + 16]) if peer_size == 16
               else inet_ntoa(buf[ip_at:ip_at + 4]))
    peer_as = _U16(buf, ip_at + peer_size)[0]
    blob = buf[a:rec_end]
    cache = caches[2 + v6]
    attrs = cache.get(blob)
    if attrs is None:
        attrs = parse_attrs(blob, False, v6, base + a)
        cache[blob] = attrs
    origins = parse_attrs.origins
    return prefix, attrs, (peer_ip, peer_as, None, origins[blob] if origins is not None else None)


def _prefix_text(raw: bytes, plen: int, v6: bool) -> str:
    """Canonical network text, host bits cleared, from a full-size address."""
    bits = 128 if v6 else 32
    net = int.from_bytes(raw, "big") >> (bits - plen) << (bits - plen) if plen else 0
    packed = net.to_bytes(16 if v6 else 4, "big")
    return (inet_ntop(AF_INET6, packed) if v6 else inet_ntoa(packed)) + _SLASH[plen]


class _AttrParser:
    """Parses attribute blobs, once each: the caller caches by blob.

    Blobs of a table differ mostly in one attribute (the path, the
    communities), so each attribute's value is memoised too.
    """

    def __init__(self, source: str, keep_origin: bool):
        self.source = source
        # Each distinct value once: blobs that differ only in what a route
        # does not keep share one Attrs, and len() is Stats.attr_sets.
        self.values: dict[Attrs, Attrs] = {}
        self.origins: dict[bytes, str | None] = {} if keep_origin else None
        self.paths: dict = {}     # (asn size, AS_PATH value, AS4_PATH value) -> path_asns()
        # by type code: value -> next hop or communities text
        self.texts: dict[int, dict] = {3: {}, 8: {}, 14: {}, 32: {}}

    def __call__(self, blob: bytes, as4: bool, v6: bool, at: int) -> Attrs:
        origin = next_hop = mp_hop = local_pref = med = path = path4 = path_at = path4_at = None
        communities = large = ""
        texts = self.texts
        p, end = 0, len(blob)
        while p < end:
            if p + 3 > end:
                raise self._error(at + p, "path attribute header runs past the attributes")
            flags, code = blob[p], blob[p + 1]
            if flags & 0x10:
                if p + 4 > end:
                    raise self._error(at + p, "path attribute header runs past the attributes")
                v = p + 4
                size = blob[p + 2] << 8 | blob[p + 3]
            else:
                v = p + 3
                size = blob[p + 2]
            e = v + size
            if e > end:
                raise self._error(at + p, f"path attribute {code} of {size} bytes runs "
                                  f"{e - end} bytes past the attributes")
            if code == 2:
                path, path_at = blob[v:e], at + p
            elif code == 1:
                if size != 1 or blob[v] > 2:
                    raise self._error(at + p, f"bad ORIGIN attribute {blob[v:e].hex()}")
                origin = blob[v]
            elif code in texts:  # NEXT_HOP, COMMUNITIES, MP_REACH_NLRI, LARGE_COMMUNITIES
                memo = texts[code]
                value = blob[v:e]
                text = memo.get(value)
                if text is None:
                    text = memo[value] = self._text(code, value, at + p)
                if code == 3:
                    next_hop = text or None
                elif code == 8:
                    communities = text
                elif code == 14:
                    mp_hop = text or None
                else:
                    large = text
            elif code == 5 or code == 4:
                if size != 4:
                    raise self._error(at + p, f"{'LOCAL_PREF' if code == 5 else 'MULTI_EXIT_DISC'} "
                                      f"of {size} bytes, not 4")
                if code == 5:
                    local_pref = _U32(blob, v)[0]
                else:
                    med = _U32(blob, v)[0]
            elif code == 17 and not as4:
                path4, path4_at = blob[v:e], at + p
            p = e
        key = (as4, path, path4)
        asns = self.paths.get(key)
        if asns is None:
            asns = self.paths[key] = self._path(path, path4, as4, path_at, path4_at)
        # An IPv6 route's next hop is in MP_REACH_NLRI; an IPv4 one's in NEXT_HOP
        # unless only MP_REACH_NLRI has one (IPv4 over an IPv6 next hop).
        hop = (mp_hop or next_hop) if v6 else (next_hop or mp_hop)
        if self.origins is not None:
            self.origins[blob] = None if origin is None else ORIGINS[origin]
        attrs = _new(Attrs, (hop, *asns, local_pref, med,
                             f"{communities} {large}" if communities and large else communities or large))
        return self.values.setdefault(attrs, attrs)

    def _error(self, offset: int, message: str) -> DumpError:
        return _error(self.source, offset, message)

    def _text(self, code: int, value: bytes, where: int) -> str:
        """Text of a memoised attribute; '' for no next hop."""
        size = len(value)
        if code == 3:
            if size != 4:
                raise self._error(where, f"NEXT_HOP of {size} bytes, not 4")
            return "" if value == _ANY4 else inet_ntoa(value)
        if code == 14:
            return _mp_next_hop(value, where, self.source) or ""
        if code == 8:
            if size % 4:
                raise self._error(where, f"COMMUNITIES of {size} bytes, not a multiple of 4")
            words = struct.unpack(f">{size // 2}H", value)
            return " ".join(f"{words[i]}:{words[i + 1]}" for i in range(0, len(words), 2))
        if size % 12:
            raise self._error(where, f"LARGE_COMMUNITIES of {size} bytes, not a multiple of 12")
        words = struct.unpack(f">{size // 4}I", value)
        return " ".join(f"{words[i]}:{words[i + 1]}:{words[i + 2]}" for i in range(0, len(words), 3))

    def _path(self, path, path4, as4: bool, at: int | None, at4: int | None):
        """path_asns() of an AS_PATH (and a TABLE_DUMP AS4_PATH) at byte ``at`` (``at4``)."""
        if path is None:
            return path_asns(())
        segments = _segments(path, 4 if as4 else 2, at, self.source)
        if path4 is not None:
            segments = _merge_as4(segments, _segments(path4, 4, at4, self.source))
        return path_asns(segments)


def _segments(value: bytes, asn_size: int, where: int, source: str) -> list[tuple[str, list[int]]]:
    segments = []
    p, end = 0, len(value)
    fmt = "I" if asn_size == 4 else "H"
    while p < end:
        if p + 2 > end:
            raise _error(source, where, "AS path segment header runs past the attribute")
        kind = SEGMENT_KINDS.get(value[p])
        count = value[p + 1]
        if kind is None:
            raise _error(source, where, f"unknown AS path segment type {value[p]}")
        q = p + 2 + count * asn_size
        if q > end:
            raise _error(source, where, f"AS path segment of {count} ASNs runs past the attribute "
                         f"({asn_size}-byte ASNs)")
        segments.append((kind, list(struct.unpack_from(f">{count}{fmt}", value, p + 2))))
        p = q
    return segments


def _merge_as4(segments, as4_segments):
    """RFC 6793 4.2.3: the AS_PATH's leading ASNs the AS4_PATH lacks, then the AS4_PATH."""
    def count(segs):  # a set counts as one, confederation segments as none
        return sum(len(asns) if kind == "seq" else 1 if kind == "set" else 0 for kind, asns in segs)

    keep = count(segments) - count(as4_segments)
    if keep < 0:  # an AS4_PATH longer than the AS_PATH is ignored
        return segments
    merged = []
    for kind, asns in segments:
        if keep <= 0:
            break
        if kind == "seq":
            merged.append((kind, asns[:keep]))
            keep -= len(merged[-1][1])
        elif kind == "set":
            merged.append((kind, asns))
            keep -= 1
        else:
            merged.append((kind, asns))
    return merged + list(as4_segments)


def _mp_next_hop(value: bytes, where: int, source: str) -> str | None:
    """The (global) next hop of MP_REACH_NLRI, abbreviated or full.

    TABLE_DUMP_V2 abbreviates it to ``nh_len | next hop``; some writers
    (and TABLE_DUMP) use the full ``afi | safi | nh_len | next hop | ...``.
    The abbreviated form is exactly 1 + nh_len bytes; the full one starts
    with AFI 0x0001 or 0x0002, which as an abbreviated length would be 0.
    """
    size = len(value)
    if size and value[0] + 1 == size:
        hop = value[1:]
    elif size >= 4 and value[0] == 0 and value[1] in (1, 2):
        hop = value[4:4 + value[3]]
        if len(hop) != value[3]:
            raise _error(source, where, "MP_REACH_NLRI next hop runs past the attribute")
    else:
        raise _error(source, where, f"cannot read MP_REACH_NLRI of {size} bytes ({value[:8].hex()}...)")
    n = len(hop)
    if n == 16 or n == 32:  # global, or global + link-local: the global one if any
        if hop[:16] == _ANY6 and n == 32:
            hop = hop[16:]
        return None if hop[:16] == _ANY6 else inet_ntop(AF_INET6, hop[:16])
    if n == 4:
        return None if hop == _ANY4 else inet_ntoa(hop)
    if n == 0:
        return None
    raise _error(source, where, f"MP_REACH_NLRI next hop of {n} bytes")


def batches(stream, source: str = "mrt", *, accept_truncated: bool = False,
            stats: Stats | None = None, size: int | None = None):
    """The routes of :func:`parse` as :class:`~ipr.routing.dumps.batches.Batch` columns.

    The compiled parser (``ipr.routing.dumps._mrt``) where it is built, else
    ``from_routes(parse(...))``: the same batches, Stats and errors.
    """
    from ipr.native import compiled
    from ipr.routing.dumps.batches import SIZE, from_routes

    native = compiled("ipr.routing.dumps._mrt", "MRT parser")
    if native is None:
        return from_routes(parse(stream, source, accept_truncated=accept_truncated, stats=stats), size or SIZE)
    return _native_batches(native, stream, source, accept_truncated, stats if stats is not None else Stats(),
                           size or SIZE)


def _native_batches(native, stream, source, accept_truncated, stats, size):
    import numpy as np

    from ipr.routing.dumps.batches import Batch

    if isinstance(stream, (bytes, bytearray, memoryview)):
        stream = io.BytesIO(stream)
    read = getattr(stream, "read1", None) or stream.read

    def warn(at: int, what: str, routes: int) -> None:
        log.warning("%s: byte %d: %s; kept the %d routes of the complete records before it",
                    source, at, what, routes)

    parser = native.Parser(read, source, stats, accept_truncated, size, DumpError, Attrs, warn, CHUNK)
    for v6, addr, plen, attr, best, attrs, first in parser:
        yield Batch(v6, np.frombuffer(addr, np.uint8).reshape(-1, 16 if v6 else 4), np.frombuffer(plen, np.uint8),
                    np.frombuffer(attr, np.uint32), np.frombuffer(best, np.bool_), attrs, first)
