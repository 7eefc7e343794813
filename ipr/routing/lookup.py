"""Address → router, route, AS path, origin AS and country, from memory.

Each process keeps one longest-prefix-match engine per active table version
(and one per country source, one for the origin overrides, one for the
served networks) and rebuilds one only when its version changed, which
:meth:`Resolver.refresh` checks with a few small queries. The aggregation
resolves its addresses in batch (numpy arrays of 16-byte addresses, IPv4 as
::ffff:a.b.c.d, as the spool stores them); the ``lookup`` command resolves
one.

A special-purpose address (ipr.routing.special: loopback, private-use,
documentation, link-local, multicast...) resolves to no route, AS 0 as
origin and neighbour, and the country ``ZZ``, whatever the tables, the
origin overrides and the country sources say: it is no AS's and no
country's, and its block is its prefix; except in the networks of the
setting IPR_ROUTE_SPECIAL, resolved as any address.
"""
from __future__ import annotations

import io
import ipaddress
import logging
import time
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.db import connection

from ipr.routing import lpm, special
from ipr.routing.models import DataSource, OriginOverride, PathAttrs, Router, ServedNetwork, TableEngine

log = logging.getLogger("ipr.routing")


def address_bytes(text: str) -> bytes:
    """16 bytes in network order, IPv4 as ::ffff:a.b.c.d (the spool's form)."""
    addr = ipaddress.ip_address(text.strip())
    if addr.version == 4:
        return b"\0" * 10 + b"\xff\xff" + addr.packed
    return addr.packed


def as_array(addresses) -> np.ndarray:
    """A numpy 'V16' array from a list of texts or 16-byte values."""
    if isinstance(addresses, np.ndarray):
        return addresses.astype("V16", copy=False)
    raw = b"".join(address_bytes(a) if isinstance(a, str) else bytes(a) for a in addresses)
    return np.frombuffer(raw, dtype="V16")


def _copy_out(sql: str, params: list) -> list[list[str]]:
    """Rows of a query as lists of text, read the fast way (COPY on PostgreSQL)."""
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            query = cur.cursor.mogrify(sql, params)
            chunks = []
            with cur.cursor.copy(f"COPY ({query}) TO STDOUT") as copy:
                for block in copy:
                    chunks.append(bytes(block))
            text = b"".join(chunks).decode()
            return [line.split("\t") for line in text.split("\n") if line]
        cur.execute(sql, params)
        return [["\\N" if v is None else str(v) for v in row] for row in cur.fetchall()]


def _engine_data(table_id: int) -> bytes | None:
    if connection.vendor == "postgresql":
        import psycopg
        connection.ensure_connection()
        # Binary results: tens of megabytes of bytea as hex text take a second to decode.
        with psycopg.Cursor(connection.connection) as cur:
            cur.execute("SELECT data FROM routing_tableengine WHERE table_id = %s", [table_id], binary=True)
            row = cur.fetchone()
            return None if row is None else row[0]
    return TableEngine.objects.filter(table_id=table_id).values_list("data", flat=True).first()


# Every AS path this process has seen, by id (0: the empty path): the ids are
# the same across table versions, so a path is one value however many
# versions or routers carry it.
AS_PATHS: list[str] = [""]
_PATH_ID: dict[str, int] = {"": 0}


def intern_path(path: str) -> int:
    found = _PATH_ID.get(path)
    if found is None:
        found = _PATH_ID[path] = len(AS_PATHS)
        AS_PATHS.append(path)
    return found


