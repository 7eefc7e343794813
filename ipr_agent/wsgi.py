"""WSGI middleware: one ipr record per response, with the connection's TCP_INFO.

    from ipr_agent.sender import Sender
    from ipr_agent.wsgi import IprMiddleware
    application = IprMiddleware(application, Sender.from_env())

The record is made when the server calls ``close()`` on the response
iterable, that is after the server has written the whole response to the
socket. Then the kernel's TCP_INFO for the client connection is read
(gunicorn: ``environ["gunicorn.socket"]``; uWSGI: ``uwsgi.connection_fd()``),
and the counters' deltas since the previous request on the same connection
go into the record. Without a socket (other servers, Unix sockets) the
record carries status and bytes only. docs/agent.md has the details and
the caveats (send buffer, proxies).

The middleware must never break the application: whatever goes wrong while
measuring is swallowed and counted in ``errors`` (the last one in
``last_error``); the application's own exceptions pass through unchanged.
This module is on every request's path, so it avoids per-request
allocations it can cache (packed addresses, traffic types) and the
ipaddress module.
"""
from __future__ import annotations

import os
import socket
import struct
import threading
import time

from ipr_agent import wire

try:  # only importable inside a uWSGI process
    import uwsgi as _uwsgi  # type: ignore[import-not-found]
    if not hasattr(_uwsgi, "connection_fd"):
        _uwsgi = None
except ImportError:
    _uwsgi = None

__all__ = ["IprMiddleware", "read_tcp_info"]

_perf = time.perf_counter
_RECORD = wire.RECORD.pack
_IPPROTO_TCP = socket.IPPROTO_TCP
_TCP_INFO = getattr(socket, "TCP_INFO", 11)  # 11 on Linux

# struct tcp_info, native byte order, fields read by offset:
#   7 the byte holding tcpi_delivery_rate_app_limited (bit 0, Linux >= 4.9)
#  68 rtt u32 µs, 72 rttvar u32 µs, 100 total_retrans u32        (any Linux)
# 144 notsent_bytes u32, 148 min_rtt u32 µs, 156 data_segs_out u32 (>= 4.6)
# 160 delivery_rate u64 bytes/s                                  (>= 4.9)
# 200 bytes_sent u64, 208 bytes_retrans u64                      (>= 4.19)
# The kernel returns min(asked, its struct size) bytes; a field past the
# returned length does not exist on this kernel (it is not zero).
_INFO_LEN = 216
_BASE = struct.Struct("=7xB60xII24xI")                 # 104 bytes
_SEGS = struct.Struct("=7xB60xII24xI44xI4xI")          # 160
_RATE = struct.Struct("=7xB60xII24xI44xI4xIQ")         # 168
_FULL = struct.Struct("=7xB60xII24xI40xII4xIQ32xQQ")   # 216, with notsent_bytes
assert (_BASE.size, _SEGS.size, _RATE.size, _FULL.size) == (104, 160, 168, 216)

F_TCPINFO, F_SEGS, F_BYTES = wire.F_TCPINFO, wire.F_TCPINFO_SEGS, wire.F_BYTES_SENT
F_RATE, F_APP, F_NEW, F_TLS = wire.F_DELIVERY_RATE, wire.F_APP_LIMITED, wire.F_NEW_CONNECTION, wire.F_TLS
_ALL = F_TCPINFO | F_SEGS | F_RATE | F_BYTES

_HTTP_VERSIONS = {"HTTP/1.0": 10, "HTTP/1.1": 11, "HTTP/2": 20, "HTTP/2.0": 20,
                  "HTTP/3": 30, "HTTP/3.0": 30, "HTTP/0.9": 0}
_U32 = wire.U32
_ANY = b"\0" * 16  # "::": an address we could not read
_DEFAULT_TYPE = b"\0" * 16  # an empty traffic type means "default" on the wire
_CACHE_MAX = 65536


