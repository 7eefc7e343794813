"""The collector's receive loop: take datagrams, verify them, keep their records.

``Receiver`` is the pure-Python twin of the compiled
``collector._receive.Receiver`` (collector/_receive.c): the same interface,
the same verdicts, counters, replay state and record bytes. The worker
(collector/daemon.py) uses whichever ``receiver_class()`` picks, and keeps
the control: configuration and reloads, flushes, metrics, the replay
state's file.

The checks and their order are docs/wire-format.md's, the same as
ipr_agent.wire.decode's; tests/test_collector_receive.py runs both twins
on every golden vector, on fuzzed datagrams and on random sequence
streams, and requires the same results.

Interface (both twins):

- ``Receiver(cfg)``, ``configure(cfg)``: the settings and keys of a
  collector.config.Config (on a reload, the replay window stays);
- ``receive(sock, max_datagrams, timeout)``: wait up to ``timeout``
  seconds for the socket to be readable, then take what it holds without
  blocking, at most ``max_datagrams``; returns how many were taken;
- ``handle(data, addr, now_ms=None)``: verify one datagram from ``addr``
  (a socket address tuple); returns "accepted" or the reject reason;
- ``take()`` / ``peek()``: the kept records (120 bytes each, a bytearray,
  each traffic type as wire.clean_type reads it) and their minute runs
  ([minute, record count] in arrival order); take also empties them;
- ``counters()`` / ``reset_counters()``: what was counted since the last
  reset; a sender's negative loss balance (late arrivals for gaps already
  published) is carried over;
- ``streams(bits=False)``, ``prune(horizon_ms)``, ``load(entries)`` and
  ``dirty``: the replay state.
"""
from __future__ import annotations

import hashlib
import hmac
import select
import socket
import time

import numpy as np

from ipr_agent.wire import HEADER, HEADER_SIZE, RECORD_SIZE, TAG_MIN, TYPE_SIZE, U32, U64, clean_type

REASONS = ("garbage", "bad_version", "truncated", "oversized", "malformed",
           "unknown_key", "disabled_key", "source_not_allowed", "short_tag",
           "bad_tag", "sender_not_allowed", "stale", "future", "replayed")
SOURCE_CACHE_LIMIT = 65536  # (key, source address) verdicts kept before the cache starts again

_HEADER_UNPACK = HEADER.unpack_from


def receiver_class():
    """The compiled Receiver where it runs (ipr.native decides), else this module's."""
    from ipr import native
    compiled = native.compiled("collector._receive", "collector receive loop")
    return compiled.Receiver if compiled is not None else Receiver


