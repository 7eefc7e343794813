"""Quagga and FRR ``show ip bgp`` / ``show bgp ipv4|ipv6 unicast [wide]`` text,
and FRR's ``show bgp ... json`` (plain or ``json detail``).

The text table is fixed-width, but the widths move: the status column is 3
characters (Quagga, FRR up to 8.x, one more when an RPKI state is known), 4
(FRR 9.0-10.1) or 5 (FRR 10.2+); a net of 17 characters or more ends its
line and the next hop follows on the next line after 20 spaces; a next hop
of 16 or more ends its line and the numbers follow after 36 (38 on recent
FRR) spaces. So a line is read by tokens up to the next hop, and the number
columns (MED, LocPrf, Weight: right-aligned, blank when absent) by their
width counted from where the next-hop column starts; only their positions
tell a missing MED from a missing LocPrf.

Policy (see docs/routing-text.md):

- ``best`` is the ``>`` mark (JSON: ``bestpath``). A multipath ``=`` route
  is not best: one best route per prefix.
- ``next_hop``: what the table prints (FRR prints the link-local address of
  an IPv6 route that has both, unless told to prefer the global one); in
  JSON the global next hop. ``0.0.0.0``/``::`` (a local route) is None, and
  so is an interface name (BGP unnumbered).
- Quagga and FRR up to 5.x leave out the length of a classful natural mask
  (``10.0.0.0`` is /8, ``172.16.0.0`` /16, ``192.168.9.0`` /24) and of any
  prefix of ``0.0.0.0`` (taken as the default route, /0).
- asdot ASNs (``1.4``) become 32-bit integers (65540).
- The text table has no communities; the plain JSON neither: communities are
  read from ``json detail`` (FRR 8.4 has it), where well-known names become
  numbers.
"""

from __future__ import annotations

import codecs
import io
import ipaddress
import json
import re
from typing import Any, BinaryIO, Iterator

from . import U32_MAX, Attrs, DumpError, Route, path_asns

# [RPKI V/I/N or blank (FRR 9+), or nothing] [valid/removed/stale/suppressed]
# [best/multipath/history/damped] [internal]; the net may follow at once.
_STATUS = re.compile(r"[VIN ]?[RSsr* ][hd>= ][i ]")
_TOKEN = re.compile(r"\S+")
_NUMBER_FIELD = re.compile(r" *\d*")
_HEADER = re.compile(
    r"BGP table version is |Default local pref |Status codes:|Nexthop codes:|Origin codes:"
    r"|RPKI validation codes:|\s+(?:i internal|r RIB-failure|i - internal)")
# The line that ends a table: FRR's, Quagga's, and either's for a table with
# no route. FRR counts the prefixes and paths shown; Quagga the prefixes.
_TRAILER = re.compile(r"Displayed\s+(?P<prefixes>\d+) routes? and (?P<paths>\d+) total paths?"
                      r"|Total number of prefixes (?P<quagga>\d+)"
                      r"|No BGP prefixes displayed, \d+ exists?")
_COLUMNS = re.compile(r"\s*Network\s+Next Hop\s+Metric\s+LocPrf\s+Weight\s+Path\s*$")
_PATH_PART = re.compile(r"\{[^}]*\}|\[[^\]]*\]|\([^)]*\)|[^\s{}\[\]()]+")
_SEPARATORS = re.compile(r"[,\s]+")

# Next-hop column width and MED, LocPrf, Weight widths: the normal table and
# ``wide``.
_NORMAL = (16, (10, 7, 7))
_WIDE = (41, (7, 7, 7))
# Where the numbers start on the line after a wrapped next hop.
_WRAPPED_STARTS = (36, 37, 38)
_MAX_ASN = 2**32 - 1
_ORIGINS = {"i", "e", "?"}
# FRR prints these communities by name (RFC 1997, 7999, 8326, 8642, 9494 values).
_WELL_KNOWN = {
    "internet": "0:0", "graceful-shutdown": "65535:0", "accept-own": "65535:1",
    "route-filter-translated-v4": "65535:2", "route-filter-v4": "65535:3",
    "route-filter-translated-v6": "65535:4", "route-filter-v6": "65535:5",
    "llgr-stale": "65535:6", "no-llgr": "65535:7", "accept-own-nexthop": "65535:8",
    "blackhole": "65535:666", "no-export": "65535:65281", "no-advertise": "65535:65282",
    "local-AS": "65535:65283", "no-peer": "65535:65284",
}
_SEGMENT_KINDS = {"as-sequence": "seq", "as-set": "set",
                  "as-confed-sequence": "confed_seq", "as-confed-set": "confed_set"}


