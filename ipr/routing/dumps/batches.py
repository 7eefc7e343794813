"""Routes in columns: what the loader reads, from any parser.

A full table is millions of routes; the loader turns them into database
rows and a lookup engine with numpy, a batch at a time, instead of a Python
step per route. A :class:`Batch` holds up to ``size`` routes of one address
family, in dump order:

- ``addr``: (n, 4) or (n, 16) uint8, the prefix's address, host bits zero;
- ``plen``: (n,) uint8, its length;
- ``attr``: (n,) uint32, the route's attribute set: its number in this
  parse, 0, 1, 2, ... in order of first appearance. Two routes have the
  same number exactly when their :class:`~ipr.routing.dumps.Attrs` are
  equal (by value, not by the bytes they were read from);
- ``best``: (n,) bool, the route the router uses for its prefix;
- ``attrs``: the attribute sets first seen in this batch, numbered from
  ``first_attr`` on (so ``first_attr + len(attrs)`` is the next number).

The routes of one prefix, when adjacent in the dump, are in one batch (a
batch never cuts a group), so ``best`` is final when a batch is handed out.

:func:`from_routes` makes batches of any parser's :class:`Route` iterator
(FRR, and the pure-Python MRT parser): the pure-Python way. The BIRD
parser fills :class:`Columns` a route at a time with what it has at hand
(the packed address, the length), without making a Route. The compiled MRT
parser (``ipr.routing.dumps._mrt``) makes the same batches directly. Tests
require each to give the batches ``from_routes`` makes of the same routes,
and the same errors.
"""
from __future__ import annotations

import socket
from array import array
from typing import Iterable, Iterator, NamedTuple

import numpy as np

from ipr.routing.dumps import Attrs, Route

SIZE = 65536  # routes per batch


class Batch(NamedTuple):
    v6: bool
    addr: np.ndarray
    plen: np.ndarray
    attr: np.ndarray
    best: np.ndarray
    attrs: list[Attrs]
    first_attr: int

    def __len__(self) -> int:  # the number of routes, not of fields
        return len(self.plen)

    def prefixes(self) -> list[str]:
        """The routes' prefixes as text ('192.0.2.0/24'), for the slow paths."""
        family = socket.AF_INET6 if self.v6 else socket.AF_INET
        ntop = socket.inet_ntop
        raw = self.addr.tobytes()
        width = 16 if self.v6 else 4
        return [f"{ntop(family, raw[i * width:(i + 1) * width])}/{n}" for i, n in enumerate(self.plen.tolist())]


def from_routes(routes: Iterable[Route], size: int = SIZE) -> Iterator[Batch]:
    """Batches of a Route iterator. ``best``: True where the route says True
    or None (a dump that does not say: its only route), else False.

    Holds one number per distinct attribute set (a dict by value).
    """
    numbers: dict[Attrs, int] = {}
    by_id: dict[int, int] = {}       # id(Attrs object) -> number: parsers share equal objects
    keep: list = []                  # the objects behind by_id's keys stay alive
    pton = socket.inet_pton
    v6 = None
    addr = bytearray()
    plen = bytearray()
    attr: list[int] = []
    best = bytearray()
    new: list[Attrs] = []
    first = 0
    last = None

    def cut() -> Batch:
        nonlocal addr, plen, attr, best, new, first
        n = len(plen)
        batch = Batch(bool(v6), np.frombuffer(bytes(addr), np.uint8).reshape(n, 16 if v6 else 4),
                      np.frombuffer(bytes(plen), np.uint8), np.array(attr, np.uint32),
                      np.frombuffer(bytes(best), np.bool_), new, first)
        addr, plen, attr, best = bytearray(), bytearray(), [], bytearray()
        first += len(new)
        new = []
        return batch

    for prefix, attrs, is_best in routes:
        text, _, length = prefix.partition("/")
        family_v6 = ":" in text
        if plen and (family_v6 != v6 or (prefix != last and len(plen) >= size)):
            yield cut()  # a new family, or a full batch and a new prefix
        v6 = family_v6
        last = prefix
        number = by_id.get(id(attrs))
        if number is None:
            number = numbers.get(attrs)
            if number is None:
                number = numbers[attrs] = len(numbers)
                new.append(attrs)
            by_id[id(attrs)] = number
            keep.append(attrs)
        addr += pton(socket.AF_INET6 if family_v6 else socket.AF_INET, text)
        plen.append(int(length))
        attr.append(number)
        best.append(is_best is not False)
    if plen:
        yield cut()


class Columns:
    """Batches made of rows, by a parser that has the columns at hand: the
    same batches as :func:`from_routes` makes of the same routes.

    A row is (prefix, IPv6?, packed address, length, attributes, best);
    :func:`row` makes one of a :class:`Route`. :meth:`extend` adds rows in
    order; a batch is cut where from_routes cuts it and waits in ``ready``;
    :meth:`end` cuts the last one.
    """

    def __init__(self, size: int = SIZE):
        self.size = size
        self.numbers: dict[Attrs, int] = {}  # one number per distinct attribute set, by value
        self.ready: list[Batch] = []
        self.v6: bool | None = None
        self.last: str | None = None  # the prefix of the last row
        self.first = 0
        self.start()

    def start(self) -> None:
        self.addr = bytearray()
        self.plen = bytearray()
        self.attr = array("I")
        self.best = bytearray()
        self.new: list[Attrs] = []

    def extend(self, rows: Iterable[tuple[str, bool, bytes, int, Attrs, bool | None]]) -> None:
        """Add rows, in order, with from_routes' cuts and numbering."""
        numbers, size = self.numbers, self.size
        addr, plen, attr, best_col, new = self.addr, self.plen, self.attr, self.best, self.new
        was_v6, last = self.v6, self.last
        for prefix, v6, packed, length, attrs, best in rows:
            if plen and (v6 != was_v6 or (prefix != last and len(plen) >= size)):
                # A new family, or a full batch and a new prefix.
                self.v6 = was_v6
                self.cut()
                addr, plen, attr, best_col, new = self.addr, self.plen, self.attr, self.best, self.new
            was_v6 = v6
            last = prefix
            number = numbers.get(attrs)
            if number is None:
                number = numbers[attrs] = len(numbers)
                new.append(attrs)
            addr += packed
            plen.append(length)
            attr.append(number)
            best_col.append(best is not False)
        self.v6, self.last = was_v6, last

    def cut(self) -> None:
        n = len(self.plen)
        attr = np.frombuffer(self.attr, np.uint32) if self.attr.itemsize == 4 else np.array(self.attr, np.uint32)
        self.ready.append(Batch(bool(self.v6), np.frombuffer(self.addr, np.uint8).reshape(n, 16 if self.v6 else 4),
                                np.frombuffer(self.plen, np.uint8), attr, np.frombuffer(self.best, np.bool_),
                                self.new, self.first))
        self.first += len(self.new)
        self.start()

    def end(self) -> None:
        if self.plen:
            self.cut()


def row(route: Route) -> tuple[str, bool, bytes, int, Attrs, bool | None]:
    """A route as a row of :class:`Columns`."""
    text, _, length = route.prefix.partition("/")
    v6 = ":" in text
    return (route.prefix, v6, socket.inet_pton(socket.AF_INET6 if v6 else socket.AF_INET, text), int(length),
            route.attrs, route.best)
