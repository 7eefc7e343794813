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
import functools
import glob
import hashlib
import importlib
import io
import logging
import os
import queue
import shlex
import signal
import struct
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

from ipr.routing.dumps import DumpError
from ipr.routing.dumps.batches import Batch, from_routes
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


def parse_dump(dump: Dump, stats=None) -> Iterator[Batch]:
    """The routes of one dump as :class:`Batch` columns, in whatever format it
    is (compression included). MRT: ``mrt.batches`` (compiled where built);
    BIRD: ``bird.batches``; FRR: its Route parser, in batches by ``from_routes``."""
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
        parser = importlib.import_module(f"ipr.routing.dumps.{module}")
        if fmt == "mrt":
            source = dump.name if not dump.offset or stats is None else \
                f"{dump.name} (its last dump, from byte {dump.offset})"
            yield from parser.batches(stream, source=source, stats=stats)
        elif fmt == "bird":
            yield from parser.batches(stream, source=dump.name)
        else:
            yield from from_routes(getattr(parser, function)(stream, source=dump.name))


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
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return str(value)


# PostgreSQL's binary COPY: the header, and the end mark after the last row.
_PGCOPY_HEADER = b"PGCOPY\n\xff\r\n\0" + bytes(8)
_PGCOPY_TRAILER = b"\xff\xff"


def _route_dtype(width: int) -> np.dtype:
    """A route row of the binary COPY, as a packed numpy record: field count,
    then per field its length and value (id, table_id, prefix as cidr's
    binary form, attrs_id, best), big-endian."""
    return np.dtype([("fields", ">i2"), ("id_len", ">i4"), ("id", ">i8"), ("table_len", ">i4"), ("table", ">i8"),
                     ("prefix_len", ">i4"), ("family", "u1"), ("bits", "u1"), ("is_cidr", "u1"), ("size", "u1"),
                     ("addr", "u1", (width,)), ("attrs_len", ">i4"), ("attrs", ">i8"),
                     ("best_len", ">i4"), ("best", "u1")])


_ROUTE_ROW = {False: _route_dtype(4), True: _route_dtype(16)}
_NULL = "\\N"