class _Common:
    """Interning and AS-path reading shared by the text and JSON parsers."""

    def __init__(self, source: str):
        self.source = source
        self.attrs: dict[Attrs, Attrs] = {}
        self.paths: dict[str, tuple[str, int | None, int | None]] = {}
        self.hops: dict[str, str | None] = {}

    def intern(self, attrs: Attrs) -> Attrs:
        return self.attrs.setdefault(attrs, attrs)

    def path(self, text: str, where: str) -> tuple[str, int | None, int | None]:
        known = self.paths.get(text)
        if known is not None:
            return known
        segments: list[tuple[str, list[int]]] = []
        sequence: list[int] | None = None  # the AS_SEQUENCE plain numbers go to
        for part in _PATH_PART.findall(text):
            if part[0] in "{[(":
                # FRR and Quagga print an AS_SET {a,b}, a confederation
                # sequence (a b) and a confederation set [a,b].
                kind = {"{": "set", "[": "confed_set", "(": "confed_seq"}[part[0]]
                members = [m for m in _SEPARATORS.split(part[1:-1]) if m]
                segments.append((kind, [self.asn(m, text, where) for m in members]))
                sequence = None
            else:
                if sequence is None:
                    sequence = []
                    segments.append(("seq", sequence))
                sequence.append(self.asn(part, text, where))
        result = path_asns(segments)
        if len(self.paths) > 200_000:  # a cache, not a copy of the table
            self.paths.clear()
        self.paths[text] = result
        return result

    def asn(self, token: str, text: str, where: str) -> int:
        try:
            if "." in token:  # asdot: high.low
                high, low = token.split(".")
                value = int(high) * 65536 + int(low) if int(low) < 65536 else -1
            else:
                value = int(token)
        except ValueError:
            value = -1
        if not 0 <= value <= _MAX_ASN or not token.replace(".", "").isdigit():
            raise DumpError(self.source, where, f"bad AS number {token!r} in AS path {text!r}")
        return value

    def next_hop(self, text: str, where: str) -> str | None:
        if text in self.hops:
            return self.hops[text]
        # "10.0.0.1@4<": the next hop's VRF id and the announce-nh-self mark;
        # "10.0.0.1(r1)": the peer's hostname (show-nexthop-hostname).
        bare = text.split("@")[0].rstrip("<").split("(")[0]
        try:
            address = ipaddress.ip_address(bare)
        except ValueError:
            if not re.fullmatch(r"[A-Za-z][\w.-]*", bare):
                raise DumpError(self.source, where, f"expected a next hop, got {text!r}") from None
            result = None  # an interface: BGP unnumbered
        else:
            result = None if address.is_unspecified else str(address)
        if len(self.hops) > 100_000:
            self.hops.clear()
        self.hops[text] = result
        return result