@dataclass
class RouterTable:
    """The best routes of one table version, ready for lookups: the engine the
    loader built (value = best route number), and per best route its
    attribute set's origin and neighbour AS."""
    router_id: int
    table_id: int
    engine: lpm.Table
    route_attr: np.ndarray         # per best route: attribute set number (id & 0xffffffff)
    origin_as: np.ndarray          # per attribute set, int64, -1 when unknown
    neighbor_as: np.ndarray        # per attribute set, int64, -1 for a local route
    seconds: float = 0.0
    # Read or made when first asked for, then kept with the version:
    prefix_text: dict = field(default_factory=dict, repr=False)   # best route -> prefix text
    attr_path: np.ndarray | None = field(default=None, repr=False)  # attribute set -> AS path id

    @classmethod
    def load(cls, router_id: int, table_id: int) -> "RouterTable":
        started = time.monotonic()
        data = _engine_data(table_id)
        if data is None:
            raise LookupError(f"table #{table_id} has no lookup engine (was it loaded by this version of ipr?)")
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            engine = lpm.Table.from_arrays({name[3:]: npz[name] for name in npz.files if name.startswith("lpm")})
            table = cls(router_id, table_id, engine, npz["route_attr"], npz["attr_origin"],
                        npz["attr_neighbor"])
        table.seconds = time.monotonic() - started
        return table

    def prefixes(self, routes) -> list[str]:
        """The prefix text of each best route number (kept once made)."""
        cache = self.prefix_text
        engine = self.engine
        out = []
        for r in routes:
            text = cache.get(r)
            if text is None:
                text = cache[r] = engine.prefix(r)
            out.append(text)
        return out

    def path_ids(self, routes) -> np.ndarray:
        """The AS path of each best route number, as its id in
        :data:`AS_PATHS`. The version's paths are read from the database the
        first time one is asked for (one COPY), and kept as an array."""
        if self.attr_path is None:
            low = self.table_id << 32
            rows = _copy_out("SELECT id, as_path FROM routing_pathattrs WHERE id >= %s AND id < %s",
                             [low, low + (1 << 32)])
            attr_path = np.zeros(int(self.route_attr.max(initial=0)) + 1, np.int64)
            for attr, path in rows:
                attr = int(attr) - low
                if attr < len(attr_path):
                    attr_path[attr] = intern_path("" if path == "\\N" else path)
            self.attr_path = attr_path
        return self.attr_path[self.route_attr[np.asarray(routes, dtype=np.int64)]]

    def route_details(self, index: int) -> dict:
        """Prefix and path attributes of best route ``index`` (one query)."""
        attr_id = (self.table_id << 32) | int(self.route_attr[index])
        attrs = PathAttrs.objects.filter(pk=attr_id).values(
            "next_hop", "as_path", "origin_as", "neighbor_as", "local_pref", "med", "communities").first()
        return {"prefix": self.engine.prefix(index), **(attrs or {})}


@dataclass
class Resolved:
    """Batch lookup results, one entry per address (numpy arrays)."""
    router_id: np.ndarray       # int64, -1: no router carries this server
    route: np.ndarray           # int64 index into that router's table's best routes, -1: no route
    origin_as: np.ndarray       # int64, -1: unknown
    neighbor_as: np.ndarray     # int64, -1: local or unknown
    country: np.ndarray         # '<U2', '' unknown, special.COUNTRY for a special-purpose address
    special: np.ndarray         # int64 index into special.BLOCKS, -1: an ordinary address