def read_tcp_info(sock) -> dict | None:
    """TCP_INFO of ``sock`` as a dict of the fields ipr uses (absent ones left out).

    For tools and tests; the middleware's hot path unpacks in place.
    """
    info = sock.getsockopt(_IPPROTO_TCP, _TCP_INFO, 512)
    n = len(info)
    if n < _BASE.size:
        return None
    out = {}
    b7, out["rtt_us"], out["rttvar_us"], out["total_retrans"] = _BASE.unpack_from(info)
    if n >= _SEGS.size:
        out["min_rtt_us"], out["data_segs_out"] = _SEGS.unpack_from(info)[4:6]
    if n >= _RATE.size:
        out["delivery_rate"] = _RATE.unpack_from(info)[6]
        out["app_limited"] = bool(b7 & 1)
    if n >= _FULL.size:
        out["notsent_bytes"], out["bytes_sent"], out["bytes_retrans"] = \
            (_FULL.unpack_from(info)[i] for i in (4, 8, 9))
    if n >= 136:  # tcpi_bytes_received at 128 (>= 4.1)
        out["bytes_received"] = struct.unpack_from("=Q", info, 128)[0]
    return out


_STATUS: dict[str, int] = {}


def _status_code(line) -> int:
    """'404 Not Found' -> 404 (0 if unparsable), remembered per status line."""
    try:
        code = int(line[:3]) if line else 0
    except (ValueError, TypeError):
        code = 0
    if line is not None and len(_STATUS) < 1024:
        _STATUS[line] = code
    return code


def _pack_address(text: str) -> bytes:
    try:
        return wire.pack_address(text)
    except (OSError, ValueError, TypeError):
        return _ANY


