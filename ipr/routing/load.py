"""Refresh a router's table: read its sources, parse, load beside the active
version, check, swap atomically. One function, called by the beat task, the
``load_routes`` command and the tests.

Nothing here changes the active table until the new one is complete and
has passed its checks: a source that cannot be read, a dump that does not
parse, an empty table or one that shrank by more than the router's
``max_shrink`` is refused, and the reason (with the file and the line or
byte offset) is kept on the router and on the failed version.
"""
from __future__ import annotations

import contextlib
from array import array
import glob
import hashlib
import importlib
import io
import logging
import os
import queue
import shlex
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, Iterator

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from ipr.routing.dumps import DumpError, Route
from ipr.routing.models import RouteSource, Router, Table, TableEngine

log = logging.getLogger("ipr.routing")

# A claim older than this is from a worker that died mid-refresh.
STALE_CLAIM = timedelta(hours=2)


class RefreshError(Exception):
    """A refresh was refused; the active table stays."""


class Busy(RefreshError):
    """Another worker is refreshing this router."""


@dataclass
class Dump:
    name: str      # what the error messages call it: the file, or the command
    path: str      # the bytes to parse, on disk (a command's output goes to a temp file)
    format: str = "auto"
    offset: int = 0    # MRT: where the last of several appended dumps starts


class _SeveralDumps(Exception):
    """An MRT file holds several dumps one after the other (BIRD appends each
    periodic dump to a file whose name does not change): load the last one."""

    def __init__(self, dump: Dump, offset: int):
        self.dump, self.offset = dump, offset


# -- reading sources ---------------------------------------------------------

def newest_match(pattern: str) -> str:
    """The path itself, or for a glob the most recently modified match."""
    if not glob.has_magic(pattern):
        if not os.path.exists(pattern):
            raise RefreshError(f"{pattern}: no such file")
        return pattern
    matches = [p for p in glob.glob(pattern) if os.path.isfile(p)]
    if not matches:
        raise RefreshError(f"{pattern}: no file matches")
    return max(matches, key=os.path.getmtime)


def run_command(command: str, timeout: int, out) -> None:
    """Run a source's command (no shell) with its stdout into ``out``.

    The command runs in its own session, so a timeout kills what it started
    too (an ``ssh`` and its children). A non-zero exit status, a signal or
    the timeout refuses the refresh, with the last lines of its stderr.
    """
    argv = shlex.split(command)
    if not argv:
        raise RefreshError("empty command")
    try:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    except OSError as exc:
        raise RefreshError(f"{command}: cannot run: {exc}") from None
    try:
        _, stderr = proc.communicate(timeout=timeout)
        outcome = None
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        try:
            # What it wrote to stderr before it was killed; a descendant
            # that left the group may hold the pipe open: do not wait for it.
            _, stderr = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired as exc:
            stderr = exc.stderr or b""
            proc.stderr.close()
            proc.wait()
        outcome = f"no answer within {timeout} s (killed)"
    except BaseException:
        _kill_group(proc)
        proc.wait()
        raise
    if outcome is None:
        if proc.returncode == 0:
            return
        if proc.returncode < 0:
            outcome = f"killed by signal {_signal_name(-proc.returncode)}"
        else:
            outcome = f"exit status {proc.returncode}"
    tail = stderr.decode(errors="replace").strip().splitlines()[-3:]
    raise RefreshError(f"{command}: {outcome}" + (f": {' / '.join(tail)}" if tail else ""))


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:  # already gone
        pass


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def detect_format(head: bytes) -> str:
    """The dump format from its first bytes (already decompressed)."""
    text = head.lstrip()
    if not text:
        return "empty"
    if text[:1] == b"{":
        return "frr-json"
    # MRT starts with a binary header: a timestamp and type 12, 13, 16 or 17.
    if len(head) >= 12 and int.from_bytes(head[4:6], "big") in (12, 13, 16, 17):
        return "mrt"
    sample = text[:4096]
    if b"BGP table version" in sample or b"Network          Next Hop" in sample or b"Status codes" in sample:
        return "frr-text"
    return "bird"


PARSERS = {"bird": ("bird", "parse"), "frr-text": ("frr", "parse_text"),
           "frr-json": ("frr", "parse_json"), "mrt": ("mrt", "parse")}