class _Text(_Common):
    def __init__(self, source: str, accept_truncated: bool = False):
        super().__init__(source)
        self.accept_truncated = accept_truncated

    def routes(self, stream: BinaryIO) -> Iterator[Route]:
        """The table's routes, then a check that it ends where FRR's and
        Quagga's tables end: with a trailer line (``Displayed N routes and M
        total paths``, ``Total number of prefixes N``, ``No BGP prefixes
        displayed``) whose counts match what was read, and a newline."""
        layouts = [_NORMAL, _WIDE]
        prefix: str | None = None  # carried to the further paths of a net
        pending: list | None = None  # [stage, line, status, prefix, next hop text]
        prefixes = paths = 0  # of the table being read, for its trailer
        ended = True  # the last table has its trailer (or none has started)
        n, data = 0, b""
        for n, data in enumerate(stream, 1):
            line = data.decode("utf-8", "replace").rstrip("\r\n")
            where = f"line {n}"
            if pending is not None:
                stage, first, status, net, hop = pending
                tokens = [(m.start(), m.group()) for m in _TOKEN.finditer(line)]
                if not tokens or not line[:1].isspace():
                    raise DumpError(self.source, where, f"expected the continuation of the route "
                                                        f"on line {first} ({net})")
                if stage == "hop":
                    (start, hop), rest = tokens[0], tokens[1:]
                    if start < 10:
                        raise DumpError(self.source, where, f"expected the next hop of {net} (line {first})")
                    if not rest:  # a long next hop: the numbers are on the next line
                        pending = ["numbers", first, status, net, hop]
                        continue
                    starts = [(start + width, widths) for width, widths in layouts]
                else:
                    starts = [(s, widths) for s in _WRAPPED_STARTS for _, widths in layouts]
                pending = None
                paths += 1
                yield self.route(line, starts, status, net, hop, where)
                continue
            if not line.strip():
                continue
            if _HEADER.match(line):
                if line.startswith("BGP table version is ") and not ended:
                    raise DumpError(self.source, where, "a new table starts, but the one before has no "
                                                        "'Displayed N routes' line: it is cut short")
                ended = False
                continue
            m = _TRAILER.fullmatch(line.strip())
            if m:
                self.trailer(m, prefixes, paths, where)
                prefixes = paths = 0
                ended, prefix = True, None
                continue
            if _COLUMNS.match(line):
                layouts = self.layouts(line)
                ended = False
                continue
            ended = False
            m = _STATUS.match(line)
            tokens = [(t.start(), t.group()) for t in _TOKEN.finditer(line, m.end())] if m else []
            if not tokens:
                if line.startswith("BGP routing table entry for "):
                    raise DumpError(self.source, where, "this is the detail view of one prefix "
                                                        "('show bgp PREFIX'), not the table ('show ip bgp')")
                raise DumpError(self.source, where, "expected a route line (status, network, next hop, "
                                                    f"metrics, path), got {line[:60]!r}")
            status = m.group()
            start, first = tokens[0]
            if start <= m.end() + 2:  # a net right after the status
                prefix = self.prefix(first, where)
                prefixes += 1
                tokens = tokens[1:]
                if not tokens:  # a long net: the next hop is on the next line
                    pending = ["hop", n, status, prefix, None]
                    continue
            elif prefix is None:
                raise DumpError(self.source, where, "a path without a network, and no network before it")
            (start, hop), rest = tokens[0], tokens[1:]
            if not rest:
                pending = ["numbers", n, status, prefix, hop]
                continue
            paths += 1
            yield self.route(line, [(start + width, widths) for width, widths in layouts],
                             status, prefix, hop, where)
        if pending is not None:
            raise DumpError(self.source, f"line {pending[1]}", f"the route for {pending[3]} is cut short")
        if self.accept_truncated or n == 0:
            return
        if not ended:
            raise DumpError(self.source, f"line {n}", "the table does not end with its 'Displayed N routes "
                                                      "and M total paths' line: the dump is cut short")
        if not data.endswith(b"\n"):
            raise DumpError(self.source, f"line {n}", "the last line has no newline: the dump is cut short")

    def trailer(self, m: re.Match, prefixes: int, paths: int, where: str) -> None:
        if m.group("prefixes") is not None:
            said = (int(m.group("prefixes")), int(m.group("paths")))
            if said != (prefixes, paths):
                raise DumpError(self.source, where, f"the table says {said[0]} routes and {said[1]} paths, "
                                                    f"but {prefixes} and {paths} were read")
        elif m.group("quagga") is not None:
            if int(m.group("quagga")) != prefixes:
                raise DumpError(self.source, where, f"the table says {m.group('quagga')} prefixes, "
                                                    f"but {prefixes} were read")
        elif paths:
            raise DumpError(self.source, where, f"'no prefixes displayed' after {paths} paths")

    @staticmethod
    def layouts(header: str) -> list:
        # The header's columns say whether this is the wide table.
        width = header.index("Metric") + len("Metric") - header.index("Next Hop")
        wide = width == _WIDE[0] + _WIDE[1][0]
        return [_WIDE, _NORMAL] if wide else [_NORMAL, _WIDE]

    def prefix(self, text: str, where: str) -> str:
        try:
            if "/" in text:
                return str(ipaddress.ip_network(text, strict=False))
            address = ipaddress.IPv4Address(text)
        except ValueError:
            raise DumpError(self.source, where, f"expected a network, got {text!r}") from None
        # Quagga and old FRR leave out the length of a natural (classful) mask.
        first = int(address) >> 24
        if int(address) == 0:
            length = 0
        elif first < 128:
            length = 8
        elif first < 192:
            length = 16
        elif first < 224:
            length = 24
        else:
            raise DumpError(self.source, where, f"{text} has no prefix length and no natural mask")
        try:
            return str(ipaddress.IPv4Network(f"{text}/{length}"))
        except ValueError:
            raise DumpError(self.source, where, f"{text} has no prefix length and is not "
                                                f"a classful network") from None

    def route(self, line: str, starts: list, status: str, prefix: str, hop: str, where: str) -> Route:
        numbers = None
        for strict in (True, False):
            for start, widths in starts:
                numbers = _numbers(line, start, widths, strict)
                if numbers is not None:
                    break
            if numbers is not None:
                break
        if numbers is None:
            raise DumpError(self.source, where, "expected MED, LocPrf and Weight columns after the next hop")
        med, local_pref, tail = numbers
        for name, value in (("MED", med), ("LocPrf", local_pref)):
            if value is not None and value > U32_MAX:
                raise DumpError(self.source, where, f"{name} {value} is over 2^32-1")
        words = line[tail:].split()
        if not words or words[-1] not in _ORIGINS:
            raise DumpError(self.source, where, "expected the AS path and an origin code (i, e, ?)")
        as_path, origin, neighbor = self.path(" ".join(words[:-1]), where)
        attrs = Attrs(self.next_hop(hop, where), as_path, origin, neighbor, local_pref, med, "")
        return Route(prefix, self.intern(attrs), ">" in status)


