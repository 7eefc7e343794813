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
(BIRD, FRR, and the pure-Python MRT parser): the pure-Python way. The
compiled MRT parser (``ipr.routing.dumps._mrt``) makes the same batches
directly; tests require both to give identical batches, routes and errors.
"""
from __future__ import annotations

import socket
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

    def routes(self, attrs_by_number) -> Iterator[Route]:
        """The batch as :class:`Route` tuples; ``attrs_by_number(i)`` gives set i."""
        for prefix, a, best in zip(self.prefixes(), self.attr.tolist(), self.best.tolist()):
            yield Route(prefix, attrs_by_number(a), best)


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