class IprMiddleware:
    """Wrap a WSGI application; send one record per response to ``sender``.

    ``traffic_type``: a fixed name (at most 16 ASCII characters), or a
    callable ``f(environ) -> str`` called once per request (keep it cheap);
    ``None`` uses ``sender.traffic_type`` (IPR_TRAFFIC_TYPE, or "default").
    ``server_address``: the local address to report when the socket cannot
    be read (default "0.0.0.0").
    """

    def __init__(self, app, sender, traffic_type=None, server_address: str | None = None):
        self.app = app
        self.sender = sender
        self._add = sender.add_packed
        if traffic_type is None:
            traffic_type = getattr(sender, "traffic_type", "default")
        if callable(traffic_type):
            self._type_of, self._type = traffic_type, None
        else:
            self._type_of, self._type = None, wire.pack_type(str(traffic_type))
        self._types: dict[str, bytes] = {}
        self._addresses: dict[str, bytes] = {}
        self._server = _pack_address(server_address or "0.0.0.0")
        # fd -> [remote addr, remote port, total_retrans, data_segs_out,
        #        bytes_sent, bytes_retrans, client16, server16, server port]
        self._conns: dict[int, list] = {}
        # Reading TCP_INFO and moving the connection's baseline must be one
        # step when two requests of one connection finish at once (HTTP/2).
        self._lock = threading.Lock()
        self.records = 0
        self.errors = 0
        self.last_error: str | None = None

    def __call__(self, environ, start_response):
        body = _Body(self, environ, start_response)
        try:
            result = self.app(environ, body.start_response)
        except BaseException:
            # The server answers 500 if it still can; measure now, as no
            # iterable will be closed.
            body.failed = True
            body.done = True
            self._finish(body)
            raise
        body.result = result
        file_wrapper = environ.get("wsgi.file_wrapper")
        if file_wrapper is not None and type(result) is file_wrapper and isinstance(file_wrapper, type):
            # Keep the server's own wrapper so it can still use sendfile().
            try:
                return self._hook_file(body, result)
            except Exception as exc:
                self._error(exc)
        return body

    def _hook_file(self, body, result):
        body.nbytes = _file_length(body.headers, result)
        inner_close = getattr(result, "close", None)

        def close():
            if body.done:
                return
            body.done = True
            try:
                if inner_close is not None:
                    inner_close()
            finally:
                self._finish(body)

        result.close = close  # an instance attribute: the server calls it as respiter.close()
        return result

    def _error(self, exc: BaseException) -> None:
        self.errors += 1
        self.last_error = repr(exc)

    def _finish(self, body) -> None:
        """Build and queue the record. Never raises."""
        try:
            self._measure(body)
        except Exception as exc:
            self._error(exc)

    def _measure(self, body) -> None:
        end = _perf()
        env = body.environ
        if self._type is not None:
            ttype = self._type
        else:
            ttype = self._traffic_type(env)
        status = _STATUS.get(body.status)
        if status is None:
            status = _status_code(body.status)
        if body.failed and body.nbytes == 0:
            status = 500  # what gunicorn and wsgiref send when the app fails before any body
        flags = F_TLS if env.get("wsgi.url_scheme") == "https" else 0
        remote = env.get("REMOTE_ADDR") or ""
        conn = None
        sock = env.get("gunicorn.socket")
        if sock is not None:
            conn = self._connection(sock, remote, env.get("REMOTE_PORT"))
        elif _uwsgi is not None:
            sock = socket.socket(fileno=_uwsgi.connection_fd())
            try:
                # uWSGI's HTTP/1.1 socket sets REMOTE_ADDR to 0.0.0.0 on
                # keep-alive requests: the socket itself knows its peer.
                peer = sock.getpeername()
                conn = self._connection(sock, peer[0], peer[1])
            except (OSError, IndexError):
                conn = None  # a Unix socket (uwsgi protocol behind a proxy)
            finally:
                sock.detach()  # the fd is uWSGI's: never close it
        if conn is None:
            client = self._addresses.get(remote)
            if client is None:
                client = self._cached_address(remote)
            port = env.get("SERVER_PORT", "")
            port = int(port) if port.isdigit() else 0
            record = _RECORD(client, self._server, ttype, port & 0xFFFF, status, flags,
                             _HTTP_VERSIONS.get(env.get("SERVER_PROTOCOL"), 0), 0, 1,
                             min(int((end - body.start) * 1e6), _U32), body.nbytes,
                             0, 0, 0, 0, 0, 0, 0, 0, 0)
        else:
            (cflags, client, server, port, wire_bytes, retrans_bytes, segs, retrans,
             rtt, rttvar, min_rtt, rate) = conn
            record = _RECORD(client, server, ttype, port, status, flags | cflags,
                             _HTTP_VERSIONS.get(env.get("SERVER_PROTOCOL"), 0), 0, 1,
                             min(int((end - body.start) * 1e6), _U32), body.nbytes,
                             wire_bytes, retrans_bytes, segs, retrans, rtt, rttvar,
                             min_rtt, 0, rate)
        self._add(record)
        self.records += 1

    def _connection(self, sock, remote, rport):
        """TCP_INFO deltas for this request's connection, or None if unreadable."""
        try:
            fd = sock.fileno()
            info = sock.getsockopt(_IPPROTO_TCP, _TCP_INFO, _INFO_LEN)
        except (OSError, AttributeError, ValueError):
            return None  # a Unix socket, a closed socket, an object without getsockopt
        n = len(info)
        if n >= 216:
            b7, rtt, rttvar, retrans, notsent, min_rtt, segs, rate, sent, rbytes = _FULL.unpack_from(info)
            # Bytes handed to TCP: sent (retransmissions included) plus still
            # queued. It only grows, so deltas stay exact, and a connection's
            # last response is counted whole though part of it is unsent.
            sent += notsent
            flags = _ALL | (F_APP if b7 & 1 else 0)
        elif n >= 168:
            b7, rtt, rttvar, retrans, min_rtt, segs, rate = _RATE.unpack_from(info)
            sent = rbytes = 0
            flags = F_TCPINFO | F_SEGS | F_RATE | (F_APP if b7 & 1 else 0)
        elif n >= 160:
            b7, rtt, rttvar, retrans, min_rtt, segs = _SEGS.unpack_from(info)
            rate = sent = rbytes = 0
            flags = F_TCPINFO | F_SEGS
        elif n >= 104:
            b7, rtt, rttvar, retrans = _BASE.unpack_from(info)
            min_rtt = segs = rate = sent = rbytes = 0
            flags = F_TCPINFO
        else:
            return None
        with self._lock:
            state = self._conns.get(fd)
            # A reused fd shows as another peer; counters that went back
            # mean another connection even from the same address and port.
            if (state is None or state[0] != remote or state[1] != rport or retrans < state[2]
                    or segs < state[3] or sent < state[4] or rbytes < state[5]):
                state = self._new_connection(fd, sock, remote, rport)
                flags |= F_NEW
            d_retrans, d_segs = retrans - state[2], segs - state[3]
            d_sent, d_rbytes = sent - state[4], rbytes - state[5]
            state[2], state[3], state[4], state[5] = retrans, segs, sent, rbytes
        return (flags, state[6], state[7], state[8], d_sent, d_rbytes, d_segs, d_retrans,
                rtt, rttvar, min_rtt, rate)

    def _new_connection(self, fd, sock, remote, rport):
        try:
            local = sock.getsockname()
            server, port = _pack_address(local[0]), local[1] & 0xFFFF
        except (OSError, AttributeError, TypeError, IndexError):
            server, port = self._server, 0
        state = [remote, rport, 0, 0, 0, 0, _pack_address(remote), server, port]
        self._conns[fd] = state
        return state

    def _traffic_type(self, env) -> bytes:
        try:
            name = self._type_of(env)
        except Exception as exc:  # the user's classifier failed: count it, use the default type
            self._error(exc)
            return _DEFAULT_TYPE
        packed = self._types.get(name)
        if packed is None:
            if len(self._types) >= _CACHE_MAX:
                self._types.clear()
            packed = self._types[name] = wire.pack_type(str(name) if name is not None else "")
        return packed

    def _cached_address(self, remote: str) -> bytes:
        if len(self._addresses) >= _CACHE_MAX:
            self._addresses.clear()
        packed = self._addresses[remote] = _pack_address(remote)
        return packed


