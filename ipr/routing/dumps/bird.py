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
"""

from __future__ import annotations

import ipaddress
import re
from typing import BinaryIO, Iterator

from . import U32_MAX, Attrs, DumpError, Route, path_asns

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
    def __init__(self, source: str, accept_truncated: bool = False):
        self.source = source
        self.accept_truncated = accept_truncated
        self.attrs: dict[Attrs, Attrs] = {}
        self.paths: dict[str, tuple[str, int | None, int | None]] = {}
        self.communities: dict[tuple[str, str], str] = {}
        self.hops: dict[str, str] = {}

    def error(self, line: int, message: str) -> DumpError:
        return DumpError(self.source, f"line {line}", message)

    def lines(self, stream: BinaryIO) -> Iterator[tuple[int, str]]:
        """(line number, text) with the control socket's reply codes removed.

        At the end, checks that the dump ends where the format says: a
        socket capture with the line that ends a reply (``0000``), birdc's
        output with a newline (it has no end mark of its own).
        """
        raw = None
        ended = True  # socket capture: the last reply line ended its reply
        n, data = 0, b""
        for n, data in enumerate(stream, 1):
            if raw is None:
                if not data.strip():
                    continue
                raw = _RAW.match(data) is not None
            if raw:
                m = _RAW.match(data)
                if m:
                    code = int(m.group(1))
                    text = data[5:]
                    # "1007-" goes on; "0000 " (or "0000" alone) ends the reply
                    # to 'show route'; "0001 " is only the welcome.
                    ended = code == 0 and data[4:5] != b"-"
                    if code >= 8000:
                        msg = text.decode("utf-8", "replace").strip()
                        raise self.error(n, f"BIRD replied with error {m.group(1).decode()}: {msg}")
                    if code < 1000:  # 0000 end of reply, 0001 welcome, ...
                        continue
                elif data.startswith(b" "):
                    text = data[1:]
                    ended = False
                elif not data.strip():
                    continue
                else:
                    raise self.error(n, "expected a control-socket reply line ('1007-...' or ' ...')")
            else:
                text = data
            yield n, text.decode("utf-8", "replace").rstrip("\r\n")
        if self.accept_truncated or n == 0:
            return
        if raw and not ended:
            raise self.error(n, "the reply ends without BIRD's end line ('0000'): the dump is cut short")
        if not raw and not data.endswith(b"\n"):
            raise self.error(n, "the last line has no newline: the dump is cut short")

    def routes(self, stream: BinaryIO) -> Iterator[Route]:
        cur: _Pending | None = None
        last_attr: str | None = None  # the attribute a continuation line extends
        net: str | None = None        # carried to routes with an empty net field
        for n, line in self.lines(stream):
            s = line.strip()
            if not s:
                last_attr = None
                continue
            if line.startswith("\t\t") and cur is not None and last_attr is not None:
                # BIRD wraps long values (communities) onto \t\t lines.
                if last_attr in cur.attrs:
                    cur.attrs[last_attr] += " " + s
                continue
            if "[" in s:
                m = _ROUTE.match(s)
                if m:
                    if cur is not None:
                        yield self.finish(cur)
                    last_attr = None
                    if m.group("net"):
                        net = self.prefix(n, m.group("net"))
                    elif net is None:
                        raise self.error(n, "a route line without a network, and no network before it")
                    dest = m.group("dest").split()
                    gateway = dest[1] if dest[0] == "via" and len(dest) > 1 else None
                    info = m.group("info")
                    cur = _Pending(n, net, m.group("mark") is not None, gateway,
                                   info is not None and _BGP_INFO.match(info) is not None)
                    continue
            if s.startswith(("via ", "dev ")) and cur is not None:
                if s.startswith("via "):
                    cur.gateways.append(s.split()[1])
                last_attr = None
                continue
            if s.startswith("Table ") and s.endswith(":"):
                if cur is not None:
                    yield self.finish(cur)
                cur, last_attr, net = None, None, None
                continue
            m = _ATTR.match(s)
            if m and cur is not None:
                name = m.group("name")
                if name == "Type":
                    cur.typed = True
                    last_attr = None
                    continue
                key = _NAMES.get(name.lower())
                if key is not None:
                    cur.attrs[key] = m.group("value") or ""
                    cur.attr_lines[key] = n
                    cur.typed = True
                # Unknown attributes (extended communities, BIRD 3's preference
                # and "Internal route handling values") are skipped, and so are
                # their continuation lines.
                last_attr = key or ""
                continue
            if last_attr is not None and cur is not None and line[:1] in " \t":
                # A continuation in a capture whose tabs became spaces.
                if last_attr in cur.attrs:
                    cur.attrs[last_attr] += " " + s
                continue
            if s.startswith("BIRD ") and s.endswith(" ready."):
                continue
            raise self.error(n, "expected a route line, a next hop, an attribute or a 'Table' heading"
                                f", got {s[:60]!r}")
        if cur is not None:
            yield self.finish(cur)

    def prefix(self, n: int, text: str) -> str:
        try:
            return str(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise self.error(n, f"{text!r} is not an IP prefix") from None

    def finish(self, cur: _Pending) -> Route:
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
        attrs = Attrs(next_hop, as_path, origin, neighbor,
                      self.number(a, "local_pref", cur), self.number(a, "med", cur),
                      self.community_text(a.get("community", ""), a.get("large_community", ""), cur))
        attrs = self.attrs.setdefault(attrs, attrs)
        return Route(cur.prefix, attrs, cur.best)

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