@dataclass
class Resolver:
    tables: dict[int, RouterTable] = field(default_factory=dict)
    countries: list[tuple[lpm.Table, np.ndarray]] = field(default_factory=list)
    country_versions: tuple | None = None
    overrides: tuple | None = None
    override_key: tuple | None = None
    served: tuple | None = None
    served_key: tuple | None = None
    default_router: int | None = None

    def refresh(self) -> None:
        """Rebuild whatever changed in the database since the last call."""
        active = dict(Router.objects.filter(active_table__isnull=False)
                      .values_list("pk", "active_table_id"))
        for router_id in list(self.tables):
            if router_id not in active:
                del self.tables[router_id]
        for router_id, table_id in active.items():
            current = self.tables.get(router_id)
            if current is None or current.table_id != table_id:
                self.tables[router_id] = RouterTable.load(router_id, table_id)
                log.info("router %d: lookup engine of table #%d read in %.2f s",
                         router_id, table_id, self.tables[router_id].seconds)
        self._refresh_countries()
        self._refresh_small()

    def _refresh_countries(self) -> None:
        sources = list(DataSource.objects.filter(enabled=True, kind__in=["rir", "mmdb"], records__gt=0)
                       .order_by("priority", "name").values_list("pk", "version"))
        if tuple(sources) == self.country_versions:
            return
        engines = []
        for source_id, _ in sources:
            rows = _copy_out("SELECT prefix, country FROM routing_countryprefix WHERE source_id = %s ORDER BY id",
                             [source_id])
            codes = sorted({cc for _, cc in rows})
            index = {cc: i for i, cc in enumerate(codes)}
            engine = lpm.Table.build((prefix, index[cc]) for prefix, cc in rows)
            engines.append((engine, np.array(codes + [""], dtype="<U2")))
        self.countries, self.country_versions = engines, tuple(sources)

    def _refresh_small(self) -> None:
        overrides = list(OriginOverride.objects.values_list("prefix", "origin_as"))
        if tuple(overrides) != self.override_key:
            engine = lpm.Table.build((p, i) for i, (p, _) in enumerate(overrides))
            self.overrides = (engine, np.array([a for _, a in overrides] + [-1], dtype=np.int64))
            self.override_key = tuple(overrides)
        served = list(ServedNetwork.objects.values_list("network", "router_id"))
        default = Router.objects.filter(is_default=True).values_list("pk", flat=True).first()
        if (tuple(served), default) != self.served_key:
            engine = lpm.Table.build((n, i) for i, (n, _) in enumerate(served))
            self.served = (engine, np.array([r for _, r in served] + [-1], dtype=np.int64))
            self.served_key, self.default_router = (tuple(served), default), default

    # -- lookups -------------------------------------------------------------

    def router_of(self, servers: np.ndarray) -> np.ndarray:
        """The router carrying each server address's responses (-1: none)."""
        engine, routers = self.served
        found = routers[engine.lookup_many(servers)]  # index -1 picks the trailing -1
        if self.default_router is not None:
            found[found < 0] = self.default_router
        return found

    def country_of(self, clients: np.ndarray) -> np.ndarray:
        """Each address's country: the first source (by priority) that covers it."""
        result = np.full(len(clients), "", dtype="<U2")
        for engine, codes in self.countries:
            missing = result == ""
            if not missing.any():
                break
            result[missing] = codes[engine.lookup_many(clients[missing])]
        return result

    def resolve(self, clients, servers=None, router_id: int | None = None) -> Resolved:
        """Resolve client addresses against the table of the router that carried
        them (from ``servers``) or of ``router_id``."""
        clients = as_array(clients)
        n = len(clients)
        if router_id is not None:
            routers = np.full(n, router_id, dtype=np.int64)
        else:
            routers = self.router_of(as_array(servers))
        route = np.full(n, -1, dtype=np.int64)
        origin = np.full(n, -1, dtype=np.int64)
        neighbor = np.full(n, -1, dtype=np.int64)
        for rid in np.unique(routers):
            table = self.tables.get(int(rid))
            if table is None:
                continue
            sel = np.nonzero(routers == rid)[0]
            hit = table.engine.lookup_many(clients[sel])
            ok = hit >= 0
            route[sel] = hit
            attr = table.route_attr[hit[ok]]
            origin[sel[ok]] = table.origin_as[attr]
            neighbor[sel[ok]] = table.neighbor_as[attr]
        engine, origins = self.overrides
        forced = origins[engine.lookup_many(clients)]
        origin = np.where(forced >= 0, forced, origin)
        country = self.country_of(clients)
        block = special.classify(clients, settings.ROUTE_SPECIAL)
        own = block >= 0
        if own.any():
            route[own], origin[own], neighbor[own], country[own] = -1, 0, 0, special.COUNTRY
        return Resolved(routers, route, origin, neighbor, country, block)

    def explain(self, address: str) -> list[dict]:
        """Per router, what one address resolves to (the ``lookup`` command)."""
        addr = as_array([address])
        country = str(self.country_of(addr)[0])
        carrier = int(self.router_of(addr)[0])
        engine, origins = self.overrides
        forced = int(origins[engine.lookup_many(addr)[0]])
        block = int(special.classify(addr, settings.ROUTE_SPECIAL)[0])
        out = []
        for router in Router.objects.filter(pk__in=list(self.tables)).order_by("name"):
            table = self.tables[router.pk]
            hit = int(table.engine.lookup_many(addr)[0])
            row = {"router": router.name, "router_asn": router.asn, "table": table.table_id,
                   "carries_as_server": router.pk == carrier, "country": country,
                   "prefix": None, "as_path": None, "origin_as": None, "neighbor_as": None,
                   "next_hop": None, "local_pref": None, "communities": None, "origin_override": None,
                   "special_purpose": None}
            if block >= 0:
                prefix, what = special.BLOCKS[block]
                row.update(prefix=prefix, as_path="", origin_as=0, neighbor_as=0, country=special.COUNTRY,
                           special_purpose=what)
                out.append(row)
                continue
            if hit >= 0:
                row.update(table.route_details(hit))
            if forced >= 0:
                row["origin_override"] = forced
                row["origin_as"] = forced
            out.append(row)
        return out


_resolver: Resolver | None = None


def resolver() -> Resolver:
    """The process's resolver, refreshed."""
    global _resolver
    if _resolver is None:
        _resolver = Resolver()
    _resolver.refresh()
    return _resolver