def _file_length(headers, wrapper) -> int:
    """Body length of a file the server may send with sendfile() (we never see the bytes)."""
    for name, value in headers or ():
        if name.lower() == "content-length" and value.strip().isdigit():
            return int(value)
    filelike = getattr(wrapper, "filelike", None)
    try:
        return max(os.fstat(filelike.fileno()).st_size - filelike.tell(), 0)
    except (AttributeError, OSError, ValueError):
        return 0


class _Body:
    """The response iterable handed to the server: counts body bytes, measures on close()."""

    __slots__ = ("mw", "environ", "start", "server_start_response", "server_write", "status",
                 "headers", "nbytes", "result", "it", "done", "failed")

    def __init__(self, mw, environ, start_response):
        self.mw = mw
        self.environ = environ
        self.start = _perf()
        self.server_start_response = start_response
        self.server_write = None
        self.status = None
        self.headers = None
        self.nbytes = 0
        self.result = None
        self.it = None
        self.done = False
        self.failed = False

    def start_response(self, status, headers, exc_info=None):
        self.status = status
        self.headers = headers
        if exc_info is None:
            self.server_write = self.server_start_response(status, headers)
        else:
            self.server_write = self.server_start_response(status, headers, exc_info)
        return self.write

    def write(self, data):
        # The legacy write() callable (PEP 3333): its bytes are body too.
        self.nbytes += len(data)
        return self.server_write(data)

    def __iter__(self):
        result = self.result
        if type(result) is list or type(result) is tuple:
            # The app has produced the whole body already: count it here and
            # let the server walk the list at C speed (saves ~1 µs a request).
            try:
                self.nbytes += sum(map(len, result))
                return iter(result)
            except TypeError:
                pass  # not a list of bytes: let the server complain, chunk by chunk
        self.it = iter(result)
        return self

    def __next__(self):
        try:
            chunk = next(self.it)
        except StopIteration:
            raise
        except BaseException:
            self.failed = True
            raise
        self.nbytes += len(chunk)
        return chunk

    def close(self):
        if self.done:
            return
        self.done = True
        try:
            close = getattr(self.result, "close", None)
            if close is not None:
                close()
        finally:
            try:
                self.mw._measure(self)
            except Exception as exc:  # a bug in measuring never reaches the server
                self.mw._error(exc)