def parse_dump(dump: Dump, stats=None) -> Iterator[Route]:
    """Routes of one dump, in whatever format it is (compression included)."""
    from ipr.routing.dumps import open_dump

    with open_dump(dump.path, dump.name) as stream:
        if dump.offset:
            left = dump.offset
            while left > 0:
                chunk = stream.read(min(left, 1 << 20))
                if not chunk:
                    break
                left -= len(chunk)
        head = stream.peek(64)
        fmt = dump.format if dump.format != "auto" else detect_format(head)
        if fmt == "empty":
            return
        if fmt not in PARSERS:
            raise RefreshError(f"{dump.name}: unknown format {fmt!r}")
        module, function = PARSERS[fmt]
        parser = getattr(importlib.import_module(f"ipr.routing.dumps.{module}"), function)
        if fmt == "mrt" and stats is not None:
            source = dump.name if not dump.offset else f"{dump.name} (its last dump, from byte {dump.offset})"
            yield from parser(stream, source=source, stats=stats)
        else:
            yield from parser(stream, source=dump.name)


@contextlib.contextmanager
def source_dumps(router: Router) -> Iterator[list[Dump]]:
    """The router's enabled sources as dumps on disk (commands are run now)."""
    sources = list(router.sources.filter(enabled=True))
    if not sources:
        raise RefreshError(f"router {router.name} has no enabled route source")
    with tempfile.TemporaryDirectory(prefix="ipr-routes-") as tmp:
        dumps = []
        for i, src in enumerate(sources):
            if src.kind == RouteSource.Kind.FILE:
                dumps.append(Dump(newest_match(src.path), newest_match(src.path), src.format))
            else:
                path = os.path.join(tmp, f"source-{i}")
                with open(path, "wb") as out:
                    run_command(src.command, src.timeout, out)
                dumps.append(Dump(src.command, path, src.format))
        yield dumps


# -- writing a version -------------------------------------------------------

def copy_rows(name: str, columns: tuple, rows: list) -> None:
    """Bulk-write rows: COPY on PostgreSQL, one executemany on SQLite."""
    if not rows:
        return
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            text = "".join("\t".join(_pg_copy_text(v) for v in row) + "\n" for row in rows)
            with cur.cursor.copy(f"COPY {name} ({', '.join(columns)}) FROM STDIN") as copy:
                copy.write(text)
        else:
            marks = ", ".join(["%s"] * len(columns))
            cur.executemany(f"INSERT INTO {name} ({', '.join(columns)}) VALUES ({marks})", rows)


def _pg_copy_text(value) -> str:
    if value is None:
        return "\\N"
    if value is True or value is False:
        return "t" if value else "f"
    if isinstance(value, str):
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
    return str(value)