class _Writer:
    """Writes one version's routes and attribute sets from route batches, and
    builds the version's lookup engine from its best routes.

    No Python step per route: each batch's route rows are one numpy array
    in the layout of PostgreSQL's binary COPY, sent by a thread, so the
    server stores one batch while this process parses the next, and builds
    the indexes while this process builds the lookup engine (the connection
    is only used by that thread until :meth:`finish` returns). Attribute
    sets are written as they arrive, as COPY text, to a temporary file that
    the thread copies after the routes; of each set only its origin and
    neighbour AS stay in memory (for the engine). SQLite gets the same rows
    by ``executemany``.

    Attribute sets come numbered per dump by the parser (equal sets, equal
    numbers). With several dumps (sources, ``several=True``) a set a previous
    dump had keeps that dump's number: each set's 128-bit BLAKE2 digest is
    kept (16 bytes a set) and a later dump's new sets are looked up among
    them, so the version's sets are distinct across its sources.
    """

    ATTR_COLUMNS = ("id", "table_id", "next_hop", "as_path", "origin_as", "neighbor_as", "local_pref",
                    "med", "communities")
    ROUTE_COLUMNS = ("id", "table_id", "prefix", "attrs_id", "best")

    def __init__(self, table: Table, own_asn: int, several: bool = False):
        self.table_id = table.pk
        self.base = table.pk << 32
        self.own_asn = own_asn
        self.routes = 0
        self.prefixes = 0
        self.attr_sets = 0      # distinct attribute sets written so far: the next set's number
        self._dump_sets = 0     # sets the current dump's parser has numbered so far
        # Several dumps: per set written, its digest (two uint64 words), in
        # chunks; per set of the current dump, its number in the version.
        self._several = several
        self._digests: list[np.ndarray] = []
        self._known = None      # the digests of the previous dumps, sorted, and their numbers
        self._remap = np.empty(0, dtype=np.int64)
        self._last = None       # (v6, address, length) of the last route: prefixes are counted across batches
        # Per batch, its best routes for the lookup engine: IPv6?, length,
        # 16 address bytes, attribute set number.
        self._best: list[tuple] = []
        # Per attribute set: origin and neighbour AS (-1: none), in chunks.
        self._origins: list[np.ndarray] = []
        self._neighbors: list[np.ndarray] = []
        self.engine = None      # the serialised lookup engine: a temporary file
        self.pg = connection.vendor == "postgresql"
        self._thread = None
        self._error = None
        self._attr_file = None
        if self.pg:
            self._attr_file = tempfile.TemporaryFile(prefix="ipr-attrs-")
            with connection.cursor() as cur:
                for name in ("routing_route", "routing_pathattrs"):
                    cur.execute(f"CREATE TABLE {name}_t{table.pk} PARTITION OF {name} "
                                f"FOR VALUES IN ({table.pk})")

    def add_dump(self, batches, progress=None) -> None:
        """Write every route of one dump's batches."""
        self._dump_sets = 0
        if self._several and self._digests:
            digests = np.concatenate(self._digests)
            order = np.lexsort((digests[:, 1], digests[:, 0]))
            self._known = (digests[order], order)
        for batch in batches:
            self.add_batch(batch)
            if progress is not None:
                progress(self.routes)
        self._dump_sets = 0
        self._known = None

    def add_batch(self, batch: Batch) -> None:
        n = len(batch)
        known = batch.first_attr + len(batch.attrs)
        # A parser that breaks the batch interface would write routes that
        # point at no attribute set, or at the wrong one.
        if batch.first_attr != self._dump_sets:
            raise RuntimeError(f"a batch numbers its new attribute sets from {batch.first_attr}; "
                               f"{self._dump_sets} were numbered before it")
        if n and int(batch.attr.max()) >= known:
            raise RuntimeError(f"a route of a batch has attribute set {int(batch.attr.max())}; "
                               f"only {known} are numbered")
        if self._several:
            self._number_sets(batch.attrs)
        elif batch.attrs:
            self._new_attrs(batch.attrs, self.attr_sets)
            self.attr_sets += len(batch.attrs)
        self._dump_sets = known
        if not n:
            return
        v6, addr, plen, best = batch.v6, batch.addr, batch.plen, batch.best
        if self._several:
            attr = self._remap[batch.attr]
        else:  # one dump: the parser's numbers are the version's
            attr = batch.attr.astype(np.int64)

        # A route whose prefix differs from the route before it starts a prefix.
        same = np.empty(n, dtype=bool)
        same[1:] = (plen[1:] == plen[:-1]) & (addr[1:] == addr[:-1]).all(axis=1)
        same[0] = self._last == (v6, addr[0].tobytes(), int(plen[0]))
        self.prefixes += n - int(np.count_nonzero(same))
        self._last = (v6, addr[-1].tobytes(), int(plen[-1]))

        chosen = np.nonzero(best)[0]
        wide = np.zeros((len(chosen), 16), dtype=np.uint8)
        wide[:, :addr.shape[1]] = addr[chosen]
        self._best.append((np.full(len(chosen), v6), plen[chosen], wide, attr[chosen].astype(np.uint32)))

        ids = np.arange(self.base | self.routes, (self.base | self.routes) + n, dtype=np.int64)
        if self.pg:
            rows = np.empty(n, dtype=_ROUTE_ROW[v6])
            width = addr.shape[1]
            rows["fields"] = 5
            rows["id_len"], rows["id"] = 8, ids
            rows["table_len"], rows["table"] = 8, self.table_id
            rows["prefix_len"], rows["family"], rows["bits"] = 4 + width, 3 if v6 else 2, plen
            rows["is_cidr"], rows["size"], rows["addr"] = 1, width, addr
            rows["attrs_len"], rows["attrs"] = 8, attr + self.base
            rows["best_len"], rows["best"] = 1, best
            self._send(rows.tobytes())
        else:
            copy_rows("routing_route", self.ROUTE_COLUMNS, list(zip(
                ids.tolist(), [self.table_id] * n, batch.prefixes(), (attr + self.base).tolist(),
                best.tolist())))
        self.routes += n

    def _number_sets(self, attrs: list) -> None:
        """Several dumps: the version's number of each of a batch's new sets,
        a previous dump's where it had the set, else the next free one (then
        the set is written)."""
        digests = np.frombuffer(b"".join([hashlib.blake2b(repr(a).encode(), digest_size=16).digest()
                                          for a in attrs]), dtype="<u8").reshape(-1, 2)
        numbers = np.full(len(attrs), -1, dtype=np.int64)
        if self._known is not None and len(attrs):
            known, number_of = self._known
            at = np.minimum(np.searchsorted(known[:, 0], digests[:, 0]), len(known) - 1)
            first_word = known[at, 0] == digests[:, 0]
            hit = first_word & (known[at, 1] == digests[:, 1])
            numbers[hit] = number_of[at[hit]]
            for i in np.nonzero(first_word & ~hit)[0].tolist():
                k = at[i]  # digests sharing a first word are next to each other
                while k < len(known) and known[k, 0] == digests[i, 0]:
                    if known[k, 1] == digests[i, 1]:
                        numbers[i] = number_of[k]
                        break
                    k += 1
        new = np.nonzero(numbers < 0)[0]
        numbers[new] = np.arange(self.attr_sets, self.attr_sets + len(new))
        if len(new):
            self._new_attrs([attrs[i] for i in new.tolist()], self.attr_sets)
            self._digests.append(digests[new])
            self.attr_sets += len(new)
        end = self._dump_sets + len(attrs)
        if len(self._remap) < end:
            self._remap = np.resize(self._remap, max(end, 2 * len(self._remap)))
        self._remap[self._dump_sets:end] = numbers

    def _new_attrs(self, attrs: list, first: int) -> None:
        """Write attribute sets ``first``, ``first + 1``, ... and keep their
        origin and neighbour. One pass per set: COPY text (SQLite: a row)."""
        own, table_id, pg, n = self.own_asn, self.table_id, self.pg, _NULL
        origins, neighbors, lines, texts = [], [], [], []
        for i, (hop, path, origin, neighbor, local_pref, med, communities) in enumerate(attrs, self.base | first):
            # No origin and no neighbour: the router's own route (empty path,
            # or an aggregate it made whose path is only a set).
            if origin is None and neighbor is None:
                origin = own
            origins.append(-1 if origin is None else origin)
            neighbors.append(-1 if neighbor is None else neighbor)
            hop = hop or ""
            if pg:
                lines.append(f"{i}\t{table_id}\t{hop}\t{path}\t{n if origin is None else origin}\t"
                             f"{n if neighbor is None else neighbor}\t{n if local_pref is None else local_pref}\t"
                             f"{n if med is None else med}\t{communities}\n")
                texts += (hop, path, communities)
            else:
                lines.append((i, table_id, hop, path, origin, neighbor, local_pref, med, communities))
        self._origins.append(np.array(origins, dtype=np.int64))
        self._neighbors.append(np.array(neighbors, dtype=np.int64))
        if not pg:
            copy_rows("routing_pathattrs", self.ATTR_COLUMNS, lines)
            return
        probe = "".join(texts)
        if "\\" in probe or "\t" in probe or "\n" in probe or "\r" in probe:
            # A text field holds a character COPY must escape (no parser makes one today).
            lines = ["\t".join(map(_pg_copy_text, (i, table_id, *row))) + "\n"
                     for i, row in enumerate(self._attr_values(attrs), self.base | first)]
        self._attr_file.write("".join(lines).encode())

    def _attr_values(self, attrs: list):
        """The columns after id and table_id of each set, as written."""
        own = self.own_asn
        for hop, path, origin, neighbor, local_pref, med, communities in attrs:
            if origin is None and neighbor is None:
                origin = own
            yield hop or "", path, origin, neighbor, local_pref, med, communities

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
        """The COPY thread: route rows batch by batch until None, then (parsing
        is over) the attribute sets from their file, and the indexes."""
        t = self.table_id
        try:
            with raw.cursor() as cur:
                with cur.copy(f"COPY routing_route_t{t} ({', '.join(self.ROUTE_COLUMNS)}) "
                              "FROM STDIN (FORMAT binary)") as copy:
                    copy.write(_PGCOPY_HEADER)
                    while (chunk := self._queue.get()) is not None:
                        copy.write(chunk)
                    copy.write(_PGCOPY_TRAILER)
                self._attr_file.seek(0)
                with cur.copy(f"COPY routing_pathattrs_t{t} ({', '.join(self.ATTR_COLUMNS)}) "
                              "FROM STDIN") as copy:
                    while block := self._attr_file.read(1 << 20):
                        copy.write(block)
                # Sorting a full table's prefixes in memory, not in temporary files.
                cur.execute("SET LOCAL maintenance_work_mem = '256MB'")
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
        """Wait for the COPY thread; raise what it met. Drop the temporary files."""
        try:
            if self._thread is not None:
                if self._thread.is_alive():
                    self._queue.put(None)
                self._thread.join()
                self._thread = None
                if self._error is not None:
                    raise self._error
        finally:
            for f in (self._attr_file, self.engine):
                if f is not None:
                    f.close()
            self._attr_file = self.engine = None

    def finish(self) -> None:
        """Hand the rest to the COPY thread, and build the lookup engine meanwhile."""
        if self.pg:
            self._attr_file.flush()
            self._send(None)  # the thread goes on with attributes and indexes
        self._build_engine()
        if self.pg:
            self._thread.join()
            self._thread = None
            if self._error is not None:
                raise self._error

    def _build_engine(self) -> None:
        """The version's lookup engine, serialised for workers
        (lookup.RouterTable) into a temporary file, ``self.engine``: the best
        routes' prefixes (``lpm.Table.build_packed``; value = best route
        number), each one's attribute set number, and per set its origin and
        neighbour AS. Each input is dropped once used: this is the load's
        peak of memory."""
        from ipr.routing import lpm

        best, self._best = self._best, []
        if best:
            v6, plen, addr, attr = (np.concatenate(column) for column in zip(*best))
        else:
            v6, plen, addr, attr = (np.empty(0, bool), np.empty(0, np.uint8), np.empty((0, 16), np.uint8),
                                    np.empty(0, np.uint32))
        del best
        engine = lpm.Table.build_packed(v6, plen, addr)
        del v6, plen, addr
        origins = np.concatenate(self._origins or [np.empty(0, np.int64)])
        neighbors = np.concatenate(self._neighbors or [np.empty(0, np.int64)])
        self._origins, self._neighbors = [], []
        self.engine = tempfile.TemporaryFile(prefix="ipr-engine-")
        np.savez(self.engine, route_attr=attr, attr_origin=origins, attr_neighbor=neighbors,
                 **{f"lpm{name}": value for name, value in engine.arrays().items()})