class Receiver:
    """Verifies datagrams and keeps their records until ``take``."""

    def __init__(self, cfg):
        self.window = None
        # (key, sender, instance) -> [highest, bits, last ms, first]: bit i
        # of ``bits`` is set when highest - i was seen; ``first`` is where
        # the collector started counting the stream's gaps.
        self.replay: dict[tuple, list[int]] = {}
        self.dirty = False
        self.senders: dict[int, list[int]] = {}  # sender id -> [datagrams, lost]
        self.resets: dict[int, int] = {}  # sender id -> jumps past the replay window
        self.records = bytearray()
        self.runs: list[list[int]] = []
        self.source_cache: dict[tuple, bool] = {}
        self.reset_counters()
        self.configure(cfg)

    def configure(self, cfg) -> None:
        if self.window is not None and cfg.replay_window != self.window and self.replay:
            raise ValueError(f"replay_window cannot change from {self.window} to "
                             f"{cfg.replay_window} while streams are held")
        self.max_datagram = cfg.max_datagram
        self.min_tag_len = cfg.min_tag_len
        self.max_age_ms = cfg.max_age * 1000
        self.max_future_ms = cfg.max_future * 1000
        self.window = cfg.replay_window
        self.mask = (1 << self.window) - 1
        self.keys = {k.id: (hmac.new(k.secret, digestmod=hashlib.sha256), k.enabled, k.sender_ids, k.allows)
                     for k in cfg.keys.values()}
        self.source_cache.clear()
        self.buf = bytearray(self.max_datagram + 1)

    # -- taking datagrams

    def receive(self, sock, max_datagrams: int, timeout: float) -> int:
        fd = sock if isinstance(sock, int) else sock.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if not poller.poll(0 if not timeout > 0 else int(min(timeout, 86400.0) * 1000)):  # NaN: 0
            return 0
        if isinstance(sock, int):
            sock = socket.socket(fileno=fd)
            try:
                return self._take(sock, max_datagrams)
            finally:
                sock.detach()
        return self._take(sock, max_datagrams)

    def _take(self, sock, max_datagrams: int) -> int:
        buf, view = self.buf, memoryview(self.buf)
        taken = 0
        while taken < max_datagrams:
            try:
                n, addr = sock.recvfrom_into(buf, 0, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                break
            self.handle(view[:n], addr)  # every datagram, an empty one too
            taken += 1
        return taken

    def handle(self, data, addr, now_ms: int | None = None) -> str:
        """Verify one datagram; keep its records or count why not."""
        try:
            view = memoryview(data)
        except TypeError:
            raise TypeError(f"a bytes-like object is required, not '{type(data).__name__}'") from None
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        addr = (addr[0],)
        self.received += 1
        reason = self._verdict(view, addr, now_ms)
        if reason != "accepted":
            self.rejects[reason] += 1
        return reason

    def _verdict(self, data, addr, now_ms):
        n = len(data)
        if n > self.max_datagram:
            return "oversized"
        if n < 4 or bytes(data[0:3]) != b"IPR":
            return "garbage"
        if data[3] != 1:
            return "bad_version"
        if n < HEADER_SIZE + TAG_MIN:
            return "truncated"
        (_m, _v, tag_len, hflags, rsize, count, reserved, key_id, sender_id, instance,
         seq, time_ms) = _HEADER_UNPACK(data)
        if not 16 <= tag_len <= 32 or hflags or reserved or rsize < RECORD_SIZE or count == 0:
            return "malformed"
        cut = n - tag_len
        if cut != HEADER_SIZE + count * rsize:
            return "truncated"
        key = self.keys.get(key_id)
        if key is None:
            return "unknown_key"
        template, enabled, sender_ids, allows = key
        if not enabled:
            return "disabled_key"
        src = (key_id, addr[0])
        allowed = self.source_cache.get(src)
        if allowed is None:
            if len(self.source_cache) > SOURCE_CACHE_LIMIT:
                self.source_cache.clear()
            allowed = self.source_cache[src] = bool(allows(addr[0]))
        if not allowed:
            return "source_not_allowed"
        if tag_len < self.min_tag_len:
            return "short_tag"
        h = template.copy()
        h.update(data[:cut])
        if not hmac.compare_digest(h.digest()[:tag_len], bytes(data[cut:n])):
            return "bad_tag"
        # After the tag: only a holder of the key is counted here, so the
        # reason always means a sender configured with a sender id its key
        # was not given.
        if sender_id not in sender_ids:
            return "sender_not_allowed"
        if now_ms is None:
            now_ms = time.time_ns() // 1_000_000
        if now_ms - time_ms > self.max_age_ms:  # an age of exactly max_age is accepted
            return "stale"
        if time_ms - now_ms > self.max_future_ms:
            return "future"
        if not self._sequence(key_id, sender_id, instance, seq, now_ms):
            return "replayed"
        self.accepted += 1
        self.count_records += count
        minute = time_ms // 60000
        runs = self.runs
        if runs and runs[-1][0] == minute:
            runs[-1][1] += count
        else:
            runs.append([minute, count])
        if rsize == RECORD_SIZE:
            self.records += data[HEADER_SIZE:cut]
        else:  # a later version's longer records: keep the version-1 prefix
            for off in range(HEADER_SIZE, cut, rsize):
                self.records += data[off:off + RECORD_SIZE]
        return "accepted"

    def _sequence(self, key_id, sender_id, instance, seq, now_ms) -> bool:
        """Book ``seq`` in its stream; False when it is a replay.

        Replay window: highest - window and older are replays. Gaps are
        booked as loss from ``first`` on; a late arrival inside the window
        takes its loss back.
        """
        rkey = (key_id, sender_id, instance)
        state = self.replay.get(rkey)
        stats = self.senders.get(sender_id)
        if stats is None:
            stats = self.senders[sender_id] = [0, 0]
        window = self.window
        if state is None:
            self.replay[rkey] = [seq, 1, now_ms, seq]
        elif seq > state[0]:
            gap = seq - state[0]
            if gap > window:
                # Farther ahead than the window reaches: the gap is not
                # booked as loss (a sender restarted with its old instance
                # id, or a forged jump), and the stream's count starts
                # again here, as for a new instance.
                self.resets[sender_id] = self.resets.get(sender_id, 0) + 1
                state[1] = 1
                state[3] = seq
            else:
                stats[1] += gap - 1
                state[1] = ((state[1] << gap) | 1) & self.mask
            state[0] = seq
            state[2] = now_ms
        else:
            back = state[0] - seq
            if back >= window or (state[1] >> back) & 1:
                return False
            state[1] |= 1 << back
            if seq > state[3]:
                stats[1] -= 1  # a late arrival counted as lost when the gap opened
        self.dirty = True
        stats[0] += 1
        return True

    # -- handing over

    def take(self) -> tuple[bytearray, list[list[int]]]:
        records, runs = self.records, self.runs
        self.records, self.runs = bytearray(), []
        clean_types(records)
        return records, runs

    def peek(self) -> tuple[bytearray, list[list[int]]]:
        records = bytearray(self.records)
        clean_types(records)
        return records, [list(r) for r in self.runs]

    def counters(self) -> dict:
        return {"received": self.received, "accepted": self.accepted, "records": self.count_records,
                "rejects": dict(self.rejects),
                "senders": {s: list(v) for s, v in self.senders.items()},
                "resets": dict(self.resets)}

    def reset_counters(self) -> None:
        self.received = self.accepted = self.count_records = 0
        self.rejects = dict.fromkeys(REASONS, 0)
        # A negative balance (late arrivals for gaps already published) is
        # carried over rather than decrementing a counter.
        self.senders = {s: [0, min(lost, 0)] for s, (_d, lost) in self.senders.items()}
        self.resets = {}

    # -- replay state

    def streams(self, bits: bool = False) -> list[tuple]:
        """(key, sender, instance, highest, last ms, first[, bits]) per stream."""
        if bits:
            return [(*k, st[0], st[2], st[3], st[1]) for k, st in self.replay.items()]
        return [(*k, st[0], st[2], st[3]) for k, st in self.replay.items()]

    def prune(self, horizon_ms: int) -> int:
        """Forget the streams last heard before ``horizon_ms``; returns how many."""
        old = [k for k, st in self.replay.items() if st[2] < horizon_ms]
        for k in old:
            del self.replay[k]
        return len(old)

    def load(self, entries) -> None:
        """Take saved streams, (key, sender, instance, highest, last ms) each:
        everything up to a saved highest sequence counts as seen. A stream
        held with a higher one stays as it is."""
        full = self.mask
        for entry in entries:
            key_id, sender, instance, highest, last_ms = stream_entry(entry)
            st = self.replay.get((key_id, sender, instance))
            if st is None or st[0] < highest:
                self.replay[(key_id, sender, instance)] = [highest, full, last_ms, highest]


def clean_types(records: bytearray) -> None:
    """Make every record's traffic_type what wire.clean_type reads: printable
    ASCII then NUL padding. Checked for all the records at once (the
    compiled receiver does it as it copies each record); the few that fail
    are rewritten one by one."""
    types = np.frombuffer(records, np.uint8).reshape(-1, RECORD_SIZE)[:, 32:32 + TYPE_SIZE]
    nul = types == 0
    printable = (types >= 0x21) & (types <= 0x7E)
    after_nul = np.logical_or.accumulate(nul, axis=1)
    bad = np.flatnonzero(~(printable | nul).all(axis=1) | (after_nul & ~nul).any(axis=1))
    for i in bad.tolist():
        off = RECORD_SIZE * i + 32
        records[off:off + TYPE_SIZE] = clean_type(records[off:off + TYPE_SIZE])


def stream_entry(entry) -> tuple:
    """A saved stream, checked: (key, sender, instance, highest, last ms)."""
    entry = tuple(entry)
    if len(entry) != 5:
        raise ValueError(f"a stream is (key, sender, instance, highest, last ms), not {len(entry)} values")
    if not all(type(x) is int for x in entry):
        raise TypeError("a stream's values are integers")
    key_id, sender, instance, highest, last_ms = entry
    if not (0 <= key_id <= U32 and 0 <= sender <= U32 and 0 <= instance <= U64 and 0 <= highest <= U64
            and -(1 << 63) <= last_ms < 1 << 63):
        raise OverflowError("a stream's key and sender are 32-bit, its instance and highest "
                            "64-bit unsigned, its last ms 64-bit signed")
    return entry