class _Writer:
    """Writes one version's routes and attribute sets, deduplicating
    attributes, and builds the version's lookup engine from its best routes.

    On PostgreSQL the rows go through COPY fed by a thread, so the server
    stores one chunk while this process parses the next, and builds the
    indexes while this process builds the lookup engine (the connection is
    only used by that thread until :meth:`finish` returns).
    """

    CHUNK = 20000
    ATTR_COLUMNS = ("id", "table_id", "next_hop", "as_path", "origin_as", "neighbor_as", "local_pref",
                    "med", "communities")

    def __init__(self, table: Table, own_asn: int):
        self.table_id = table.pk
        self.base = table.pk << 32
        self.own_asn = own_asn
        self.attr_ids: dict = {}
        self._by_id: dict = {}
        self._keep: list = []
        self.routes = 0
        self.prefixes = 0
        self._last_prefix = None
        self._route_rows: list = []
        self._attr_rows: list = []
        # The best routes, for the lookup engine: prefix, and attribute set number.
        self._best_prefixes: list[str] = []
        self._best_attrs = array("I")
        self._origins = array("q")
        self._neighbors = array("q")
        self.engine: bytes | None = None
        self.pg = connection.vendor == "postgresql"
        self._thread = None
        self._error = None
        if self.pg:
            with connection.cursor() as cur:
                for name in ("routing_route", "routing_pathattrs"):
                    cur.execute(f"CREATE TABLE {name}_t{table.pk} PARTITION OF {name} "
                                f"FOR VALUES IN ({table.pk})")

    def add_all(self, routes, progress=None) -> None:
        """Write every route of an iterator. The hot loop of a full-table load:
        attribute sets are found by object identity first (parsers share one
        Attrs object between equal routes) and by value only for new objects."""
        by_id = self._by_id
        by_value = self.attr_ids
        keep = self._keep
        rows = self._route_rows
        best_prefixes, best_attrs = self._best_prefixes, self._best_attrs
        base, table_id, pg = self.base, self.table_id, self.pg
        n = self.routes
        last_prefix = self._last_prefix
        prefixes = self.prefixes
        for prefix, attrs, best in routes:
            aid = by_id.get(id(attrs))
            if aid is None:
                aid = by_value.get(attrs)
                if aid is None:
                    aid = by_value[attrs] = base | len(by_value)
                    self._new_attrs(aid, attrs)
                by_id[id(attrs)] = aid
                keep.append(attrs)  # an id stays unique only while its object lives
            if prefix != last_prefix:
                prefixes += 1
                last_prefix = prefix
            if best is not False:
                best_prefixes.append(prefix)
                best_attrs.append(aid & 0xFFFFFFFF)
            if pg:
                # Route rows need no escaping (numbers and canonical prefixes).
                rows.append(f"{base | n}\t{table_id}\t{prefix}\t{aid}\t{'f' if best is False else 't'}\n")
            else:
                rows.append((base | n, table_id, prefix, aid, best is not False))
            n += 1
            if len(rows) >= self.CHUNK:
                self.routes, self.prefixes, self._last_prefix = n, prefixes, last_prefix
                self._flush()
                rows = self._route_rows
                if progress is not None:
                    progress(n)
        self.routes, self.prefixes, self._last_prefix = n, prefixes, last_prefix

    def _new_attrs(self, aid: int, attrs) -> None:
        # No origin and no neighbour: the router's own route (empty path, or
        # an aggregate it made whose path is only a set).
        origin = self.own_asn if attrs.origin_as is None and attrs.neighbor_as is None else attrs.origin_as
        self._attr_rows.append((aid, self.table_id, attrs.next_hop or "", attrs.as_path, origin,
                                attrs.neighbor_as, attrs.local_pref, attrs.med, attrs.communities))
        self._origins.append(-1 if origin is None else origin)
        self._neighbors.append(-1 if attrs.neighbor_as is None else attrs.neighbor_as)

    def _flush(self) -> None:
        if not self._route_rows:
            return
        if self.pg:
            self._send("".join(self._route_rows))
        else:
            copy_rows("routing_pathattrs", self.ATTR_COLUMNS, self._attr_rows)
            copy_rows("routing_route", ("id", "table_id", "prefix", "attrs_id", "best"), self._route_rows)
            self._attr_rows = []
        self._route_rows = []

    def _send(self, chunk) -> None:
        if self._thread is None:
            self._queue = queue.Queue(maxsize=4)
            connection.ensure_connection()
            self._thread = threading.Thread(target=self._pg_writer, args=(connection.connection,),
                                            daemon=True)
            self._thread.start()
        if self._error is None:
            self._queue.put(chunk)

    def _pg_writer(self, raw) -> None:
        """The COPY thread: routes chunk by chunk until None, then (parsing is
        over) the attribute sets and the indexes."""
        t = self.table_id
        try:
            with raw.cursor() as cur:
                with cur.copy(f"COPY routing_route_t{t} (id, table_id, prefix, attrs_id, best) "
                              "FROM STDIN") as copy:
                    while (chunk := self._queue.get()) is not None:
                        copy.write(chunk)
                with cur.copy(f"COPY routing_pathattrs_t{t} ({', '.join(self.ATTR_COLUMNS)}) "
                              "FROM STDIN") as copy:
                    copy.write("".join("\t".join(_pg_copy_text(v) for v in row) + "\n"
                                       for row in self._attr_rows))
                # The per-prefix pages and the lookup command find a prefix's routes.
                cur.execute(f"CREATE INDEX ON routing_route_t{t} (prefix)")
                # Routes join their attributes by id.
                cur.execute(f"ALTER TABLE routing_pathattrs_t{t} ADD PRIMARY KEY (id)")
                cur.execute(f"ANALYZE routing_route_t{t}")
        except BaseException as exc:  # handed to the loading thread by close()
            self._error = exc
            while self._queue.get() is not None:  # unblock the producer
                pass

    def close(self) -> None:
        """Wait for the COPY thread; raise what it met."""
        if self._thread is not None:
            if self._thread.is_alive():
                self._queue.put(None)
            self._thread.join()
            self._thread = None
            if self._error is not None:
                raise self._error

    def finish(self) -> None:
        """Write what is left, and build the lookup engine meanwhile."""
        if self.pg:
            self._flush()
            self._send(None)  # the thread goes on with attributes and indexes
        else:
            self._flush()
            copy_rows("routing_pathattrs", self.ATTR_COLUMNS, self._attr_rows)
        self.engine = engine_bytes(self._best_prefixes, self._best_attrs, self._origins, self._neighbors)
        self._best_prefixes = []
        if self.pg:
            self._thread.join()
            self._thread = None
            if self._error is not None:
                raise self._error


