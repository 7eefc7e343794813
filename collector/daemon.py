"""The collector daemon: receive, verify, pre-aggregate, spool.

Process layout: a master creates every listening socket (one SO_REUSEPORT
group per listen address, ``processes`` sockets in each), then forks one
worker per socket and one metrics process, and restarts any that dies with
the same socket, so the kernel's queue and the socket's place in its group
survive. A classic BPF program on each group steers a datagram by its
sender's instance id, so one sender's sequence numbers are always seen by
the same worker: replay protection and loss counting stay exact with
several processes; what arrived before the program was attached, the
master sorts the same way before it forks (``take_queued``). The children
get SIGTERM when the master dies, even by SIGKILL, and then flush and exit.

A worker is a loop of steps (``Worker.step``): receive and verify datagrams
until the next flush is due, then flush. The per-datagram work (receive in
batches, verify, count, keep the records) is the Receiver's
(collector/receive.py): compiled (collector/_receive.c) where it was
built, else its pure-Python twin; IPR_NATIVE picks (ipr/native.py). The
master's step reaps and restarts children, and reloads on SIGHUP or when
the key file changed, so a key written by the admin reaches the collector
with no signal at all.
Signal handlers only set flags.
"""
from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import socket
import struct
import sys
import time
from pathlib import Path

import numpy as np
import prometheus_client as prom
from prometheus_client.registry import CollectorRegistry

from collector import config, logs, spool
from collector.receive import REASONS, clean_types, receiver_class, stream_entry  # noqa: F401 (clean_types: for tests)
from ipr import native
from ipr_agent.wire import INSTANCE_OFFSET

log = logging.getLogger("collector")

SO_ATTACH_REUSEPORT_CBPF = 51
PR_SET_PDEATHSIG = 1
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
RECV_TIMEOUT = 0.2  # seconds a blocked receive waits before re-checking flags and the clock
RECV_BATCH = 1024  # datagrams taken per call into the Receiver between looks at the flags and clock
KEY_CHECK_INTERVAL = 1.0  # seconds between the master's looks at the key file
# How long start-up waits for the spool lock: the children of a master that
# was killed need a moment to flush and exit (they get SIGTERM when it dies).
LOCK_WAIT = 3.0
QUEUED_LIMIT = 1_000_000  # datagrams taken per socket at start-up (see take_queued)
# On SIGTERM a worker takes what its socket holds for at most this long: a
# 32 MiB queue empties in well under a second, and under a sustained flood
# the queue never empties, so the stop must not wait for it.
DRAIN_SECONDS = 2.0


class StartupError(Exception):
    """Why the collector cannot start: one line naming the path or address
    and what to do."""


# --------------------------------------------------------------------------
# Sockets

