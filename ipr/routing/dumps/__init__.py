"""Route dumps: every format a router can give us, turned into one shape.

Each parser module (``bird``, ``frr``, ``mrt``) exposes
``parse(stream, source="name") -> Iterator[Route]`` over a binary stream.
They all yield :class:`Route` tuples whose :class:`Attrs` part is shared
between routes with the same path attributes (a full table has ~1M routes
but far fewer distinct attribute sets), and they all raise
:class:`DumpError` naming the source and the line or byte offset.

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

from typing import Iterable, Iterator, NamedTuple


class DumpError(ValueError):
    """A dump that cannot be read. ``where`` is 'line N' or 'byte N'."""

    def __init__(self, source: str, where: str, message: str):
        self.source = source
        self.where = where
        self.message = message
        super().__init__(f"{source}: {where}: {message}")


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
