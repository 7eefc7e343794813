"""The agent's sender: batches records into signed UDP datagrams for the collector.

    sender = Sender("198.51.100.5", 9477, key_id=1, secret=b"...", sender_id=42)
    sender.add(wire.Record(client="203.0.113.9", server="192.0.2.10", ...))

or ``Sender.from_env()`` (see docs/agent.md for the variables).

The sender sits on the application's request path, so it never blocks and
never raises once built: the socket is non-blocking and a datagram that
cannot be sent is dropped and counted (UDP has no retry; the collector sees
the sequence gap). A datagram is sent as soon as it is full, and a daemon
thread sends whatever is buffered every ``flush_interval`` seconds, so a
record reaches the collector within about a second (the collector counts
records in the minute of the datagram's time).

Fork safety: an instance id names one stream of sequence numbers, so a
forked child (gunicorn --preload, uWSGI without lazy-apps) must not reuse
its parent's. ``os.register_at_fork`` resets every sender in a child forked
by Python; servers that fork from C without calling CPython's fork hooks
(uWSGI by default) are caught by a pid check in ``add``.
"""
from __future__ import annotations

import atexit
import os
import secrets
import socket
import threading
import time
import weakref

from ipr_agent import wire

__all__ = ["Sender", "parse_collector"]

_senders: weakref.WeakSet[Sender] = weakref.WeakSet()
_fork_lock = threading.Lock()  # serialises the pid-check fallback's reset


def parse_collector(text: str, name: str = "collector") -> tuple[str, int]:
    """``host:port`` or ``[v6addr]:port`` to (host, port); ValueError names ``name``."""
    text = text.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep or not host:
            raise ValueError(f"{name}={text!r}: expected [IPv6 address]:port")
    else:
        host, sep, port = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"{name}={text!r}: expected host:port ([addr]:port for IPv6)")
        if ":" in host:
            raise ValueError(f"{name}={text!r}: put an IPv6 address in brackets, e.g. [::1]:9477")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{name}={text!r}: port must be 1..65535")
    return host, int(port)


def _resolve(host: str, port: int, name: str) -> tuple[int, tuple]:
    try:
        infos = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    except (socket.gaierror, UnicodeError) as exc:
        raise ValueError(f"{name}: cannot resolve {host!r}: {exc}") from None
    family, _type, _proto, _canon, address = infos[0]
    return family, address


