"""BIRD ``show route [table T] all``, from birdc or from the control socket.

One parser for BIRD 1.x (net in 18 columns, next hop on the route line,
``Type: BGP unicast univ``), 2.x (net in 20 columns, ``\\tvia … on …`` lines,
``Table master4:`` headings) and 3.x (attribute names ``bgp_path``,
``bgp_next_hop``, ...). The raw control-socket form (``1007-`` reply codes,
one-space continuation lines, ``0000`` at the end) is recognised from its
first line and unwrapped here, so a capture of the socket parses like
birdc's output.

Lines are classified by their content, not their columns: hand-edited and
real-world captures mix tabs and spaces and pad the net field differently,
and the second route of a net leaves the field empty.

Policy (see docs/routing-text.md):

- ``best`` is BIRD's primary mark, ``*`` (or ``!`` when the kernel sync of
  the primary route failed). A route without the mark is not best, even if
  no route of its net has one (``show route protocol X`` shows that).
- ``next_hop`` is the BGP next hop (the global address of an IPv6 pair, the
  link-local one when the global is ``::``); a route with no BGP next hop
  (static, device, kernel) has its first gateway, or None for ``dev``,
  blackhole and unreachable routes. The ``via`` gateways of a BGP route are
  the IGP's answer to "how to reach the BGP next hop", not the neighbour.
- ECMP: one route with several ``via`` lines is one Route (first gateway).
- Communities: standard then large, as ``a:b`` and ``a:b:c``; extended
  communities are not kept.
- A BGP route printed without its attribute lines (``show route`` without
  ``all``) is an error, not a route without AS path.

Speed: the text is read a megabyte at a time and a route at a time, not a
line at a time, and what repeats across a table (attribute blocks, AS paths,
communities, next hops) is read once; :func:`batches` (the loader's way)
fills the batch columns without making a Route for each route. See
:class:`_Parser` and docs/routing-text.md for how, and bench/bird_parse.py
for the figures.
"""

from __future__ import annotations

import gc
import ipaddress
import re
from socket import AF_INET, AF_INET6, inet_ntop, inet_pton
from typing import TYPE_CHECKING, BinaryIO, Iterator

from . import U32_MAX, Attrs, DumpError, Route, path_asns

if TYPE_CHECKING:
    from .batches import Batch

# A route line, after leading blanks are stripped. The net is absent on the
# second and later routes of a net. ``dest`` is BIRD 2's unicast/blackhole/
# unreachable/prohibited or BIRD 1's "via X on Y", "dev X", "multipath", ...
_ROUTE = re.compile(
    r"(?:(?P<net>[0-9A-Fa-f.:]+/\d+)\s+)?"
    r"(?P<dest>[a-z][^\[]*?)\s*"
    r"\[(?P<proto>[^\s\]]+)(?: [^\]]*)?\]"
    r"(?:\s+(?P<mark>[*!]))?"
    r"\s+\([^)]*\)"
    r"(?:\s+\[(?P<info>[^\]]*)\])?\s*$"
)
# "name: value"; names are BGP.as_path (BIRD 1/2), bgp_path (BIRD 3),
# Type, preference, "Internal route handling values", ...
_ATTR = re.compile(r"(?P<name>[A-Za-z][\w.]*(?: [A-Za-z][\w.]*)*):(?:\s+(?P<value>.*))?$")
_RAW = re.compile(rb"(\d{4})(?:[ -]|\r?\n|$)")
# BGP's own info on the route line: [AS65001i], [i], [AS4200000001?]
_BGP_INFO = re.compile(r"(?:AS\d+)?[ie?]$")
_PATH_TOKEN = re.compile(r"\(\{|\}\)|[{}()]|\d+|\S+")
_COMMUNITY = re.compile(r"\(\s*(\d+)\s*,\s*(\d+)\s*\)")
_LARGE = re.compile(r"\(\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\)")

# BIRD 1/2 "BGP.x" and BIRD 3 "bgp_x" names of the attributes we keep.
_NAMES = {
    "bgp.as_path": "as_path", "bgp_path": "as_path",
    "bgp.next_hop": "next_hop", "bgp_next_hop": "next_hop",
    "bgp.local_pref": "local_pref", "bgp_local_pref": "local_pref",
    "bgp.med": "med", "bgp_med": "med",
    "bgp.community": "community", "bgp_community": "community",
    "bgp.large_community": "large_community", "bgp_large_community": "large_community",
}
_MAX_ASN = 2**32 - 1
# BIRD prints an AS_SET {a b}, a confederation sequence (a b), a confederation set ({a b}).
_OPEN = {"{": "set", "(": "confed_seq", "({": "confed_set"}
_CLOSE = {"}": "set", ")": "confed_seq", "})": "confed_set"}