def _read_all(writer, dumps, progress) -> None:
    from ipr.routing.dumps.mrt import Stats

    for dump in dumps:
        stats = Stats()
        try:
            writer.add_dump(parse_dump(dump, stats), progress)
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


_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
_MMAP_THRESHOLD_MAX = 32 << 20  # the highest that glibc's sliding threshold reaches (64-bit)


@functools.cache
def _libc():
    import ctypes
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None  # glibc only


@contextlib.contextmanager
def _large_blocks_mapped():
    """While loading, have glibc serve every block of 1 MiB or more by mmap.

    By default glibc raises that threshold each time a large block is freed,
    so after the parse the engine build's numpy temporaries (tens of MB
    each) come from the heap and stay in the process when freed: the peak
    RSS of a full-table load was 430 MB instead of 345. Afterwards the
    threshold is set where glibc's own sliding one ends up in a numpy
    process (32 MiB), and the freed heap is given back. Anything but glibc
    is left alone.
    """
    libc = _libc()
    if libc is None:
        yield
        return
    libc.mallopt(_M_MMAP_THRESHOLD, 1 << 20)
    try:
        yield
    finally:
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)
        libc.malloc_trim(0)


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
            with _large_blocks_mapped():
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
            writer = _Writer(table, router.asn, several=len(dumps) > 1)
            try:
                _read_all(writer, dumps, progress)
                writer.finish()
                if progress is not None:
                    progress(writer.routes)
                _check(router, writer.routes, dumps)
                _save_engine(table.pk, writer.engine)
            finally:
                writer.close()
            table.routes, table.prefixes, table.attr_sets = writer.routes, writer.prefixes, writer.attr_sets
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


def _save_engine(table_id: int, file) -> None:
    """Store the engine the writer serialised into ``file``. On PostgreSQL
    one binary COPY row, streamed from the file: never a second copy of
    tens of megabytes in memory (a bytes parameter is copied again by libpq)."""
    size = file.seek(0, io.SEEK_END)
    file.seek(0)
    if connection.vendor == "postgresql":
        import psycopg
        connection.ensure_connection()
        with psycopg.Cursor(connection.connection) as cur:
            with cur.copy("COPY routing_tableengine (table_id, data) FROM STDIN (FORMAT binary)") as copy:
                # One row: two fields, the table id (bigint) and the data (bytea).
                copy.write(_PGCOPY_HEADER + struct.pack(">hiqi", 2, 8, table_id, size))
                while block := file.read(1 << 20):
                    copy.write(block)
                copy.write(_PGCOPY_TRAILER)
    else:
        TableEngine.objects.create(table_id=table_id, data=file.read())


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