def open_group(host: str, port: int, count: int, rcvbuf: int) -> list[socket.socket]:
    """Bind ``count`` SO_REUSEPORT UDP sockets to host:port, steered by instance id."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    socks = []
    for _ in range(count):
        s = socket.socket(family, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6 and host == "::":
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # dual stack
        try:  # beyond net.core.rmem_max needs CAP_NET_ADMIN
            s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
        except PermissionError:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, int(RECV_TIMEOUT * 1e6)))
        socks.append(s)
        try:
            s.bind((host, port))
        except OSError as exc:
            for t in socks:
                t.close()
            raise StartupError(f"cannot listen on [{host}]:{port}: {exc.strerror}; free the address "
                               f"or change listen in the configuration") from None
        port = s.getsockname()[1]  # port 0: the others join the one the kernel chose
    if count > 1:
        try:
            attach_steering(socks[0], count)
        except OSError as exc:
            raise StartupError(f"cannot attach the BPF program that steers senders to processes "
                               f"(Linux >= 4.5 needed): {exc}; set processes = 1") from None
    return socks


def steered_index(buf, n: int, count: int) -> int:
    """The group's socket the steering program picks for a datagram of n
    bytes in ``buf``: the instance id's low word (big-endian, as the
    program loads it) modulo ``count``. A datagram too short for that load
    ends the program, which then returns 0: the first socket."""
    at = INSTANCE_OFFSET + 4
    if n < at + 4:
        return 0
    return int.from_bytes(buf[at:at + 4], "big") % count


def take_queued(socks: list[socket.socket], size: int) -> list[list[tuple[bytes, tuple]]]:
    """Take what is queued on a group's sockets, sorted by the socket the
    steering program picks; called once the program is attached.

    The group can receive from its first bind on, and until the program is
    attached the kernel places a datagram by its source address and port,
    maybe on another worker's socket. The master takes every queued
    datagram off the sockets before it forks the workers and hands each to
    the worker the program picks, so no datagram of an instance is checked
    by a worker that does not hold its sequence numbers.
    """
    out: list[list[tuple[bytes, tuple]]] = [[] for _ in socks]
    buf = bytearray(size)
    for s in socks:
        for _ in range(QUEUED_LIMIT):
            try:
                n, addr = s.recvfrom_into(buf, 0, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                break
            out[steered_index(buf, n, len(socks))].append((bytes(buf[:n]), addr))
    return out


def attach_steering(sock: socket.socket, count: int) -> None:
    """Pick the group's socket by (instance id low word) % count."""
    insns = struct.pack("HBBI" * 3,
                        0x20, 0, 0, INSTANCE_OFFSET + 4,  # ld [payload + 24]
                        0x94, 0, 0, count,                # a %= count
                        0x16, 0, 0, 0)                    # ret a
    buf = ctypes.create_string_buffer(insns)
    prog = struct.pack("HxxxxxxQ", 3, ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, prog)


def effective_rcvbuf(sock) -> int:
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


# --------------------------------------------------------------------------
# Worker

class Metrics:
    """The worker's Prometheus counters, fed from plain integers once per flush."""

    def __init__(self):
        # A private registry: in the daemon the values live in the
        # multiprocess files; in tests each worker gets fresh counters.
        self.registry = CollectorRegistry()

        def c(name, doc, labels=()):
            return prom.Counter(name, doc, labels, registry=self.registry)
        self.received = c("ipr_collector_datagrams_received", "Datagrams read from the socket")
        self.accepted = c("ipr_collector_datagrams_accepted", "Datagrams that passed verification")
        self.records = c("ipr_collector_records_accepted", "Records in accepted datagrams")
        self.rejected = c("ipr_collector_datagrams_rejected", "Datagrams rejected, by reason", ["reason"])
        self.sender_datagrams = c("ipr_collector_sender_datagrams", "Accepted datagrams per sender", ["sender"])
        self.sender_lost = c("ipr_collector_sender_lost_datagrams",
                             "Datagrams missing from a sender's sequence (net of late arrivals)", ["sender"])
        self.sender_resets = c("ipr_collector_sender_sequence_resets",
                               "Sequence jumps past the replay window, not counted as loss", ["sender"])
        self.rows = c("ipr_collector_spool_rows", "Rows written to the spool")
        self.flushes = c("ipr_collector_flushes", "Flushes to the spool")
        self.spool_errors = c("ipr_collector_spool_errors", "Failed spool writes (data kept for the next flush)")
        self.segments = c("ipr_collector_segments_closed", "Spool segments moved to incoming/")
        self.flush_seconds = c("ipr_collector_flush_seconds", "Time spent flushing")
        for reason in REASONS:
            self.rejected.labels(reason)