_CHUNK = 1 << 20  # bytes read at a time
# A block of birdc text: a line (its first word, the spaces after it, the
# rest, with the lines under it that start with a tab). Matches at
# every line start, so findall cuts a text into its blocks, every line in one.
_BLOCKS = re.compile(rb"([^ \t\n]*+)( *+)([^\n]*+\n(?:\t[^\n]*+\n)*+)").findall
# How many distinct route line ends, blocks under route lines and lines or
# values in them the block loop remembers (then it forgets them all and
# starts again), and how many blocks (after the net) in each of its two
# generations (when the newer is full, the older is forgotten and the newer
# becomes the older). Two full transit feeds have ~720,000 distinct blocks,
# more than is kept: a block seen long before is read again.
_BODIES_KEPT = 300_000
_TAILS_KEPT = 300_000
_BLOCKS_KEPT = 300_000
_LINES_KEPT = 300_000
_FLAGS = {(best, bgp): (best, bgp) for best in (False, True) for bgp in (False, True)}
# Control-socket lines whose text is everything after the prefix: a route
# line, next hop or table heading (1007), a type (1008), an attribute
# (1012), or a continuation of the one before (a space). Runs of them are
# unwrapped at once; any other line (0000, 0001, 8001, ...) alone.
_RAW_COMMON = (b" ", b"1007-", b"1008-", b"1012-")
_RAW_CODES = (b"\n1007-", b"\n1008-", b"\n1012-")
_RAW_ODD = re.compile(rb"\n(?! |1007-|1008-|1012-)")
# What a line under a route line is, to the line machine (_Parser.kind).
_BLANK, _VIA, _DEV, _TYPE, _ATTRIBUTE, _UNKNOWN, _OTHER, _STOP = range(8)
_new = tuple.__new__  # Route(...) through NamedTuple's __new__ is 3x slower
_BAD = object()  # an attribute value that is an error (the line machine says which)
# The lines under a BGP route line as BIRD 2 prints them, in its order: next
# hops, type, then the attributes. Each line here is one the line machine
# reads as such (a next hop, the type, a kept or a skipped attribute; none
# it would take for a route line or a continuation), so a block that matches
# has the values of the groups: AS path, next hop(s), MED, local preference,
# communities, large communities.
_PRINTABLE = rb"[ -Z\\\]-~]*"  # ASCII, no control character, no '['
_STANDARD = re.compile(
    rb"(?:\t(?:via|dev) [!-Z\\\]-~]" + _PRINTABLE + rb"\n)*"
    rb"\tType: [A-Za-z ]*\n"
    rb"\tBGP\.origin: [A-Za-z]+\n"
    rb"\tBGP\.as_path:(?: ([0-9 ]*))?\n"
    rb"\tBGP\.next_hop: ([0-9A-Fa-f.:]+)(?: ([0-9A-Fa-f.:]+))?\n"
    rb"(?:\tBGP\.med: ([0-9]+)\n)?"
    rb"(?:\tBGP\.local_pref: ([0-9]+)\n)?"
    rb"(?:\tBGP\.atomic_aggr:(?: " + _PRINTABLE + rb")?\n)?"
    rb"(?:\tBGP\.aggregator: " + _PRINTABLE + rb"\n)?"
    rb"(?:\tBGP\.community: (" + _PRINTABLE + rb")\n)?"
    rb"(?:\tBGP\.(?:originator_id|cluster_list|ext_community): " + _PRINTABLE + rb"\n)*"
    rb"(?:\tBGP\.large_community: (" + _PRINTABLE + rb")\n)?").fullmatch
_NO_PATH = ("", None, None)  # what _Parser.path makes of an empty AS path


# Host bits and the length as a number, by prefix length as written.
_HOST4 = {str(n): ((1 << (32 - n)) - 1, n) for n in range(33)}
_HOST6 = {str(n): ((1 << (128 - n)) - 1, n) for n in range(129)}


def _fast_prefix(net: bytes) -> str | None:
    """``net`` as text when it is a prefix as ipaddress writes it (host bits
    zero), else None (then ipaddress reads it, slower, and says what is
    wrong)."""
    found = _fast_net(net)
    return found[0] if found is not None else None


def _fast_net(net: bytes) -> tuple[str, bool, bytes, int] | None:
    """What :func:`_fast_prefix` takes, as (text, IPv6?, packed address,
    length): the columns of a batch; else None."""
    if not net.isascii():
        return None
    text = net.decode()
    address, _, length = text.partition("/")
    if ":" in address:
        host = _HOST6.get(length)
        # Not with a dotted quad: inet_ntop and ipaddress write those differently.
        if host is None or "." in address:
            return None
        try:
            packed = inet_pton(AF_INET6, address)
        except OSError:
            return None
        if inet_ntop(AF_INET6, packed) != address:
            return None
        v6 = True
    else:
        host = _HOST4.get(length)
        if host is None:
            return None
        try:
            # Only a.b.c.d in decimal without leading zeros: as ipaddress writes it.
            packed = inet_pton(AF_INET, address)
        except OSError:
            return None
        v6 = False
    if int.from_bytes(packed, "big") & host[0]:
        return None
    return text, v6, packed, host[1]


class _Rows(list):
    """Routes as rows of :class:`~ipr.routing.dumps.batches.Columns`, in
    order: :meth:`append` takes the line machine's Routes, :meth:`add` the
    block loop's rows."""

    add = list.append

    def append(self, route: Route) -> None:
        from .batches import row

        list.append(self, row(route))


class _Pending:
    """The route being read: its line, then its next hops and attributes."""

    __slots__ = ("line", "prefix", "best", "gateways", "attrs", "attr_lines", "typed", "bgp")

    def __init__(self, line: int, prefix: str, best: bool, gateway: str | None, bgp: bool):
        self.line = line
        self.prefix = prefix
        self.best = best
        self.gateways = [gateway] if gateway else []
        self.attrs: dict[str, str] = {}
        self.attr_lines: dict[str, int] = {}
        self.typed = False
        self.bgp = bgp


