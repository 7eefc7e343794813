#!/usr/bin/env python3
"""An MRT table as BIRD 2 prints it: ``birdc show route all`` text.

    .venv/bin/python bench/bird_table.py IN.mrt OUT.txt [--socket]

Reads the routes of an MRT RIB dump (``mrt.entries``: prefix, attributes,
peer, ORIGIN, the best path as ``mark_best`` decides) and writes them the
way BIRD 2.0 prints ``show route all`` for ``master4`` and ``master6``
(docs/routing-text.md, and the real captures in the shared samples):

- each MRT peer is a BGP protocol ``bgp_<asn>`` (``bgp_<asn>_<n>`` when two
  peers share an ASN); ``from <peer>`` when the peer is not the next hop,
  as BIRD prints it for multihop and iBGP sessions (then the IGP metric is
  unknown: ``(100/?)``);
- the routes of a prefix follow one another, the best first with ``*``
  (BIRD keeps its primary route at the head of the net), the others with
  an empty net field;
- a ``via <next hop> on eth0`` line (``dev eth0`` without next hop), then
  ``Type: BGP univ`` and the attributes in BIRD's order: BGP.origin,
  BGP.as_path, BGP.next_hop, BGP.med, BGP.local_pref, BGP.community,
  BGP.large_community, with BIRD's value syntax; long community lists are
  wrapped onto ``\\t\\t`` lines where BIRD's 500-byte line buffer wraps them;
- birdc's output: the ``BIRD 2.0.12 ready.`` banner, ``Table master4:``,
  an empty line and ``Table master6:`` before the IPv6 routes. With
  ``--socket`` the raw control-socket reply instead: ``0001`` welcome,
  ``1007-`` / ``1008-`` / ``1012-`` codes where the code changes, one space
  before the lines that keep it, ``0000`` at the end.

Deterministic: the same MRT file gives the same bytes. ``OUT`` ending in
.gz is gzip'ed.
"""
from __future__ import annotations

import argparse
import gzip
import sys
import time
from pathlib import Path
from typing import Iterable, Iterator

ROOT = Path(__file__).resolve().parents[1]
BANNER = "BIRD 2.0.12 ready."
ORIGIN_NAMES = {"IGP": "IGP", "EGP": "EGP", "INCOMPLETE": "Incomplete"}
ORIGIN_CODES = {"IGP": "i", "EGP": "e", "INCOMPLETE": "?"}
# BIRD's CLI line buffer (CLI_MSG_SIZE), and what int_set_format and
# lc_set_format keep free at its end before they wrap a list.
LINE_BUFFER = 500
KEEP_FREE = {"community": 24, "large_community": 64}


def wrapped(name: str, items: list[str]) -> list[str]:
    """The attribute line of a set value and its ``\\t\\t`` continuations.

    BIRD writes ``BGP.<name>: `` into its 500-byte buffer and the items
    after it, and starts a new line when what it wrote passes the buffer
    less the room it keeps free; a continuation line has the whole buffer
    less one byte.
    """
    head = f"BGP.{name}: "
    lines: list[str] = []
    room = LINE_BUFFER - len(head)
    current: list[str] = []
    used = 0
    for item in items:
        if current and used > room - KEEP_FREE[name]:
            lines.append(" ".join(current))
            current, used, room = [], 0, LINE_BUFFER - 1
        used += len(item) + (1 if current else 0)
        current.append(item)
    lines.append(" ".join(current))
    return [f"\t{head}{lines[0]}"] + [f"\t\t{line}" for line in lines[1:]]