def engine_bytes(prefixes, attr_numbers, origins, neighbors) -> bytes:
    """A version's lookup engine, serialised for workers (lookup.RouterTable)."""
    from ipr.routing import lpm

    engine = lpm.Table.build(zip(prefixes, range(len(prefixes))))
    buf = io.BytesIO()
    np.savez(buf, route_attr=np.frombuffer(attr_numbers, dtype=np.uint32),
             attr_origin=np.frombuffer(origins, dtype=np.int64),
             attr_neighbor=np.frombuffer(neighbors, dtype=np.int64),
             **{f"lpm{name}": value for name, value in engine.arrays().items()})
    return buf.getvalue()


def _read_all(writer, dumps, progress) -> None:
    from ipr.routing.dumps.mrt import Stats

    for dump in dumps:
        stats = Stats()
        try:
            writer.add_all(parse_dump(dump, stats), progress)
            if stats.peer_tables > 1 and not dump.offset:
                raise _SeveralDumps(dump, stats.last_peer_table_at)
        except DumpError as exc:
            raise RefreshError(str(exc)) from None
        except OSError as exc:
            raise RefreshError(f"{dump.name}: cannot read: {exc}") from None
        except EOFError as exc:
            raise RefreshError(f"{dump.name}: compressed stream ends early: {exc}") from None