def _numbers(line: str, start: int, widths: tuple[int, int, int], strict: bool):
    """(MED, LocPrf, where the path starts) if the columns fit at ``start``.

    Each column is right-aligned in its width. ``strict=False`` lets a number
    wider than its column push the next ones right, as printf does.
    """
    if not 0 < start <= len(line) or not line[start - 1].isspace():
        return None
    values = []
    pos = start
    for width in widths:
        end = pos + width
        if end > len(line):
            return None
        # A 32-bit number has 10 digits: only a narrower column can overflow.
        if not strict and width < 10:
            while end < len(line) and line[end].isdigit() and line[end - 1].isdigit():
                end += 1
        field = line[pos:end]
        if not _NUMBER_FIELD.fullmatch(field):
            return None
        values.append(field.strip())
        pos = end
    if not values[2] or line[pos:pos + 1] not in (" ", ""):
        return None  # Weight is always printed
    med, local_pref = (int(v) if v else None for v in values[:2])
    return med, local_pref, pos


class _Json(_Common):
    """FRR's JSON, read one prefix at a time: a full table is too big to load whole."""

    CHUNK = 1 << 20
    MARGIN = 1 << 16  # a decode error this close to the end may be data not read yet

    def __init__(self, source: str, stream: BinaryIO):
        super().__init__(source)
        self.stream = stream
        self.decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        self.buf = ""
        self.pos = 0
        self.base = 0  # bytes before buf[0]
        self.eof = False
        self.mark: int | None = None  # a position kept in the buffer for error messages
        self.json = json.JSONDecoder()
        self.json_hops: dict[str, str | None] = {}
        self.read_prefixes = self.read_paths = 0  # for FRR's totals

    def more(self, size: int = 0) -> bool:
        if self.eof:
            return False
        cut = self.pos if self.mark is None else min(self.pos, self.mark)
        if cut:
            self.base += len(self.buf[:cut].encode("utf-8", "surrogateescape"))
            self.buf = self.buf[cut:]
            self.pos -= cut
            if self.mark is not None:
                self.mark -= cut
        data = self.stream.read(max(size, self.CHUNK))
        if not data:
            self.eof = True
            self.buf += self.decoder.decode(b"", final=True)
            return False
        self.buf += self.decoder.decode(data)
        return True

    def offset(self, pos: int) -> str:
        return f"byte {self.base + len(self.buf[:pos].encode('utf-8', 'surrogateescape'))}"

    def peek(self) -> str:
        """The next character that is not white space, '' at the end."""
        while True:
            buf, pos = self.buf, self.pos
            while pos < len(buf) and buf[pos] in " \t\r\n":
                pos += 1
            self.pos = pos
            if pos < len(buf):
                return buf[pos]
            if not self.more():
                return ""

    def expect(self, chars: str) -> str:
        c = self.peek()
        if not c or c not in chars:
            got = "the JSON ends early (truncated)" if not c else f"got {c!r}"
            raise DumpError(self.source, self.offset(self.pos),
                            f"expected {' or '.join(map(repr, chars))}: {got}")
        self.pos += 1
        return c

    def value(self) -> Any:
        self.peek()
        while True:
            try:
                value, end = self.json.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                if not self.eof and (exc.pos >= len(self.buf) - self.MARGIN
                                     or exc.msg.startswith("Unterminated string")):
                    self.more(len(self.buf))  # the value may go on in data not read yet
                    continue
                # Cut short: the decoder stopped at the end, or in a string that runs to it.
                truncated = exc.pos >= len(self.buf.rstrip()) or exc.msg.startswith("Unterminated")
                raise DumpError(self.source, self.offset(exc.pos),
                                exc.msg + (" (the JSON ends early: truncated)" if truncated else "")) from None
            if end == len(self.buf) and not self.eof:
                self.more()  # a number may go on in the next chunk
                continue
            self.pos = end
            return value

    def routes(self) -> Iterator[Route]:
        if not self.peek():
            return
        self.expect("{")
        found = False
        if self.peek() == "}":
            self.pos += 1
        else:
            said = {}  # recent FRR ends with the counts of what it showed
            while True:
                key = self.value()
                self.expect(":")
                if key == "routes" and self.peek() == "{":
                    found = True
                    yield from self.table()
                elif key in ("totalRoutes", "totalPaths"):
                    said[key] = (self.offset(self.pos), self.value())
                else:
                    self.value()
                if self.expect(",}") == "}":
                    break
            if not found:
                raise DumpError(self.source, self.offset(self.pos),
                                "no 'routes' object: expected the output of 'show bgp ... json'")
            for key, count in (("totalRoutes", self.read_prefixes), ("totalPaths", self.read_paths)):
                if key in said and said[key][1] != count:
                    raise DumpError(self.source, said[key][0], f"{key} is {said[key][1]!r}, "
                                                               f"but {count} were read")
        if self.peek():
            raise DumpError(self.source, self.offset(self.pos), "unexpected data after the JSON object")

    def table(self) -> Iterator[Route]:
        self.expect("{")
        if self.peek() == "}":
            self.pos += 1
            return
        while True:
            self.peek()
            # Errors in this entry name the byte where it starts; the offset
            # is only counted then.
            self.mark = self.pos
            key = self.value()
            self.expect(":")
            paths = self.value()
            if not isinstance(key, str) or not isinstance(paths, list):
                raise self.entry_error("expected \"prefix\": [paths]")
            try:
                prefix = str(ipaddress.ip_network(key, strict=False))
            except ValueError:
                raise self.entry_error(f"{key!r} is not an IP prefix") from None
            routes = []
            self.read_prefixes += 1
            for path in paths:
                if not isinstance(path, dict):
                    raise self.entry_error(f"{key}: a path that is not an object")
                # 'json detail' starts each list with the prefix's own header.
                if "prefix" in path and not ({"nexthops", "path", "aspath"} & path.keys()):
                    continue
                routes.append(self.route(prefix, path))
            self.mark = None
            self.read_paths += len(routes)
            self.read_prefixes -= not routes
            yield from routes
            if self.expect(",}") == "}":
                return

    def entry_error(self, message: str) -> DumpError:
        return DumpError(self.source, self.offset(self.mark), message)

    def route(self, prefix: str, path: dict) -> Route:
        aspath = path.get("aspath")
        if isinstance(aspath, dict) and isinstance(aspath.get("segments"), list):
            as_path, origin, neighbor = self.segments(aspath["segments"])
        else:
            text = path.get("path")
            if text is None and isinstance(aspath, dict):
                text = aspath.get("string")
            if not isinstance(text, (str, type(None))):
                raise self.entry_error(f"{prefix}: 'path' is not a string")
            try:
                as_path, origin, neighbor = self.path(text or "", "")
            except DumpError as exc:
                raise self.entry_error(exc.message) from None
        best = path.get("bestpath")
        if isinstance(best, dict):
            best = best.get("overall")
        attrs = Attrs(self.json_next_hop(path.get("nexthops"), prefix), as_path, origin, neighbor,
                      self.integer(path, ("locPrf", "localpref"), prefix),
                      self.integer(path, ("metric", "med"), prefix),
                      self.communities(path, prefix))
        return Route(prefix, self.intern(attrs), best is True)

    def segments(self, segments: list) -> tuple[str, int | None, int | None]:
        parts = []
        for segment in segments:
            kind = _SEGMENT_KINDS.get(segment.get("type")) if isinstance(segment, dict) else None
            asns = segment.get("list") if kind else None
            if not isinstance(asns, list) or not all(isinstance(a, int) and 0 <= a <= _MAX_ASN for a in asns):
                raise self.entry_error(f"cannot read AS path segment {segment!r}")
            parts.append((kind, asns))
        return path_asns(parts)

    def integer(self, path: dict, keys: tuple[str, ...], prefix: str) -> int | None:
        for key in keys:
            if key in path:
                value = path[key]
                if not isinstance(value, int) or isinstance(value, bool):
                    raise self.entry_error(f"{prefix}: {key} is not an integer")
                if not 0 <= value <= U32_MAX:
                    raise self.entry_error(f"{prefix}: {key} {value} is not in 0..2^32-1")
                return value
        return None

    def json_next_hop(self, hops: Any, prefix: str) -> str | None:
        if not hops:
            return None
        if not isinstance(hops, list) or not all(isinstance(h, dict) for h in hops):
            raise self.entry_error(f"{prefix}: 'nexthops' is not a list of objects")
        # The global address (IPv4 next hops have no scope); of several, the used one.
        found = [h for h in hops if h.get("scope", "global") == "global" and "ip" in h] or \
                [h for h in hops if "ip" in h]
        if not found:
            return None
        text = next((h for h in found if h.get("used")), found[0])["ip"]
        if text in self.json_hops:
            return self.json_hops[text]
        if not isinstance(text, str):
            raise self.entry_error(f"{prefix}: next hop {text!r} is not a string")
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            result = None  # e.g. a link-local placeholder with no address
        else:
            result = None if address.is_unspecified else str(address)
        if len(self.json_hops) > 100_000:
            self.json_hops.clear()
        self.json_hops[text] = result
        return result

    def communities(self, path: dict, prefix: str) -> str:
        parts = []
        for key in ("community", "largeCommunity"):
            value = path.get(key)
            if isinstance(value, dict):
                value = value.get("string")
            if value is None:
                continue
            if not isinstance(value, str):
                raise self.entry_error(f"{prefix}: {key} is not a string")
            parts.extend(_WELL_KNOWN.get(c, c) for c in value.split())
        return " ".join(parts)


def parse_text(stream: BinaryIO, source: str = "frr", *, accept_truncated: bool = False) -> Iterator[Route]:
    """Routes of a Quagga/FRR ``show ip bgp`` table.

    A table that does not end with its trailer line, whose trailer counts
    differ from what was read, or whose last line has no newline is a
    DumpError, raised before its last route is yielded... unless
    ``accept_truncated=True`` (the counts are still checked where a trailer is).
    """
    return _Text(source, accept_truncated).routes(stream)


def parse_json(stream: BinaryIO, source: str = "frr") -> Iterator[Route]:
    """Routes of FRR's ``show bgp [ipv4|ipv6] [unicast] json [detail]``."""
    return _Json(source, stream).routes()


def parse(stream: BinaryIO, source: str = "frr") -> Iterator[Route]:
    """Either of the above: JSON if the first byte that is not white space is '{'."""
    if not hasattr(stream, "peek"):
        stream = io.BufferedReader(stream, 1 << 16)
    head = stream.peek(1 << 16)[:1 << 16].lstrip()
    if head[:1] == b"{":
        return parse_json(stream, source)
    return parse_text(stream, source)