class Writer:
    """BIRD 2 text of MRT entries, one route at a time."""

    def __init__(self, socket: bool = False):
        self.socket = socket
        self.protocols: dict[tuple[str, int], str] = {}
        self.blocks: dict[tuple, list[tuple[int, str]]] = {}
        self.days: dict[int, str] = {}
        self.last_code: int | None = None
        self.table: str | None = None

    def protocol(self, peer_ip: str, peer_as: int) -> str:
        key = (peer_ip, peer_as)
        name = self.protocols.get(key)
        if name is None:
            name = f"bgp_{peer_as}"
            taken = set(self.protocols.values())
            k = 2
            while name in taken:
                name = f"bgp_{peer_as}_{k}"
                k += 1
            self.protocols[key] = name
        return name

    def day(self, stamp: int) -> str:
        # BIRD 2's default route time format prints the date alone for a
        # route older than 20 hours: a dump's routes are.
        text = self.days.get(stamp)
        if text is None:
            text = self.days[stamp] = time.strftime("%Y-%m-%d", time.gmtime(stamp))
        return text

    def block(self, attrs, origin: str, v6: bool) -> list[tuple[int, str]]:
        """The lines after the route line: (reply code, text)."""
        key = (attrs, origin, v6)
        lines = self.blocks.get(key)
        if lines is not None:
            return lines
        hop = attrs.next_hop
        lines = [(1007, f"\tvia {hop} on eth0" if hop else "\tdev eth0"),
                 (1008, "\tType: BGP univ"),
                 (1012, f"\tBGP.origin: {ORIGIN_NAMES[origin or 'IGP']}"),
                 (1012, f"\tBGP.as_path: {attrs.as_path}"),
                 (1012, f"\tBGP.next_hop: {hop or ('::' if v6 else '0.0.0.0')}")]
        if attrs.med is not None:
            lines.append((1012, f"\tBGP.med: {attrs.med}"))
        if attrs.local_pref is not None:
            lines.append((1012, f"\tBGP.local_pref: {attrs.local_pref}"))
        standard, large = [], []
        for c in attrs.communities.split():
            parts = c.split(":")
            if len(parts) == 2:
                standard.append(f"({parts[0]},{parts[1]})")
            else:
                large.append(f"({parts[0]}, {parts[1]}, {parts[2]})")
        if standard:
            lines.extend((1012, line) for line in wrapped("community", standard))
        if large:
            lines.extend((1012, line) for line in wrapped("large_community", large))
        if len(self.blocks) > 500_000:
            self.blocks.clear()
        self.blocks[key] = lines
        return lines

    def emit(self, code: int, text: str) -> str:
        if not self.socket:
            return text + "\n"
        if code == self.last_code:
            return " " + text + "\n"
        self.last_code = code
        return f"{code}-{text}\n"

    def start(self) -> str:
        return f"0001 {BANNER}\n" if self.socket else f"{BANNER}\n"

    def end(self) -> str:
        return "0000 \n" if self.socket else ""

    def heading(self, table: str) -> str:
        out = self.emit(1007, "") if self.table is not None else ""
        self.table = table
        return out + self.emit(1007, f"Table {table}:")

    def prefix_routes(self, prefix: str, entries: list) -> str:
        """Every route of one prefix, the best first."""
        v6 = ":" in prefix
        table = "master6" if v6 else "master4"
        out = [self.heading(table)] if table != self.table else []
        ordered = [e for e in entries if e.route.best] + [e for e in entries if not e.route.best]
        for i, e in enumerate(ordered):
            attrs = e.route.attrs
            path = attrs.as_path
            last = path.rsplit(" ", 1)[-1]
            origin_as = f"AS{last}" if path and not path.endswith("}") else ""
            hop = attrs.next_hop
            direct = hop == e.peer_ip
            source = "" if direct else f" from {e.peer_ip}"
            mark = " *" if e.route.best else ""
            info = f" (100) [{origin_as}{ORIGIN_CODES[e.origin or 'IGP']}]" if direct else \
                f" (100/?) [{origin_as}{ORIGIN_CODES[e.origin or 'IGP']}]"
            net = f"{prefix:<20}" if i == 0 else " " * 20
            out.append(self.emit(1007, f"{net} unicast [{self.protocol(e.peer_ip, e.peer_as)} "
                                       f"{self.day(e.time)}{source}]{mark}{info}"))
            out.extend(self.emit(code, text) for code, text in self.block(attrs, e.origin, v6))
        return "".join(out)


def text(entries: Iterable, socket: bool = False) -> Iterator[str]:
    """The dump as pieces of text (each the routes of one prefix)."""
    writer = Writer(socket)
    yield writer.start()
    group: list = []
    for e in entries:
        if group and e.route.prefix != group[0].route.prefix:
            yield writer.prefix_routes(group[0].route.prefix, group)
            group = []
        group.append(e)
    if group:
        yield writer.prefix_routes(group[0].route.prefix, group)
    if writer.table is None:  # no routes: BIRD still prints the heading
        yield writer.heading("master4")
    yield writer.end()


def write(mrt_path: str, out_path: str, socket: bool = False) -> dict:
    """Write the BIRD text of the MRT file ``mrt_path`` to ``out_path``."""
    sys.path.insert(0, str(ROOT))
    from ipr.routing.dumps import mrt

    routes = prefixes = 0
    out = (gzip.open(out_path, "wt", encoding="utf-8", compresslevel=6) if out_path.endswith(".gz")
           else open(out_path, "w", encoding="utf-8", buffering=1 << 20))

    def counted(entries):
        nonlocal routes, prefixes
        last = None
        for e in entries:
            routes += 1
            if e.route.prefix != last:
                prefixes += 1
                last = e.route.prefix
            yield e

    with mrt.open_dump(mrt_path) as f, out:
        for piece in text(counted(mrt.entries(f, source=mrt_path)), socket):
            out.write(piece)
    return {"routes": routes, "prefixes": prefixes, "socket": socket}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mrt", help="an MRT RIB dump (bench/mrt_table.py writes one)")
    ap.add_argument("out")
    ap.add_argument("--socket", action="store_true",
                    help="the raw control-socket reply (reply codes, 0000 at the end), not birdc's output")
    args = ap.parse_args(argv)
    summary = write(args.mrt, args.out, args.socket)
    print(" ".join(f"{k}={v}" for k, v in summary.items()))


if __name__ == "__main__":
    sys.exit(main())