class _Parser:
    """Two ways through a dump, with one result.

    The line machine (:meth:`unwrap` and :meth:`feed`) reads one line at a
    time and is the definition of what a dump means. The block loop
    (:meth:`text`) reads birdc text a route at a time: a route line and the
    tab-indented lines under it (its "block"), cut out by one regular
    expression per megabyte. It takes a block only where the line machine
    would make the same route of it without an error, and knows that from
    what it saw before: a block after its net (``bodies``), the end of a
    route line (``tails``), the lines under it (``blocks``) and each line's
    value (``kinds``, ``memo``) repeat across a table, so each distinct one
    is read once (a block in BIRD 2's own layout with one regular
    expression, :data:`_STANDARD`; any other line by line, as the line
    machine reads it). Any block it does not take (a new kind of line, an
    error, a table heading) goes through the line machine with its line
    numbers, so errors and their lines are the line machine's.
    """

    def __init__(self, source: str, accept_truncated: bool = False, blocks: bool = True):
        self.source = source
        self.accept_truncated = accept_truncated
        self.use_blocks = blocks  # False: the line machine reads every line (tests compare the two)
        self.attrs: dict[Attrs, Attrs] = {}
        self.paths: dict[str, tuple[str, int | None, int | None]] = {}
        self.communities: dict[tuple[str, str], str] = {}
        self.hops: dict[str, str] = {}
        # The line machine's state.
        self.raw: bool | None = None  # a control-socket capture? (decided by the first line)
        self.ended = True             # socket capture: the last reply line ended its reply
        self.cur: _Pending | None = None
        self.last_attr: str | None = None  # the attribute a continuation line extends
        self.net: str | None = None        # carried to routes with an empty net field
        self.out: list[Route] = []         # routes made, not yet handed out
        self.columns: _Rows | None = None  # batches(): ``out``, of rows (no Route)
        # The block loop's memory (bounded: caches, not copies of the table).
        self.bodies: dict[bytes, tuple[Attrs, bool] | bool] = {}
        self.old_bodies: dict[bytes, tuple[Attrs, bool] | bool] = {}  # the ones before
        self.tails: dict[bytes, tuple[bool, bool] | bool] = {}
        self.blocks: tuple[dict[str, Attrs | None], dict[str, Attrs | None]] = ({}, {})
        self.kinds: dict[str, tuple] = {}
        self.memo: dict[str, dict[bytes, object]] = {name: {} for name in (
            "next_hop", "med", "local_pref", "community", "large_community")}
        self.carry = b""      # the last block of the text so far: more lines may follow
        self.carry_line = 0   # its first line's number

    def error(self, line: int, message: str) -> DumpError:
        return DumpError(self.source, f"line {line}", message)

    # -- reading the stream ---------------------------------------------------------------

    def routes(self, stream: BinaryIO) -> Iterator[Route]:
        """Every route, in dump order; routes made before an error come out before it."""
        out = self.out
        try:
            for _ in self.read(stream):
                yield from out
                out.clear()
        except DumpError:
            done = out[:]
            out.clear()
            yield from done
            raise
        yield from out
        out.clear()

    def batches(self, stream: BinaryIO, size: int) -> Iterator[Batch]:
        """The routes of :meth:`routes` as batches, without making a Route
        where the block loop reads them; batches made before an error come
        out before it, as from_routes hands them out."""
        from .batches import Columns

        columns = Columns(size)
        rows = self.out = self.columns = _Rows()
        ready = columns.ready
        # The garbage collector is off (see read()) until batches are handed
        # out: once a batch, not once a megabyte.
        collect = gc.isenabled()
        try:
            gc.disable()
            for _ in self.read(stream):
                columns.extend(rows)
                rows.clear()
                if ready:
                    done = ready[:]
                    ready.clear()
                    if collect:
                        gc.enable()
                    yield from done
                    gc.disable()
        except DumpError:
            columns.extend(rows)
            rows.clear()
            if collect:
                gc.enable()
            done = ready[:]
            ready.clear()
            yield from done
            raise
        finally:
            if collect:
                gc.enable()
        columns.extend(rows)
        columns.end()
        yield from ready
        ready.clear()

    def read(self, stream: BinaryIO) -> Iterator[None]:
        """Read the stream in chunks of whole lines; yields after each chunk.

        At the end, checks that the dump ends where the format says: a
        socket capture with the line that ends a reply (``0000``), birdc's
        output with a newline (it has no end mark of its own).
        """
        read = getattr(stream, "read1", None) or stream.read
        n = 0                   # lines read
        partial: list[bytes] = []  # the start of a line longer than what was read so far
        while True:
            data = read(_CHUNK)
            if not data:
                break
            cut = data.rfind(b"\n") + 1
            if not cut:
                partial.append(data)
                continue
            if partial:
                partial.append(data[:cut])
                whole = b"".join(partial)
                partial = [data[cut:]] if cut < len(data) else []
            else:
                whole = data[:cut] if cut < len(data) else data
                if cut < len(data):
                    partial = [data[cut:]]
            # Without the cyclic garbage collector while a chunk is read: it
            # makes many objects, none in a cycle, and the collector's passes
            # over the caches would cost a fifth of the time.
            collect = gc.isenabled()
            gc.disable()
            try:
                n = self.chunk(whole, n)
            finally:
                if collect:
                    gc.enable()
            yield
        self.flush()
        last = b"".join(partial)
        if last:  # the last line, without its newline
            n += 1
            self.line(n, last)
        elif n == 0:
            last = b""
        if not self.accept_truncated and n:
            if self.raw and not self.ended:
                raise self.error(n, "the reply ends without BIRD's end line ('0000'): the dump is cut short")
            if not self.raw and last:
                raise self.error(n, "the last line has no newline: the dump is cut short")
        if self.cur is not None:
            self.out.append(self.finish(self.cur))
            self.cur = None
        yield

    def chunk(self, data: bytes, n: int) -> int:
        """Whole lines (``data`` ends with a newline) after line ``n``; the last line's number."""
        pos = 0
        end = len(data)
        returns = b"\r" in data or not self.use_blocks
        if self.raw is None or returns:
            # Until the first line that is not blank says which form this
            # is, and for lines with carriage returns: one line at a time.
            # (rstrip("\r\n") takes them off the end of each line.)
            self.flush()
            while pos < end and (self.raw is None or returns):
                nl = data.index(b"\n", pos) + 1
                n += 1
                self.line(n, data[pos:nl])
                pos = nl
            if pos == end:
                return n
            data = data[pos:]
            end -= pos
            pos = 0
        if not self.raw:
            self.text(data, n + 1)
            return n + data.count(b"\n")
        # A control-socket capture: runs of the common reply lines (route
        # lines, next hops, types and attributes: codes 1007, 1008 and 1012,
        # and continuations) become birdc's text by removing their prefixes;
        # any other line goes through the line machine alone.
        while pos < end:
            if data.startswith(_RAW_COMMON, pos):
                m = _RAW_ODD.search(data, pos, end - 1)
                stop = m.start() + 1 if m else end
                run = b"\n" + data[pos:stop]
                for code in _RAW_CODES:
                    run = run.replace(code, b"\n ")
                run = run.replace(b"\n ", b"\n")
                self.ended = False
                self.text(run[1:], n + 1)
                n += run.count(b"\n") - 1
                pos = stop
            else:
                self.flush()
                nl = data.index(b"\n", pos) + 1
                n += 1
                self.line(n, data[pos:nl])
                pos = nl
        return n

    def line(self, n: int, data: bytes) -> None:
        """One line through the line machine."""
        text = self.unwrap(n, data)
        if text is not None:
            self.feed(n, text)

    def unwrap(self, n: int, data: bytes) -> str | None:
        """The text of a line, with the control socket's reply code removed;
        None for a line that carries no text (a blank line before the first,
        the end of a reply, the welcome)."""
        raw = self.raw
        if raw is None:
            if not data.strip():
                return None
            raw = self.raw = _RAW.match(data) is not None
        if raw:
            m = _RAW.match(data)
            if m:
                code = int(m.group(1))
                text = data[5:]
                # "1007-" goes on; "0000 " (or "0000" alone) ends the reply
                # to 'show route'; "0001 " is only the welcome.
                self.ended = code == 0 and data[4:5] != b"-"
                if code >= 8000:
                    msg = text.decode("utf-8", "replace").strip()
                    raise self.error(n, f"BIRD replied with error {m.group(1).decode()}: {msg}")
                if code < 1000:  # 0000 end of reply, 0001 welcome, ...
                    return None
            elif data.startswith(b" "):
                text = data[1:]
                self.ended = False
            elif not data.strip():
                return None
            else:
                raise self.error(n, "expected a control-socket reply line ('1007-...' or ' ...')")
        else:
            text = data
        return text.decode("utf-8", "replace").rstrip("\r\n")

    # -- the line machine ------------------------------------------------------------------

    def feed(self, n: int, line: str) -> None:
        """One line of birdc text: a route line, a next hop, an attribute, ..."""
        cur = self.cur
        s = line.strip()
        if not s:
            self.last_attr = None
            return
        last_attr = self.last_attr
        if line.startswith("\t\t") and cur is not None and last_attr is not None:
            # BIRD wraps long values (communities) onto \t\t lines.
            if last_attr in cur.attrs:
                cur.attrs[last_attr] += " " + s
            return
        if "[" in s:
            m = _ROUTE.match(s)
            if m:
                if cur is not None:
                    self.cur = None
                    self.out.append(self.finish(cur))
                self.last_attr = None
                if m.group("net"):
                    self.net = self.prefix(n, m.group("net"))
                elif self.net is None:
                    raise self.error(n, "a route line without a network, and no network before it")
                dest = m.group("dest").split()
                gateway = dest[1] if dest[0] == "via" and len(dest) > 1 else None
                info = m.group("info")
                self.cur = _Pending(n, self.net, m.group("mark") is not None, gateway,
                                    info is not None and _BGP_INFO.match(info) is not None)
                return
        if s.startswith(("via ", "dev ")) and cur is not None:
            if s.startswith("via "):
                cur.gateways.append(s.split()[1])
            self.last_attr = None
            return
        if s.startswith("Table ") and s.endswith(":"):
            if cur is not None:
                self.cur = None
                self.out.append(self.finish(cur))
            self.cur, self.last_attr, self.net = None, None, None
            return
        m = _ATTR.match(s)
        if m and cur is not None:
            name = m.group("name")
            if name == "Type":
                cur.typed = True
                self.last_attr = None
                return
            key = _NAMES.get(name.lower())
            if key is not None:
                cur.attrs[key] = m.group("value") or ""
                cur.attr_lines[key] = n
                cur.typed = True
            # Unknown attributes (extended communities, BIRD 3's preference
            # and "Internal route handling values") are skipped, and so are
            # their continuation lines.
            self.last_attr = key or ""
            return
        if last_attr is not None and cur is not None and line[:1] in " \t":
            # A continuation in a capture whose tabs became spaces.
            if last_attr in cur.attrs:
                cur.attrs[last_attr] += " " + s
            return
        if s.startswith("BIRD ") and s.endswith(" ready."):
            return
        raise self.error(n, "expected a route line, a next hop, an attribute or a 'Table' heading"
                            f", got {s[:60]!r}")

    # -- the block loop ---------------------------------------------------------------------

    def flush(self) -> None:
        """The kept last block through the line machine (no more lines join it)."""
        if self.carry:
            data, self.carry = self.carry, b""
            self.slow(data, self.carry_line)

    def slow(self, data: bytes, n: int) -> None:
        """Whole lines of birdc text, the first being line ``n``, through the line machine."""
        lines = data.decode("utf-8", "replace").split("\n")
        lines.pop()  # after the last newline
        for line in lines:
            self.feed(n, line)
            n += 1

    def text(self, data: bytes, n: int) -> None:
        """birdc text of whole lines, the first being line ``n``.

        In blocks: a line that does not start with a tab, and the lines under
        it that do. A block is read here when its first line is a plain route
        line (a net as ipaddress writes it, or an empty net field), the rest
        of the block was seen before (or is read now without an error), and
        the next block is such a block too: its route line ends the route in
        the line machine as well. The last block is kept: the next text may
        add lines to it.
        """
        if self.carry:
            data = self.carry + data
            n = self.carry_line
        # (first word, the spaces after it, the rest of the line and the
        # lines under it): every line of the text, in order.
        found = _BLOCKS(data)
        last = len(found) - 1
        columns = self.columns
        emit = self.out.append if columns is None else columns.add
        bodies, by_body, fast_prefix, fast_net, new = self.bodies, self.body, _fast_prefix, _fast_net, _new
        tails, by_tail = self.tails, self.tail
        net = self.net
        net_columns = None      # (net, IPv6?, packed address, length), for columns
        at, at_line = 0, n      # a block and its first line's number, for the line machine
        pending = None          # the route of the block before, made here
        before = None           # the carried net before that block
        for k, (head, spaces, body) in enumerate(found):
            if k == last:
                # Only its first line is sure to be whole: it ends the route
                # of the block before if it is a plain route line.
                if pending is not None:
                    tail = body[:body.find(b"\n")]
                    flags = tails.get(tail)
                    if flags is None:
                        flags = by_tail(tail)
                    if flags and (not head or fast_prefix(head) is not None):
                        emit(pending)
                    else:
                        while at < k - 1:
                            at_line += found[at][2].count(b"\n")
                            at += 1
                        self.net = before
                        self.slow(b"".join(found[k - 1]), at_line)
                        net = self.net
                break
            got = bodies.get(body)
            if got is None:
                got = by_body(body)
            if got and head:
                parts = fast_net(head)
                if parts is None:
                    got = False
                    prefix = ""
                else:
                    prefix = parts[0]
            else:
                prefix = ""
            if pending is not None:
                if got:
                    emit(pending)
                else:  # the block before goes to the line machine after all
                    while at < k - 1:
                        at_line += found[at][2].count(b"\n")
                        at += 1
                    self.net = before
                    self.slow(b"".join(found[k - 1]), at_line)
                    net = self.net
                pending = None
            if got and (prefix or net is not None):
                if self.cur is not None:  # the route line ends the line machine's route
                    cur, self.cur = self.cur, None
                    self.out.append(self.finish(cur))
                before = net
                if prefix:
                    net = prefix
                if columns is None:
                    pending = new(Route, (net, *got))
                    continue
                if prefix:
                    net_columns = parts
                elif net_columns is None or net_columns[0] != net:
                    net_columns = self.net_columns(net)  # a net the line machine read
                pending = net_columns + got
                continue
            while at < k:
                at_line += found[at][2].count(b"\n")
                at += 1
            self.net = net
            self.slow(head + spaces + body, at_line)
            net = self.net
        self.net = net
        head, spaces, body = found[last]
        self.carry = head + spaces + body
        self.carry_line = n + data.count(b"\n") - body.count(b"\n")

    @staticmethod
    def net_columns(net: str) -> tuple[str, bool, bytes, int]:
        """(net, IPv6?, packed address, length) of a net as the line machine writes it."""
        address, _, length = net.partition("/")
        v6 = ":" in address
        return net, v6, inet_pton(AF_INET6 if v6 else AF_INET, address), int(length)

    def body(self, body: bytes) -> tuple[Attrs, bool] | bool:
        """(attributes, best) of a route whose route line ends with ``body``'s
        first line (from after the spaces after the net) and whose other lines
        are the rest of ``body``; False where the line machine must read it."""
        got = self.old_bodies.get(body)
        if got is None:
            got = self.read_body(body)
        bodies = self.bodies
        if len(bodies) >= _BODIES_KEPT:
            # The older generation goes, the newer becomes the older.
            self.old_bodies = bodies.copy()
            bodies.clear()
        bodies[body] = got
        return got

    def read_body(self, body: bytes) -> tuple[Attrs, bool] | bool:
        """What body() says of a block it has not kept."""
        i = body.find(b"\n")
        tail, rest = body[:i], body[i + 1:]
        flags = self.tails.get(tail)
        if flags is None:
            flags = self.tail(tail)
        got: tuple[Attrs, bool] | bool = False
        if flags:
            best, bgp = flags
            # BIRD 2's own layout first (what block() tries first): such
            # blocks are not kept in ``blocks``.
            m = _STANDARD(rest)
            attrs = self.standard(*m.groups()) if m is not None else None
            if attrs is None:
                attrs = self.blocks[0 if bgp else 1].get(rest, False)
                if attrs is False:
                    attrs = self.block(rest, bgp)
            if attrs is not None:
                got = (attrs, best)
        return got

    def tail(self, tail: bytes) -> tuple[bool, bool] | bool:
        """What a route line says after its net and the spaces after it:
        (best, BGP); False for a line the block loop leaves to the line
        machine (not a route line, one with its next hop on it (BIRD 1), one
        that reads as having a net, one with another blank after the net)."""
        flags: tuple[bool, bool] | bool = False
        text = tail.decode("utf-8", "replace")
        if text and not text[0].isspace():
            m = _ROUTE.match(text.rstrip())
            if m is not None and not m.group("net") and m.group("dest").split()[0] != "via":
                info = m.group("info")
                flags = _FLAGS[m.group("mark") is not None,
                               info is not None and _BGP_INFO.match(info) is not None]
        if len(self.tails) >= _TAILS_KEPT:
            self.tails.clear()
        self.tails[tail] = flags
        return flags

    def block(self, rest: bytes, bgp: bool) -> Attrs | None:
        """The attributes of a route whose lines under its route line are
        ``rest``, as the line machine would read them; None where the line
        machine must read them (a line it would end the route at, or an
        error)."""
        m = _STANDARD(rest)
        if m is not None:
            # (Not kept in ``blocks``: fewer entries for the garbage collector
            # to walk; the values of its lines are kept, which is what costs.)
            attrs = self.standard(*m.groups())
            if attrs is not None:
                return attrs
        texts: dict[str, str] | None = {}  # attribute values as text, as the line machine has them
        values: dict = {}                  # the same, read (each line's value is read once)
        plain = True                       # no value continued on another line
        gateways: list[str] = []
        typed = False
        last_attr: str | None = None
        kinds = self.kinds
        lines = rest.decode("utf-8", "replace").split("\n")
        lines.pop()  # after the last newline
        for line in lines:
            if last_attr is not None and line.startswith("\t\t"):
                s = line.strip()
                if not s:
                    last_attr = None
                elif last_attr in texts:
                    texts[last_attr] += " " + s
                    plain = False
                continue
            kind = kinds.get(line)
            if kind is None:
                kind = self.kind(line)
            what = kind[0]
            if what == _ATTRIBUTE:
                texts[kind[1]] = kind[2]
                values[kind[1]] = kind[3]
                typed = True
                last_attr = kind[1]
            elif what == _UNKNOWN:
                last_attr = ""
            elif what == _TYPE:
                typed = True
                last_attr = None
            elif what == _VIA:
                gateways.append(kind[1])
                last_attr = None
            elif what == _DEV or what == _BLANK:
                last_attr = None
            elif what == _OTHER and last_attr is not None and kind[2]:
                if last_attr in texts:
                    texts[last_attr] += " " + kind[1]
                    plain = False
            elif what == _OTHER and kind[3]:
                pass
            else:  # a route line, a table heading, a line that is an error
                texts = None
                break
        attrs = None
        if texts is None or bgp and not (typed and "as_path" in texts and "next_hop" in texts):
            pass  # the line machine says what is wrong
        elif plain and _BAD not in values.values():
            # What attributes() makes of the same values, from the values read.
            as_path, origin, neighbor = values.get("as_path", _NO_PATH)
            next_hop = None
            if "next_hop" in values:
                next_hop = values["next_hop"]
            elif gateways:
                next_hop = self.hops.get(gateways[0])
                if next_hop is None:
                    try:
                        next_hop = self.address(gateways[0], 0)
                    except DumpError:
                        next_hop = _BAD
                next_hop = next_hop or None
            if next_hop is not _BAD:
                standard = values.get("community", "")
                large = values.get("large_community", "")
                attrs = _new(Attrs, (next_hop, as_path, origin, neighbor, values.get("local_pref"),
                                     values.get("med"), f"{standard} {large}" if standard and large
                                     else standard or large))
                attrs = self.attrs.setdefault(attrs, attrs)
        else:
            cur = _Pending(0, "", False, None, bgp)
            cur.attrs, cur.gateways, cur.typed = texts, gateways, typed
            cur.attr_lines = dict.fromkeys(texts, 0)
            try:
                attrs = self.attributes(cur)
            except DumpError:
                pass
        cache = self.blocks[0 if bgp else 1]
        if len(cache) >= _BLOCKS_KEPT:
            cache.clear()
        cache[rest] = attrs
        return attrs

    def standard(self, path: bytes | None, hop: bytes, other_hop: bytes | None, med: bytes | None,
                 local_pref: bytes | None, community: bytes | None, large: bytes | None) -> Attrs | None:
        """The attributes of a block _STANDARD matched, from its groups; None
        if a value is an error (the line machine says which)."""
        memo = self.memo
        try:
            found = self.path(path.decode().strip() if path else "", 0)
        except DumpError:
            return None
        hops = hop + b" " + other_hop if other_hop else hop
        next_hop = memo["next_hop"].get(hops)
        if next_hop is None:
            next_hop = self.remember("next_hop", hops)
        if next_hop is _BAD:
            return None
        memo_med, memo_pref = memo["med"], memo["local_pref"]
        med_value = pref_value = None
        standard = large_text = ""
        if med is not None:
            med_value = memo_med.get(med)
            if med_value is None:
                med_value = self.remember("med", med)
        if local_pref is not None:
            pref_value = memo_pref.get(local_pref)
            if pref_value is None:
                pref_value = self.remember("local_pref", local_pref)
        if community is not None:
            standard = memo["community"].get(community)
            if standard is None:
                standard = self.remember("community", community)
        if large is not None:
            large_text = memo["large_community"].get(large)
            if large_text is None:
                large_text = self.remember("large_community", large)
        if med_value is _BAD or pref_value is _BAD or standard is _BAD or large_text is _BAD:
            return None
        as_path, origin, neighbor = found
        attrs = _new(Attrs, (next_hop or None, as_path, origin, neighbor, pref_value, med_value,
                             f"{standard} {large_text}" if standard and large_text else standard or large_text))
        return self.attrs.setdefault(attrs, attrs)

    def remember(self, name: str, text: bytes):
        """value() of an attribute's text in a _STANDARD block, remembered."""
        known = self.value(name, text.decode().strip())
        if name == "next_hop" and known is None:
            known = ""  # no next hop (remembered as "": None means not known)
        memo = self.memo[name]
        if len(memo) >= _LINES_KEPT:
            memo.clear()
        memo[text] = known
        return known

    def kind(self, line: str) -> tuple:
        """What the line machine makes of a line under a route line, apart
        from continuations (which depend on the line before); for a kept
        attribute, its value read as attributes() reads it (_BAD if it
        cannot be)."""
        s = line.strip()
        if not s:
            kind = (_BLANK,)
        elif "[" in s and _ROUTE.match(s):
            kind = (_STOP,)
        elif s.startswith("via "):
            kind = (_VIA, s.split()[1])
        elif s.startswith("dev "):
            kind = (_DEV,)
        elif s.startswith("Table ") and s.endswith(":"):
            kind = (_STOP,)
        else:
            m = _ATTR.match(s)
            if m:
                name = m.group("name")
                key = _NAMES.get(name.lower())
                if name == "Type":
                    kind = (_TYPE,)
                elif key is not None:
                    value = m.group("value") or ""
                    kind = (_ATTRIBUTE, key, value, self.value(key, value))
                else:
                    kind = (_UNKNOWN,)
            else:
                # Continues the attribute before it if there is one and the
                # line starts with a blank; else skipped if it is a banner,
                # else an error.
                kind = (_OTHER, s, line[:1] in " \t", s.startswith("BIRD ") and s.endswith(" ready."))
        if len(self.kinds) >= _LINES_KEPT:
            self.kinds.clear()
        self.kinds[line] = kind
        return kind

    def value(self, key: str, text: str):
        """An attribute's value as attributes() reads it, or _BAD."""
        try:
            if key == "as_path":
                return self.path(text, 0)
            if key == "next_hop":
                hops = text.split()
                hop = (hops[1] if hops[0] == "::" and len(hops) > 1 else hops[0]) if hops else None
                return self.address(hop, 0)
            if key == "community" or key == "large_community":
                pattern = _COMMUNITY if key == "community" else _LARGE
                if pattern.sub("", text).strip():
                    return _BAD
                return " ".join(":".join(f) for f in pattern.findall(text))
        except DumpError:
            return _BAD
        # local_pref, med
        if not (text.isascii() and text.isdigit()) or len(text) > 10 or int(text) > U32_MAX:
            return _BAD
        return int(text)

    # -- a route's attributes ---------------------------------------------------------------

    def prefix(self, n: int, text: str) -> str:
        try:
            return str(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise self.error(n, f"{text!r} is not an IP prefix") from None

    def finish(self, cur: _Pending) -> Route:
        return _new(Route, (cur.prefix, self.attributes(cur), cur.best))

    def attributes(self, cur: _Pending) -> Attrs:
        """The route's attributes, the same object as any equal ones before."""
        a = cur.attrs
        if cur.bgp and not cur.typed:
            raise self.error(cur.line, "a BGP route without its attribute lines: "
                                       "the dump must come from 'show route all'")
        if cur.bgp and not ("as_path" in a and "next_hop" in a):
            # BIRD prints both for every BGP route: a dump cut in the route's lines.
            missing = " and ".join(k for k in ("as_path", "next_hop") if k not in a)
            raise self.error(cur.line, f"a BGP route without its {missing} attribute: "
                                       f"the route's lines are cut short")
        as_path, origin, neighbor = self.path(a.get("as_path", ""), cur.attr_lines.get("as_path"))
        next_hop = None
        if "next_hop" in a:
            hops = a["next_hop"].split()
            if hops:
                next_hop = hops[1] if hops[0] == "::" and len(hops) > 1 else hops[0]
            next_hop = self.address(next_hop, cur.attr_lines["next_hop"])
        elif cur.gateways:
            next_hop = self.address(cur.gateways[0], cur.line)
        attrs = _new(Attrs, (next_hop, as_path, origin, neighbor,
                             self.number(a, "local_pref", cur), self.number(a, "med", cur),
                             self.community_text(a.get("community", ""), a.get("large_community", ""), cur)))
        return self.attrs.setdefault(attrs, attrs)

    def address(self, text: str | None, line: int) -> str | None:
        if text is None:
            return None
        known = self.hops.get(text)
        if known is None:
            try:
                address = ipaddress.ip_address(text)
            except ValueError:
                raise self.error(line, f"expected a next-hop address, got {text!r}") from None
            known = "" if address.is_unspecified else str(address)
            if len(self.hops) > 100_000:
                self.hops.clear()
            self.hops[text] = known
        return known or None

    def number(self, a: dict[str, str], key: str, cur: _Pending) -> int | None:
        value = a.get(key)
        if value is None:
            return None
        if not (value.isascii() and value.isdigit()) or len(value) > 10 or int(value) > U32_MAX:
            raise self.error(cur.attr_lines[key], f"{key} must be an integer in 0..2^32-1, got {value[:40]!r}")
        return int(value)

    def path(self, text: str, line: int | None) -> tuple[str, int | None, int | None]:
        known = self.paths.get(text)
        if known is not None:
            return known
        if text.isascii() and text.replace(" ", "").isdigit():
            # One AS_SEQUENCE (most paths): what path_asns makes of it.
            tokens = text.split()
            asns = list(map(int, tokens))
            if max(asns) <= _MAX_ASN:
                # Numbers as str() writes them unless one has a leading zero.
                written = " ".join(tokens) if " 0" not in " " + text else " ".join(map(str, asns))
                result = (written, asns[-1], asns[0] or None)
                if len(self.paths) > 200_000:
                    self.paths.clear()
                self.paths[text] = result
                return result
        segments: list[tuple[str, list[int]]] = []
        kind = "seq"
        current: list[int] | None = None  # the segment numbers go to
        for token in _PATH_TOKEN.findall(text):
            if token.isdigit():
                asn = int(token)
                if asn > _MAX_ASN:
                    raise self.error(line, f"AS number {token} out of range")
                if current is None:
                    current = []
                    segments.append(("seq", current))
                current.append(asn)
            elif kind == "seq" and token in _OPEN:
                kind = _OPEN[token]
                current = []
                segments.append((kind, current))
            elif kind != "seq" and _CLOSE.get(token) == kind:
                kind = "seq"
                current = None
            else:
                raise self.error(line, f"unexpected {token!r} in AS path {text!r}")
        if kind != "seq":
            raise self.error(line, f"unclosed segment in AS path {text!r}")
        result = path_asns(s for s in segments if s[1])
        if len(self.paths) > 200_000:  # a cache, not a copy of the table
            self.paths.clear()
        self.paths[text] = result
        return result

    def community_text(self, standard: str, large: str, cur: _Pending) -> str:
        key = (standard, large)
        known = self.communities.get(key)
        if known is not None:
            return known
        parts = []
        for value, pattern, name in ((standard, _COMMUNITY, "community"),
                                     (large, _LARGE, "large_community")):
            found = pattern.findall(value)
            if pattern.sub("", value).strip():
                raise self.error(cur.attr_lines[name], f"cannot read {name} {value!r}")
            parts.extend(":".join(f) for f in found)
        text = " ".join(parts)
        if len(self.communities) > 200_000:
            self.communities.clear()
        self.communities[key] = text
        return text


def parse(stream: BinaryIO, source: str = "bird", *, accept_truncated: bool = False) -> Iterator[Route]:
    """Routes of a BIRD ``show route all`` dump (birdc output or a socket capture).

    A dump that does not end where the format says (see :meth:`_Parser.lines`)
    is a DumpError at its last line, raised before the route it cuts is
    yielded; ``accept_truncated=True`` skips that check (the other checks stay).
    """
    return _Parser(source, accept_truncated).routes(stream)


def batches(stream: BinaryIO, source: str = "bird", *, accept_truncated: bool = False,
            size: int | None = None) -> Iterator[Batch]:
    """The routes of :func:`parse` as :class:`~ipr.routing.dumps.batches.Batch`
    columns: the batches ``from_routes(parse(...))`` makes, and the same
    errors, without a Route for each route (the loader's way)."""
    from .batches import SIZE

    return _Parser(source, accept_truncated).batches(stream, size or SIZE)