class Worker:
    """Receives on one socket and writes its own spool segments.

    The Receiver does the per-datagram work; the worker keeps the control:
    configuration and reloads, when to receive and when to flush, the
    spool, the metrics and the replay state's file.
    """

    def __init__(self, cfg, sock: socket.socket, index: int, metrics: Metrics | None = None):
        self.sock = sock
        self.index = index
        self.stopping = False
        self.reload_requested = False
        self.metrics = metrics or Metrics()
        self.host = socket.gethostname()
        self.pending_rows = []  # aggregated rows whose spool write failed
        self.segment = None
        kind = receiver_class()
        self.receiver = kind(cfg)
        log.info("worker %d: receive loop %s", index,
                 "compiled (collector._receive)" if kind.__module__ == "collector._receive"
                 else "pure Python (collector.receive)")
        self.apply_config(cfg)
        self.state_path = self.cfg.spool_dir / "state" / f"replay-{index}.json"
        self.load_replay_state()
        self.next_flush = time.monotonic() + self.cfg.flush_interval

    # -- configuration

    def apply_config(self, cfg) -> None:
        self.cfg = cfg
        self.receiver.configure(cfg)
        self.buf = bytearray(cfg.max_datagram + 1)  # for handle()
        self.view = memoryview(self.buf)

    def reload(self) -> bool:
        """Re-read configuration and keys; keep the current ones if they are bad.

        The master has just found them good, so this fails only if the
        files changed again in between. The master counts the reloads.
        """
        self.reload_requested = False
        try:
            new = config.load_config(self.cfg.path)
        except config.ConfigError as exc:
            log.error("worker %d: reload failed, keeping the running configuration: %s", self.index, exc)
            return False
        new, _fixed = config.reloaded(self.cfg, new)  # the master logs what is ignored
        self.apply_config(new)
        log.info("worker %d reloaded: %d keys", self.index, len(new.keys))
        return True

    # -- the loop

    def run(self) -> None:
        while not self.stopping:
            self.step()
        self.drain()
        self.flush(final=True)

    def handle_queued(self, datagrams) -> None:
        """Check the datagrams the master took for this worker at start-up
        (``take_queued``), as if they had come on its socket."""
        handle = self.receiver.handle
        for data, addr in datagrams:
            handle(data, addr, time.time_ns() // 1_000_000)

    def drain(self, limit: int = 1_000_000, seconds: float = DRAIN_SECONDS) -> int:
        """Take what already sits in the socket's queue (on SIGTERM), until
        it is empty, ``limit`` datagrams were taken or ``seconds`` passed."""
        taken = 0
        deadline = time.monotonic() + seconds
        while taken < limit:
            got = self.receiver.receive(self.sock, min(RECV_BATCH, limit - taken), 0)
            if not got:
                return taken
            taken += got
            if time.monotonic() >= deadline:
                break
        log.warning("worker %d: stopped taking its socket's queue after %d datagrams; "
                    "what still arrives is dropped by the kernel", self.index, taken)
        return taken

    def step(self) -> None:
        """Receive datagrams until a flush is due or a flag is set, then flush.

        Each call into the Receiver waits at most RECV_TIMEOUT (or until
        the flush is due) for the socket, then takes up to RECV_BATCH
        datagrams without blocking, so the clock and the flags are checked
        between batches without a system call per datagram.
        """
        receive = self.receiver.receive
        sock = self.sock
        monotonic = time.monotonic
        deadline = self.next_flush
        while not (self.stopping or self.reload_requested):
            now = monotonic()
            if now >= deadline:
                break
            receive(sock, RECV_BATCH, min(RECV_TIMEOUT, deadline - now))
        if self.reload_requested:
            self.reload()
        if monotonic() >= self.next_flush:
            self.flush()

    def handle(self, n: int, addr) -> str:
        """Verify one datagram of ``n`` bytes (0 included) in ``self.buf``;
        returns "accepted" or the reason it was rejected.

        The checks and their order are docs/wire-format.md's, the same as
        ipr_agent.wire.decode's; tests/test_wire.py runs every golden
        vector through both.
        """
        return self.receiver.handle(self.view[:n], addr, time.time_ns() // 1_000_000)

    # What the Receiver has counted and kept since the last flush, read by
    # tests and tools (copies; the flush takes them).

    @property
    def counts(self) -> dict:
        c = self.receiver.counters()
        return {"received": c["received"], "accepted": c["accepted"], "records": c["records"]}

    @property
    def rejects(self) -> dict:
        return dict(self.receiver.counters()["rejects"])

    @property
    def senders(self) -> dict:
        return self.receiver.counters()["senders"]

    @property
    def sequence_resets(self) -> dict:
        return self.receiver.counters()["resets"]

    @property
    def records(self) -> bytearray:
        return self.receiver.peek()[0]

    # -- flushing

    def flush(self, final: bool = False) -> None:
        """Aggregate what arrived since the last flush and make it durable.

        Order matters: the replay state is written before the rows, so a
        crash in between can lose these rows but never count them twice.
        """
        started = time.monotonic()
        now_ms = int(time.time() * 1000)
        self.next_flush = started + self.cfg.flush_interval
        records, runs = self.receiver.take()  # traffic types already cleaned
        if records:
            minutes = np.repeat(np.array([r[0] for r in runs], np.uint32), [r[1] for r in runs])
            # The sum, compiled in the receive loop's extension where that runs
            # (one choice for both), else spool's twin: the same rows.
            compiled = native.compiled("collector._receive", "collector receive loop")
            aggregate = compiled.aggregate if compiled is not None else spool.aggregate
            self.pending_rows.append(aggregate(records, minutes))
        if self.receiver.dirty or final:
            self.prune_replay(now_ms)
            self.save_replay_state(now_ms)
        if self.pending_rows:
            rows = np.concatenate(self.pending_rows)
            try:
                if self.segment is None:
                    self.segment = spool.SegmentWriter(
                        self.cfg.spool_dir, f"{self.host}-{os.getpid()}-w{self.index}-{now_ms}.seg",
                        self.index, now_ms)
                self.segment.append(rows, now_ms)
                self.pending_rows = []
                self.metrics.rows.inc(len(rows))
            except OSError as exc:
                log.error("spool write failed, keeping %d rows for the next flush: %s", len(rows), exc)
                self.metrics.spool_errors.inc()
        if self.segment is not None and (final or now_ms - self.segment.created_ms >= self.cfg.segment_seconds * 1000):
            try:
                if self.segment.close():
                    self.metrics.segments.inc()
            except OSError as exc:
                log.error("closing segment %s failed: %s", self.segment.path, exc)
            self.segment = None
        self.publish_counters()
        self.metrics.flushes.inc()
        self.metrics.flush_seconds.inc(time.monotonic() - started)

    def publish_counters(self) -> None:
        m = self.metrics
        c = self.receiver.counters()
        self.receiver.reset_counters()  # a sender's negative loss balance is carried over
        m.received.inc(c["received"])
        m.accepted.inc(c["accepted"])
        m.records.inc(c["records"])
        for reason, n in c["rejects"].items():
            if n:
                m.rejected.labels(reason).inc(n)
        for sender, (datagrams, lost) in c["senders"].items():
            m.sender_datagrams.labels(str(sender)).inc(datagrams)
            if lost > 0:
                m.sender_lost.labels(str(sender)).inc(lost)
        for sender, n in c["resets"].items():
            m.sender_resets.labels(str(sender)).inc(n)

    # -- replay state

    def prune_replay(self, now_ms: int) -> None:
        """Forget instances silent for longer than a datagram can stay fresh."""
        self.receiver.prune(now_ms - int((self.cfg.max_age + self.cfg.max_future + 1) * 1000))

    def save_replay_state(self, now_ms: int) -> None:
        doc = {"written_ms": now_ms,
               "instances": [[k, s, i, highest, last_ms]
                             for k, s, i, highest, last_ms, _first in self.receiver.streams()]}
        tmp = self.state_path.with_suffix(".tmp")
        try:
            with open(tmp, "w") as f:
                json.dump(doc, f)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, self.state_path)
            self.receiver.dirty = False
        except OSError as exc:
            log.error("cannot save replay state %s: %s", self.state_path, exc)

    def load_replay_state(self) -> None:
        """Load every worker's saved state: everything up to a saved highest
        sequence counts as seen. Reading all files keeps this right when the
        number of processes changed between runs."""
        for path in sorted(self.state_path.parent.glob("replay-*.json")):
            try:
                doc = json.loads(path.read_text())
                entries = [stream_entry(e) for e in doc["instances"]]  # all checked before any is taken
            except (OSError, ValueError, KeyError, TypeError, OverflowError) as exc:
                log.error("ignoring unreadable replay state %s: %s", path, exc)
                continue
            self.receiver.load(entries)


# --------------------------------------------------------------------------
# Master

class Master:
    """Creates the sockets, runs and restarts the workers and the metrics process."""

    def __init__(self, cfg, lock=None):
        self.cfg = cfg
        self.lock = lock  # the spool lock (open_spool), held for the master's life
        self.host = socket.gethostname()
        self.stopping = False
        self.reload_requested = False
        self.children: dict[int, tuple] = {}  # pid -> ("worker", index) | ("metrics", None)
        self.sockets: list[socket.socket] = []
        self.key_state = cfg.key_state  # the key file as last loaded or looked at
        self.next_key_check = time.monotonic() + KEY_CHECK_INTERVAL
        # Counted here, once per reload, not by each worker. Like theirs, the
        # value lives in the multiprocess files the metrics process sums.
        self.reloads = prom.Counter("ipr_collector_reloads", "Reloads (SIGHUP or a changed key file), by result",
                                    ["result"], registry=None)
        for result in ("ok", "failed"):
            self.reloads.labels(result)

    def start(self) -> None:
        """Open the sockets, then fork the workers and the metrics process.
        The spool is locked and recovered before (``open_spool``)."""
        cfg = self.cfg
        queued = []
        for host, port in cfg.listen:
            group = open_group(host, port, cfg.processes, cfg.rcvbuf)
            self.sockets.extend(group)
            queued += take_queued(group, cfg.max_datagram + 1) if len(group) > 1 else [[]]
        if cfg.metrics_listen:
            problem = bind_problem(*cfg.metrics_listen, socket.SOCK_STREAM)
            if problem:
                raise StartupError(f"metrics_listen: {problem}; free the address or change metrics_listen "
                                   f"in {cfg.path}")
        for i, group in enumerate(range(0, len(self.sockets), cfg.processes)):
            s = self.sockets[group]
            log.info("listening on [%s]:%d with %d process(es), SO_RCVBUF %d",
                     cfg.listen[i][0], s.getsockname()[1], cfg.processes, effective_rcvbuf(s))
        for i in range(len(self.sockets)):
            self.spawn_worker(i, queued[i])
        if cfg.metrics_listen:
            self.spawn_metrics()

    def spawn_worker(self, index: int, queued=()) -> None:
        def work():
            code = 0
            try:
                worker = Worker(self.cfg, self.sockets[index], index)
                _WORKER[0] = worker
                worker.handle_queued(queued)
                worker.run()
            except SystemExit:
                pass
            except BaseException:
                log.exception("worker %d failed", index)
                code = 1
            finally:
                os._exit(code)
        self.children[_fork(work)] = ("worker", index)

    def spawn_metrics(self) -> None:
        def serve():
            try:
                serve_metrics(self.cfg, self.sockets)
            finally:
                os._exit(0)
        self.children[_fork(serve)] = ("metrics", None)

    def run(self) -> int:
        """Run until SIGTERM (after ``start``)."""
        while not self.stopping:
            self.step()
        return self.shutdown()

    def step(self) -> None:
        """Reload on SIGHUP or when the key file changed; reap and restart
        children; then sleep briefly."""
        if self.reload_requested:
            self.reload_requested = False
            self.reload("SIGHUP")
        elif time.monotonic() >= self.next_key_check:
            self.check_key_file()
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            kind, index = self.children.pop(pid, (None, None))
            if kind and not self.stopping:
                log.error("%s %s (pid %d) exited with status %d; restarting",
                          kind, index if index is not None else "", pid, status)
                if kind == "worker":
                    self.recover_segment(pid, index)
                time.sleep(0.2)
                if kind == "worker":
                    self.spawn_worker(index)
                else:
                    self.spawn_metrics()
        time.sleep(0.1)

    def recover_segment(self, pid: int, index: int) -> None:
        """Move a dead worker's open segment to incoming/, as start-up
        recovery does (a torn last block cut off), before its successor
        starts a segment of its own."""
        try:
            notes = spool.recover_open(self.cfg.spool_dir, prefix=f"{self.host}-{pid}-w{index}-")
        except OSError as exc:
            log.error("cannot recover the open segment of worker %d (pid %d): %s; "
                      "the next start recovers it", index, pid, exc)
            return
        for note in notes:
            log.warning("recovered: %s", note)

    def check_key_file(self) -> bool:
        """Reload when the key file is not the one last loaded or looked at.

        A missing file is a state too: one created after start is picked
        up, and one deleted leaves no keys, as a restart would. A bad file
        is tried once, not again until it changes.
        """
        self.next_key_check += KEY_CHECK_INTERVAL  # on the clock, not after this look
        if self.next_key_check <= time.monotonic():  # fell behind: skip the missed looks
            self.next_key_check = time.monotonic() + KEY_CHECK_INTERVAL
        state = config.key_file_state(self.cfg.key_file)
        if state == self.key_state:
            return False
        self.key_state = state
        self.reload(f"the key file {self.cfg.key_file} changed")
        return True

    def reload(self, why: str) -> bool:
        """Validate the configuration and keys; when they are good, keep
        them (so a worker restarted later starts with them) and have every
        worker reload. When they are bad, everything runs on as it is."""
        try:
            new = config.load_config(self.cfg.path)
        except config.ConfigError as exc:
            log.error("%s: reload failed, keeping the running configuration and keys: %s", why, exc)
            self.reloads.labels("failed").inc()
            return False
        self.cfg, fixed = config.reloaded(self.cfg, new)
        self.key_state = self.cfg.key_state
        self.reloads.labels("ok").inc()
        log.info("%s: reloaded, %d key(s) loaded", why, len(self.cfg.keys))
        if fixed:
            log.warning("changed settings that need a restart are ignored: %s", ", ".join(fixed))
        if not self.cfg.keys:
            log.warning(no_keys_warning(self.cfg))
        for pid, (kind, _i) in self.children.items():
            if kind == "worker":
                os.kill(pid, signal.SIGHUP)
        return True

    def shutdown(self) -> int:
        """Ask every child to flush and stop; wait for them."""
        for pid in self.children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        failed = False
        for pid, (kind, index) in list(self.children.items()):
            _pid, status = os.waitpid(pid, 0)
            if kind == "worker" and status != 0:
                log.error("worker %d exited with status %d", index, status)
                self.recover_segment(pid, index)
                failed = True
        self.children.clear()
        return 1 if failed else 0


def no_keys_warning(cfg) -> str:
    what = "does not exist" if cfg.key_state is None else "holds no keys"
    return (f"no sender keys: {cfg.key_file} {what}, so every datagram is rejected as unknown_key. "
            f"Add a sender key in the admin (Agents › Sender keys), which writes this file; "
            f"the collector loads it within {config.KEY_PICKUP_SECONDS} seconds")


_WORKER: list = [None]


def _fork(child) -> int:
    """Fork a child that runs ``child`` (which never returns).

    The stop and reload signals are held back across the fork until the
    child has its own handlers: one that came in between would otherwise
    reach the master's handler in the child, and a SIGTERM that the child
    never heard would leave the master waiting for it forever. A stop that
    comes before ``child`` begins ends the child there, never in the
    master's code.
    """
    held = {signal.SIGTERM, signal.SIGHUP, signal.SIGINT}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            _die_with(parent)
            _child_signals()
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
            child()
        except SystemExit:
            pass
        except BaseException:
            log.exception("child process failed to start")
            code = 1
        finally:
            os._exit(code)
    signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return pid


def _die_with(parent: int) -> None:
    """Have the kernel send this child SIGTERM when the master dies, even
    by SIGKILL: the child then flushes and exits as on a stop, rather than
    run on as an orphan that holds the spool lock. A master that died
    before the request took effect is caught by the parent check; the
    signal waits, held, until the child's own handler is in place."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed: %s; this process outlives a killed master",
                    os.strerror(ctypes.get_errno()))
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


def _child_signals():
    def term(signum, frame):
        if _WORKER[0] is not None:
            _WORKER[0].stopping = True
        else:
            raise SystemExit(0)

    def hup(signum, frame):
        if _WORKER[0] is not None:
            _WORKER[0].reload_requested = True

    signal.signal(signal.SIGTERM, term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the master handles ^C
    signal.signal(signal.SIGHUP, hup)


def serve_metrics(cfg, sockets) -> None:
    """The metrics process: Prometheus text on metrics_listen, summing all workers."""
    from prometheus_client import multiprocess
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    inodes = {os.fstat(s.fileno()).st_ino for s in sockets}

    class SpoolAndSockets:
        def collect(self):
            backlog = GaugeMetricFamily("ipr_collector_spool_segments", "Segments per spool directory",
                                        labels=["state"])
            counts = spool.status(cfg.spool_dir, time.time())
            for sub in ("open", "incoming", "processing"):
                backlog.add_metric([sub], counts[sub]["segments"])
            yield backlog
            drops = CounterMetricFamily("ipr_collector_socket_drops",
                                        "Datagrams the kernel dropped on the listening sockets "
                                        "(receive buffer full)")
            drops.add_metric([], socket_drops(inodes))
            yield drops

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(SpoolAndSockets())
    host, port = cfg.metrics_listen
    server, thread = prom.start_http_server(port, addr=host, registry=registry)
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    while not stop:
        time.sleep(0.2)
    server.shutdown()


def socket_drops(inodes: set[int]) -> int:
    """Sum the drops column of /proc/net/udp{,6} for our sockets."""
    total = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) >= 13 and int(f[9]) in inodes:
                total += int(f[12])
    return total


# --------------------------------------------------------------------------
# Start-up

SPOOL_SUBDIRS = ("open", "incoming", "processing", "state", "metrics")


def open_spool(cfg):
    """Make the spool's directories, prove them writable, take the lock,
    and recover what a stopped run left in open/. Returns the locked file.

    Nothing in the spool is changed before the lock is held: a second
    collector started on a running one's spool leaves it as it was.
    """
    import fcntl
    spool_dir = cfg.spool_dir
    what = (f"make it a directory the collector's user can write, or set spool_dir in {cfg.path}")
    for path in [spool_dir] + [spool_dir / sub for sub in SPOOL_SUBDIRS]:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StartupError(f"cannot create the spool directory {path}: {exc.strerror}; {what}") from None
    try:
        lock = open(spool_dir / "lock", "a")
    except OSError as exc:
        raise StartupError(f"cannot open the spool lock {spool_dir / 'lock'}: {exc.strerror}; {what}") from None
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                lock.close()
                raise StartupError(f"another collector uses the spool {spool_dir} (it holds {spool_dir / 'lock'}); "
                                   f"stop it, or give this one another spool_dir") from None
            time.sleep(0.1)
    for sub in SPOOL_SUBDIRS:  # a read-only mount or another owner shows here, not at the first flush
        probe = spool_dir / sub / f".probe-{os.getpid()}"
        try:
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            os.unlink(probe)
        except OSError as exc:
            lock.close()
            raise StartupError(f"cannot write in the spool directory {probe.parent}: {exc.strerror}; {what}") from None
    try:
        notes = spool.recover_open(spool_dir)
    except OSError as exc:
        lock.close()
        raise StartupError(f"cannot recover the segments in {spool_dir / 'open'}: {exc}; {what}") from None
    for note in notes:
        log.warning("recovered: %s", note)
    return lock


def spool_problem(spool_dir: Path) -> str | None:
    """What would stop start-up from using ``spool_dir`` (None: nothing),
    found without creating anything: each part that exists must be a
    writable directory, and the first that does not must be creatable."""
    for path in [spool_dir] + [spool_dir / sub for sub in SPOOL_SUBDIRS]:
        if path.is_dir():
            if not os.access(path, os.W_OK | os.X_OK):
                return f"the spool directory {path} is not writable"
            continue
        if path.exists() or path.is_symlink():
            return f"the spool directory {path} is not a directory"
        parent = path.parent
        while not (parent.exists() or parent.is_symlink()) and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            return f"the spool directory {path} cannot be created: {parent} is not a directory"
        if not os.access(parent, os.W_OK | os.X_OK):
            return f"the spool directory {path} cannot be created: {parent} is not writable"
        return None  # the rest is made below it
    return None


def bind_problem(host: str, port: int, kind=socket.SOCK_DGRAM) -> str | None:
    """Why ``host:port`` cannot be bound (None: it can). Tried without
    SO_REUSEPORT, so a test never joins a running collector's group."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as s:
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the HTTP server binds
        if family == socket.AF_INET6 and host == "::":
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        try:
            s.bind((host, port))
        except OSError as exc:
            return f"cannot bind [{host}]:{port}: {exc.strerror}"
    return None


def check(cfg) -> int:
    """``--check``: what start-up needs, without starting. The key file was
    read with the configuration. An address in use is a warning, since the
    collector this checks may be the one using it."""
    errors, warnings = [], []
    problem = spool_problem(cfg.spool_dir)
    if problem:
        errors.append(f"{problem}; make it a directory the collector's user can write, "
                      f"or set spool_dir in {cfg.path}")
    addresses = [("listen", h, p, socket.SOCK_DGRAM) for h, p in cfg.listen]
    if cfg.metrics_listen:
        addresses.append(("metrics_listen", *cfg.metrics_listen, socket.SOCK_STREAM))
    for setting, host, port, kind in addresses:
        problem = bind_problem(host, port, kind)
        if problem and "in use" in problem:
            warnings.append(f"{setting}: {problem} (by a running collector?)")
        elif problem:
            errors.append(f"{setting}: {problem}; change {setting} in {cfg.path}")
    for line in errors:
        print(f"error: {line}", file=sys.stderr)
    if errors:
        return 2
    print(f"ok: {len(cfg.keys)} key(s), listening on "
          + ", ".join(f"[{h}]:{p}" for h, p in cfg.listen))
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)
    if not cfg.keys:
        print(f"warning: {no_keys_warning(cfg)}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse
    installed = not sys.argv[0].endswith("__main__.py")  # ipr-collector, not python -m collector
    p = argparse.ArgumentParser(prog=Path(sys.argv[0]).name if installed else "python -m collector",
                                description="ipr collector: receives agents' datagrams into the spool")
    p.add_argument("-c", "--config", default=os.environ.get("IPR_COLLECTOR_CONFIG", "collector.toml"),
                   help="TOML configuration (default: $IPR_COLLECTOR_CONFIG or collector.toml)")
    p.add_argument("--check", action="store_true", help="check what start-up needs (configuration, keys, spool, addresses), then exit")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logs.LineFormatter("%(process)d %(levelname)s %(message)s"))
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler])
    try:
        cfg = config.load_config(args.config)
    except config.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        return check(cfg)
    if not cfg.keys:
        log.warning(no_keys_warning(cfg))
    try:
        lock = open_spool(cfg)
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    metrics_dir = cfg.spool_dir / "metrics"
    for f in metrics_dir.glob("*.db"):  # the last run's counters: ours start at 0
        f.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    # Counters made from here on write to the multiprocess files.
    prom.values.ValueClass = prom.values.get_value_class()
    master = Master(cfg, lock)

    def term(signum, frame):
        master.stopping = True

    def hup(signum, frame):
        master.reload_requested = True

    signal.signal(signal.SIGTERM, term)
    signal.signal(signal.SIGINT, term)
    signal.signal(signal.SIGHUP, hup)
    try:
        master.start()
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        master.shutdown()
        return 1
    code = master.run()
    log.info("stopped")
    return code