class Sender:
    """Batches packed records and sends them as signed datagrams.

    Counters (plain ints of this process, read them any time): ``datagrams_sent``,
    ``records_sent``, ``send_errors`` (datagrams the kernel refused: EAGAIN,
    ECONNREFUSED after an ICMP port unreachable, ...), ``records_dropped``
    (records of those datagrams, and records added after ``close``).
    """

    def __init__(self, host: str, port: int, key_id: int, secret: bytes, sender_id: int, *,
                 instance_id: int | None = None, max_datagram: int = wire.DEFAULT_DATAGRAM,
                 flush_interval: float = 1.0, tag_len: int = wire.TAG_DEFAULT,
                 traffic_type: str = "default"):
        if not 0 <= key_id <= wire.U32:
            raise ValueError(f"key_id {key_id} is outside 0..{wire.U32}")
        if not 0 <= sender_id <= wire.U32:
            raise ValueError(f"sender_id {sender_id} is outside 0..{wire.U32}")
        if not isinstance(secret, (bytes, bytearray)) or len(secret) < 16:
            raise ValueError("secret must be at least 16 bytes")
        if not wire.TAG_MIN <= tag_len <= wire.TAG_MAX:
            raise ValueError(f"tag_len {tag_len} is outside {wire.TAG_MIN}..{wire.TAG_MAX}")
        per_datagram = (min(max_datagram, wire.MAX_DATAGRAM) - wire.HEADER_SIZE - tag_len) // wire.RECORD_SIZE
        if per_datagram < 1:
            raise ValueError(f"max_datagram {max_datagram} is too small for one record "
                             f"({wire.HEADER_SIZE + wire.RECORD_SIZE + tag_len} bytes)")
        if not flush_interval > 0:
            raise ValueError(f"flush_interval must be > 0, not {flush_interval}")
        if instance_id is not None and not 0 <= instance_id <= wire.U64:
            raise ValueError(f"instance_id {instance_id} is outside 0..{wire.U64}")
        self.host, self.port = host, port
        self.family, self.address = _resolve(host, port, f"collector {host}:{port}")
        self.key_id, self.sender_id, self.secret = key_id, sender_id, bytes(secret)
        self.tag_len, self.flush_interval = tag_len, flush_interval
        self.max_datagram = max_datagram
        self.records_per_datagram = min(per_datagram, wire.MAX_RECORDS)
        # What the WSGI middleware uses when not given a traffic type.
        self.traffic_type = traffic_type
        self.closed = False
        self._reset(instance_id)
        _senders.add(self)

    # -- construction from settings -------------------------------------

    @classmethod
    def from_env(cls, environ=None) -> Sender:
        """Build a sender from IPR_* variables (``environ`` defaults to os.environ).

        Raises ValueError naming the variable when one is missing or wrong.
        """
        env = os.environ if environ is None else environ

        def get(name, default=None):
            value = env.get(name)
            return default if value is None or value.strip() == "" else value.strip()

        def need(name):
            value = get(name)
            if value is None:
                raise ValueError(f"{name} is not set")
            return value

        def integer(name, default, low, high):
            value = get(name)
            if value is None:
                if default is None:
                    raise ValueError(f"{name} is not set")
                return default
            try:
                number = int(value)
            except ValueError:
                raise ValueError(f"{name}={value!r}: expected an integer") from None
            if not low <= number <= high:
                raise ValueError(f"{name}={number}: expected {low}..{high}")
            return number

        host, port = parse_collector(need("IPR_COLLECTOR"), "IPR_COLLECTOR")
        key_id = integer("IPR_KEY_ID", None, 0, wire.U32)
        sender_id = integer("IPR_SENDER_ID", None, 0, wire.U32)

        inline, path = get("IPR_KEY_SECRET"), get("IPR_KEY_SECRET_FILE")
        if inline is not None and path is not None:
            raise ValueError("set IPR_KEY_SECRET or IPR_KEY_SECRET_FILE, not both")
        source = "IPR_KEY_SECRET"
        if path is not None:
            source = "IPR_KEY_SECRET_FILE"
            try:
                with open(path) as f:
                    inline = f.read().strip()
            except OSError as exc:
                raise ValueError(f"IPR_KEY_SECRET_FILE: cannot read {path}: {exc}") from None
        if inline is None:
            raise ValueError("IPR_KEY_SECRET (or IPR_KEY_SECRET_FILE) is not set")
        try:
            secret = bytes.fromhex(inline)
        except ValueError:
            raise ValueError(f"{source}: the secret must be hex") from None
        if len(secret) < 16:
            raise ValueError(f"{source}: the secret must be at least 16 bytes (32 hex digits), "
                             f"not {len(secret)}")

        ttype = get("IPR_TRAFFIC_TYPE", "default")
        if not ttype.isascii() or len(ttype) > wire.TYPE_SIZE:
            raise ValueError(f"IPR_TRAFFIC_TYPE={ttype!r}: expected at most "
                             f"{wire.TYPE_SIZE} ASCII characters")
        max_datagram = integer("IPR_MAX_DATAGRAM", wire.DEFAULT_DATAGRAM,
                               wire.HEADER_SIZE + wire.RECORD_SIZE + wire.TAG_MAX, wire.MAX_DATAGRAM)
        tag_len = integer("IPR_TAG_LEN", wire.TAG_DEFAULT, wire.TAG_MIN, wire.TAG_MAX)
        interval = get("IPR_FLUSH_INTERVAL", "1.0")
        try:
            flush_interval = float(interval)
        except ValueError:
            raise ValueError(f"IPR_FLUSH_INTERVAL={interval!r}: expected seconds") from None
        if not 0 < flush_interval <= 5:
            raise ValueError(f"IPR_FLUSH_INTERVAL={interval}: expected 0 < seconds <= 5")
        _resolve(host, port, "IPR_COLLECTOR")  # so a bad host names the variable
        return cls(host, port, key_id, secret, sender_id, max_datagram=max_datagram,
                   flush_interval=flush_interval, tag_len=tag_len, traffic_type=ttype)

    # -- per-process state ----------------------------------------------

    def _reset(self, instance_id: int | None = None) -> None:
        """Fresh state for this process: instance, sequence, socket, buffer, lock.

        Runs at start-up and in a forked child, where the parent's lock may
        have been held by a thread that does not exist here, and the
        parent's buffer holds records the parent will send itself.
        """
        self._pid = os.getpid()
        self._lock = threading.Lock()
        # Counters are this process's own, like its instance id.
        self.datagrams_sent = self.records_sent = 0
        self.send_errors = self.records_dropped = 0
        self.last_error: str | None = None
        # The collector steers on the low 32 bits: draw all 64 from the OS.
        self.instance_id = instance_id if instance_id is not None else secrets.randbits(64)
        self.sequence = 0
        self._buffer: list[bytes] = []
        self._thread = None
        self._stop = threading.Event()
        self._last_flush = time.monotonic()
        self._sock = None
        if not self.closed:
            self._open()

    def _open(self) -> None:
        """Open the socket; on failure (no route yet, ...) the next send tries again."""
        try:
            sock = socket.socket(self.family, socket.SOCK_DGRAM)
        except OSError as exc:
            self.last_error = f"socket: {exc}"
            return
        try:
            sock.setblocking(False)
            # Connected, so the kernel reports ICMP port unreachable as
            # ECONNREFUSED on a later send (counted), and picks the source once.
            sock.connect(self.address)
        except OSError as exc:
            sock.close()
            self.last_error = f"socket: {exc}"
            return
        self._sock = sock

    def _after_fork(self) -> None:
        # Always a random instance in the child, even if the parent's was
        # given: two processes must never share a sequence stream.
        old = self._sock
        self._reset()
        if old is not None:
            try:
                old.close()  # our copy of the parent's socket; the parent keeps its own
            except OSError:
                pass

    def _check_fork(self) -> None:
        with _fork_lock:
            if self._pid != os.getpid():
                self._after_fork()

    # -- the hot path ---------------------------------------------------

    def add(self, record: wire.Record) -> None:
        """Queue one record (packs it; ``add_packed`` is the faster path)."""
        try:
            packed = record.pack()
        except Exception as exc:  # a bad field must not reach the application
            self.last_error = f"pack: {exc}"
            self.records_dropped += 1
            return
        self.add_packed(packed)

    def add_packed(self, packed: bytes) -> None:
        """Queue one record already packed with ``wire.RECORD`` (120 bytes)."""
        try:
            if self._pid != os.getpid():
                self._check_fork()
            if self.closed:
                self.records_dropped += 1
                return
            with self._lock:
                buffer = self._buffer
                buffer.append(packed)
                if len(buffer) >= self.records_per_datagram:
                    self._send_locked()
                elif self._thread is None:
                    self._start_thread()
                elif time.monotonic() - self._last_flush > 2 * self.flush_interval:
                    # The flush thread is not getting to run (uWSGI without
                    # --enable-threads): flush from here instead.
                    self._send_locked()
        except Exception as exc:  # never into the application
            self.last_error = f"add: {exc!r}"
            self.records_dropped += 1

    def flush(self) -> None:
        """Send whatever is buffered now."""
        try:
            if self._pid != os.getpid():
                self._check_fork()
            with self._lock:
                if self._buffer:
                    self._send_locked()
                else:
                    self._last_flush = time.monotonic()
        except Exception as exc:  # never into the application
            self.last_error = f"flush: {exc}"

    def _send_locked(self) -> None:
        records, self._buffer = self._buffer, []
        self._last_flush = time.monotonic()
        # A datagram that fails still uses its sequence number: the gap
        # tells the collector that records were lost.
        self.sequence += 1
        try:
            header = wire.Header(self.key_id, self.sender_id, self.instance_id, self.sequence,
                                 time.time_ns() // 1_000_000, self.tag_len)
            data = wire.encode(header, records, self.secret)
            if self._sock is None and not self.closed:
                self._open()
            if self._sock is None:
                raise OSError(f"no socket ({self.last_error})")
            self._sock.send(data)
        except Exception as exc:  # OSError from send; anything else is our bug, still not the app's
            self.send_errors += 1
            self.records_dropped += len(records)
            self.last_error = f"send: {exc!r}"
        else:
            self.datagrams_sent += 1
            self.records_sent += len(records)

    # -- the flush thread -----------------------------------------------

    def _start_thread(self) -> None:
        # Started on first use, so a gunicorn master that imports the app
        # (--preload) and never serves runs no thread.
        thread = threading.Thread(target=_flush_loop, args=(weakref.ref(self), self._stop,
                                                            self.flush_interval),
                                  name="ipr-sender-flush", daemon=True)
        self._thread = thread
        try:
            thread.start()
        except RuntimeError as exc:  # e.g. at interpreter shutdown
            self.last_error = f"thread: {exc}"

    def close(self) -> None:
        """Flush, stop the thread and close the socket. Later records are dropped."""
        if self.closed:
            return
        self.flush()
        self.closed = True
        self._stop.set()
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def __repr__(self) -> str:
        return (f"<Sender {self.host}:{self.port} key={self.key_id} sender={self.sender_id} "
                f"instance={self.instance_id:016x} seq={self.sequence} sent={self.records_sent} "
                f"errors={self.send_errors} dropped={self.records_dropped}>")


def _flush_loop(ref, stop: threading.Event, interval: float) -> None:
    # A weak reference, so an abandoned sender is collected and its thread ends.
    while not stop.wait(interval):
        sender = ref()
        if sender is None:
            return
        sender.flush()
        del sender


def _reset_in_child() -> None:
    global _fork_lock
    _fork_lock = threading.Lock()
    for sender in list(_senders):
        sender._after_fork()


def _flush_at_exit() -> None:
    # gunicorn workers leave by sys.exit, so the last partial datagram goes out.
    for sender in list(_senders):
        if not sender.closed:
            sender.flush()


os.register_at_fork(after_in_child=_reset_in_child)
atexit.register(_flush_at_exit)