def sources_text(dumps: list[Dump]) -> str:
    """What a version is read from, one source per line: its name and the
    SHA-256 of its bytes as read (compressed or not). A refresh whose text
    equals the active version's has nothing new to load."""
    lines = []
    for dump in dumps:
        try:
            with open(dump.path, "rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
        except OSError as exc:
            raise RefreshError(f"{dump.name}: cannot read: {exc}") from None
        lines.append(f"{dump.name} sha256:{digest}")
    return "\n".join(lines)


def load_version(router: Router, dumps: list[Dump],
                 progress: Callable[[int], None] | None = None) -> Table:
    """Parse ``dumps`` into a new version of ``router``'s table and make it active.

    Dumps identical to the active version's (the same sources, the same
    bytes) make no new version: the active one is returned, its
    ``unchanged`` attribute True. Raises RefreshError (the version is kept
    as 'failed' with the reason, its rows dropped) if anything is wrong; the
    active table is untouched.
    """
    started = time.monotonic()
    sources = sources_text(dumps)
    active = Table.objects.filter(pk=router.active_table_id, state=Table.State.ACTIVE).first()
    if active is not None and active.sources == sources:
        active.unchanged = True  # the same bytes as the active version: nothing to load
        return active
    table = Table.objects.create(router=router, sources=sources)
    table.unchanged = False
    while True:
        try:
            _load_into(table, router, dumps, started, progress)
            break
        except _SeveralDumps as again:
            # Rolled back; read only the newest of the appended dumps.
            again.dump.offset = again.offset
            table.drop_rows()
    _drop_old_versions(router)
    return table


def _load_into(table: Table, router: Router, dumps: list[Dump], started: float, progress) -> None:
    try:
        with transaction.atomic():
            writer = _Writer(table, router.asn)
            try:
                _read_all(writer, dumps, progress)
                writer.finish()
            finally:
                writer.close()
            if progress is not None:
                progress(writer.routes)
            _check(router, writer.routes, dumps)
            _save_engine(table.pk, writer.engine)
            table.routes, table.prefixes, table.attr_sets = writer.routes, writer.prefixes, len(writer.attr_ids)
            table.seconds = time.monotonic() - started
            _swap(router, table)
    except RefreshError as exc:
        table.drop_rows()
        Table.objects.filter(pk=table.pk).update(state=Table.State.FAILED, error=str(exc),
                                                 seconds=time.monotonic() - started)
        raise
    except _SeveralDumps:
        raise
    except BaseException:
        table.drop_rows()
        Table.objects.filter(pk=table.pk).update(state=Table.State.FAILED, error="interrupted")
        raise


def _save_engine(table_id: int, data: bytes) -> None:
    if connection.vendor == "postgresql":
        import psycopg
        connection.ensure_connection()
        # A binary parameter: Django's cursors quote bytes as text, which for
        # tens of megabytes costs a second.
        with psycopg.Cursor(connection.connection) as cur:
            cur.execute("INSERT INTO routing_tableengine (table_id, data) VALUES (%s, %b)", [table_id, data])
    else:
        TableEngine.objects.create(table_id=table_id, data=data)


def _check(router: Router, count: int, dumps: list[Dump]) -> None:
    names = ", ".join(d.name for d in dumps)
    if count == 0:
        raise RefreshError(f"{names}: no routes in the dump")
    active = Table.objects.filter(pk=router.active_table_id).values_list("routes", flat=True).first()
    refusal = router.shrink_refusal(count, active, "routes", "the active table")
    if refusal:
        raise RefreshError(f"{names}: {refusal}; kept the active table")


def _swap(router: Router, table: Table) -> None:
    """Make ``table`` the router's active version, in the caller's transaction."""
    now = timezone.now()
    Table.objects.filter(router=router, state=Table.State.ACTIVE).update(state=Table.State.RETIRED)
    table.state, table.activated = Table.State.ACTIVE, now
    table.save()
    Router.objects.filter(pk=router.pk).update(active_table=table)
    router.active_table = table


def _drop_old_versions(router: Router) -> None:
    """Keep the active version and the newest retired ones (a worker may still
    be reading one); drop the rest's rows."""
    keep = settings.ROUTING_KEEP_RETIRED
    retired = list(Table.objects.filter(router=router, state__in=[Table.State.RETIRED, Table.State.FAILED])
                   .order_by("-id").values_list("pk", "state"))
    old = [pk for pk, state in retired if state == Table.State.RETIRED][keep:]
    Table.objects.filter(pk__in=old).delete()  # their rows go with them (models.drop_rows)
    # Failed versions have no rows; keep the last few for their messages.
    failed = [pk for pk, state in retired if state == Table.State.FAILED][10:]
    Table.objects.filter(pk__in=failed).delete()


# -- the refresh -------------------------------------------------------------

@contextlib.contextmanager
def claimed(obj):
    """Hold the refresh claim of a router or data source (a conditional
    update that changes one row or none), or raise Busy if a worker has it."""
    model = type(obj)
    now = timezone.now()
    free = Q(refreshing_since__isnull=True) | Q(refreshing_since__lt=now - STALE_CLAIM)
    if model.objects.filter(pk=obj.pk).filter(free).update(refreshing_since=now) != 1:
        raise Busy(f"{model._meta.verbose_name} {obj} is being refreshed by another worker")
    try:
        yield
    finally:
        model.objects.filter(pk=obj.pk).update(refreshing_since=None)


def due(model, **filters) -> list[int]:
    """Ids of the routers or data sources whose last refresh is older than their interval."""
    now = timezone.now()
    return [pk for pk, at, minutes in model.objects.filter(**filters).distinct()
            .values_list("pk", "refreshed_at", "refresh_minutes")
            if at is None or at + timedelta(minutes=minutes) <= now]


def refresh_router(router_id: int, paths: list[str] | None = None, fmt: str = "auto",
                   progress: Callable[[int], None] | None = None) -> Table:
    """Load a new version of the router's table from its sources (or from
    ``paths``), record the outcome on the router, and return the version
    (the active one, ``unchanged``, when the dumps are the active version's)."""
    router = Router.objects.get(pk=router_id)
    with claimed(router):
        try:
            if paths:
                table = load_version(router, [Dump(p, p, fmt) for p in paths], progress)
            else:
                with source_dumps(router) as dumps:
                    table = load_version(router, dumps, progress)
        except Busy:
            raise
        except RefreshError as exc:
            Router.objects.filter(pk=router.pk).update(refreshed_at=timezone.now(), refresh_error=str(exc))
            log.warning("router %s: refresh refused: %s", router.name, exc)
            raise
        except Exception as exc:
            # A fault of ipr's, not of the dump: the admin sees it too, and the
            # traceback goes to the worker's log.
            Router.objects.filter(pk=router.pk).update(
                refreshed_at=timezone.now(), refresh_error=f"internal error: {type(exc).__name__}: {exc}")
            raise
        Router.objects.filter(pk=router.pk).update(refreshed_at=timezone.now(), refresh_error="")
        if table.unchanged:
            log.info("router %s: dump unchanged, table #%d stays active", router.name, table.pk)
        else:
            log.info("router %s: table #%d active, %d routes, %d prefixes, %.1f s",
                     router.name, table.pk, table.routes, table.prefixes, table.seconds)
        return table


def due_routers() -> list[int]:
    return due(Router, sources__enabled=True)
