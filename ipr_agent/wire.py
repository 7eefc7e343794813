"""The ipr wire format, version 1: what agents send and the collector verifies.

docs/wire-format.md is the specification; this module is its reference
implementation and is kept free of anything but the standard library so the
WSGI agent can import it cheaply.

A datagram is a 44-byte header, ``count`` fixed-size records and an
HMAC-SHA256 tag (truncated to ``tag_len`` bytes) over everything before it.
All integers are big-endian (network byte order).
"""
from __future__ import annotations

import hashlib
import hmac
import re
import socket
import struct
from dataclasses import dataclass, field, fields

MAGIC = b"IPR"
VERSION = 1

# magic(3) version(1) tag_len(1) flags(1) record_size(2) count(2) reserved(2)
# key_id(4) sender_id(4) instance_id(8) sequence(8) time_ms(8)
HEADER = struct.Struct(">3sBBBHHHIIQQQ")
HEADER_SIZE = HEADER.size  # 44
INSTANCE_OFFSET = 20  # the collector steers datagrams by the instance id's low word

# client(16) server(16) type(16) server_port(2) status(2) flags(2)
# http_version(1) reserved(1) requests(4) duration_us(4) response_bytes(8)
# wire_bytes(8) retrans_bytes(8) data_segs(4) retrans_segs(4) rtt_us(4)
# rttvar_us(4) min_rtt_us(4) reserved(4) delivery_rate(8)
RECORD = struct.Struct(">16s16s16sHHHBBIIQQQIIIIIIQ")
RECORD_SIZE = RECORD.size  # 120

TAG_MIN, TAG_MAX, TAG_DEFAULT = 16, 32, 16
TYPE_SIZE = 16
MAX_DATAGRAM = 65507  # largest UDP payload over IPv4
MAX_RECORDS = (MAX_DATAGRAM - HEADER_SIZE - TAG_MIN) // RECORD_SIZE
# Fits an Ethernet MTU over IPv4 and IPv6 with room for a tunnel header:
# the size agents aim for unless told otherwise.
DEFAULT_DATAGRAM = 1400

# Record flags: which measurements the record carries.
F_TCPINFO = 0x0001        # rtt_us, rttvar_us, retrans_segs are valid
F_TCPINFO_SEGS = 0x0002   # data_segs, min_rtt_us are valid (Linux >= 4.6)
F_BYTES_SENT = 0x0004     # wire_bytes, retrans_bytes are valid (Linux >= 4.19)
F_DELIVERY_RATE = 0x0008  # delivery_rate is valid (Linux >= 4.9)
F_APP_LIMITED = 0x0010    # the delivery rate sample was application-limited
F_NEW_CONNECTION = 0x0020  # first request on its TCP connection
F_TLS = 0x0040            # the connection is TLS

U16, U32, U64 = 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF
_V4_MAPPED = b"\0" * 10 + b"\xff\xff"

# The receiver's defaults (docs/wire-format.md, "What the receiver checks").
MAX_AGE_MS, MAX_FUTURE_MS = 60_000, 5_000

# What a sender puts in a record's traffic_type: 0..16 bytes of printable
# ASCII without spaces, then NULs up to 16 bytes. Anything else a receiver
# reads through clean_type.
TYPE_OK = re.compile(rb"[\x21-\x7e]*\x00*")
_TYPE_NAME = re.compile(rb"[^\x21-\x7e]")


def _clamp(value: int, top: int) -> int:
    return 0 if value < 0 else top if value > top else value


class WireError(ValueError):
    """A datagram that does not parse; ``reason`` is the reject counter's name."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def pack_address(text: str) -> bytes:
    """IPv4 or IPv6 text to the 16-byte wire form (IPv4 as ::ffff:a.b.c.d)."""
    if ":" in text:
        return socket.inet_pton(socket.AF_INET6, text.split("%", 1)[0])
    return _V4_MAPPED + socket.inet_pton(socket.AF_INET, text)


def unpack_address(raw: bytes) -> str:
    if raw[:12] == _V4_MAPPED:
        return socket.inet_ntop(socket.AF_INET, raw[12:])
    return socket.inet_ntop(socket.AF_INET6, raw)


def clean_type(raw: bytes | memoryview) -> bytes:
    """A received 16-byte traffic_type as the receiver counts it: the bytes
    before the first NUL (all 16 when there is none), each byte outside
    printable ASCII (0x21..0x7e) replaced by "?", NUL-padded again. Bytes
    after the first NUL are ignored."""
    name = bytes(raw).split(b"\0", 1)[0]
    return _TYPE_NAME.sub(b"?", name).ljust(TYPE_SIZE, b"\0")


def pack_type(name: str) -> bytes:
    """Traffic type to its 16-byte NUL-padded field; longer names are cut,
    and a character outside printable ASCII (a NUL included) is sent as "?"."""
    return _TYPE_NAME.sub(b"?", name.encode("ascii", "replace")[:TYPE_SIZE]).ljust(TYPE_SIZE, b"\0")


def unpack_type(raw: bytes) -> str:
    return clean_type(raw).rstrip(b"\0").decode("ascii")


@dataclass(slots=True)
class Record:
    """One response (or, with ``requests`` > 1, several) as measured by an agent."""

    client: str
    server: str
    traffic_type: str = ""
    server_port: int = 0
    status: int = 0
    flags: int = 0
    http_version: int = 0  # 10, 11, 20, 30; 0 if unknown
    requests: int = 1
    duration_us: int = 0
    response_bytes: int = 0
    wire_bytes: int = 0
    retrans_bytes: int = 0
    data_segs: int = 0
    retrans_segs: int = 0
    rtt_us: int = 0
    rttvar_us: int = 0
    min_rtt_us: int = 0
    delivery_rate: int = 0

    def pack(self) -> bytes:
        """Every field is unsigned: a negative value is sent as 0, one too
        large for its field as the field's maximum (it never wraps)."""
        return RECORD.pack(
            pack_address(self.client), pack_address(self.server),
            pack_type(self.traffic_type),
            _clamp(self.server_port, U16), _clamp(self.status, U16), _clamp(self.flags, U16),
            _clamp(self.http_version, 255), 0,
            _clamp(self.requests, U32), _clamp(self.duration_us, U32),
            _clamp(self.response_bytes, U64), _clamp(self.wire_bytes, U64),
            _clamp(self.retrans_bytes, U64),
            _clamp(self.data_segs, U32), _clamp(self.retrans_segs, U32),
            _clamp(self.rtt_us, U32), _clamp(self.rttvar_us, U32),
            _clamp(self.min_rtt_us, U32), 0, _clamp(self.delivery_rate, U64),
        )

    @classmethod
    def unpack(cls, raw: bytes | memoryview, offset: int = 0) -> Record:
        (client, server, ttype, port, status, flags, httpv, _r1, requests,
         duration, resp, wire, rbytes, segs, rsegs, rtt, rttvar, minrtt,
         _r2, rate) = RECORD.unpack_from(raw, offset)
        return cls(unpack_address(client), unpack_address(server),
                   unpack_type(ttype), port, status, flags, httpv, requests,
                   duration, resp, wire, rbytes, segs, rsegs, rtt, rttvar,
                   minrtt, rate)

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(slots=True)
class Header:
    key_id: int
    sender_id: int
    instance_id: int
    sequence: int
    time_ms: int
    tag_len: int = TAG_DEFAULT
    record_size: int = RECORD_SIZE
    count: int = 0


@dataclass(slots=True)
class Datagram:
    header: Header
    records: list[Record] = field(default_factory=list)


def compute_tag(secret: bytes, signed: bytes | memoryview, tag_len: int) -> bytes:
    return hmac.digest(secret, signed, hashlib.sha256)[:tag_len]


def encode(header: Header, records: list[bytes], secret: bytes) -> bytes:
    """Build a signed datagram from packed records (see ``Record.pack``)."""
    if not TAG_MIN <= header.tag_len <= TAG_MAX:
        raise ValueError(f"tag length {header.tag_len} is outside {TAG_MIN}..{TAG_MAX}")
    if not 1 <= len(records) <= MAX_RECORDS:
        raise ValueError(f"a datagram carries 1..{MAX_RECORDS} records, not {len(records)}")
    head = HEADER.pack(MAGIC, VERSION, header.tag_len, 0, RECORD_SIZE,
                       len(records), 0, header.key_id, header.sender_id,
                       header.instance_id, header.sequence, header.time_ms)
    body = head + b"".join(records)
    return body + compute_tag(secret, body, header.tag_len)


def parse_header(data: bytes | memoryview, max_datagram: int = MAX_DATAGRAM) -> Header:
    """Check the framing of a datagram and return its header.

    Checks 1 to 6 of docs/wire-format.md, those that need no key. Raises
    WireError with the reject reason the collector counts.
    """
    n = len(data)
    if n > max_datagram:
        raise WireError("oversized", f"{n} bytes is longer than {max_datagram}")
    if n < 4 or bytes(data[:3]) != MAGIC:
        raise WireError("garbage", f"not an ipr datagram: {n} bytes, bytes 0..2 are not IPR")
    if data[3] != VERSION:
        raise WireError("bad_version", f"unsupported version {data[3]} at byte 3")
    if n < HEADER_SIZE + TAG_MIN:
        raise WireError("truncated", f"{n} bytes is shorter than a header and a tag")
    (_m, _v, tag_len, flags, rsize, count, reserved, key_id, sender_id,
     instance_id, seq, time_ms) = HEADER.unpack_from(data)
    if not TAG_MIN <= tag_len <= TAG_MAX or flags or reserved or rsize < RECORD_SIZE or count == 0:
        raise WireError("malformed", f"bad header: tag_len {tag_len} (byte 4), flags {flags} (byte 5), "
                                     f"record_size {rsize} (bytes 6..7), count {count} (bytes 8..9), "
                                     f"reserved {reserved} (bytes 10..11)")
    expected = HEADER_SIZE + count * rsize + tag_len
    if n != expected:
        raise WireError("truncated", f"{n} bytes, header announces {expected}")
    return Header(key_id, sender_id, instance_id, seq, time_ms, tag_len, rsize, count)


# Which fields each record flag makes valid; with the flag clear, the
# receiver reads them as 0 whatever was sent.
FLAG_FIELDS = (
    (F_TCPINFO, ("rtt_us", "rttvar_us", "retrans_segs")),
    (F_TCPINFO_SEGS, ("data_segs", "min_rtt_us")),
    (F_BYTES_SENT, ("wire_bytes", "retrans_bytes")),
    (F_DELIVERY_RATE, ("delivery_rate",)),
)


def decode(data: bytes, secret: bytes | None = None, *, sender_ids=None, now_ms: int | None = None,
           max_age_ms: int = MAX_AGE_MS, max_future_ms: int = MAX_FUTURE_MS,
           min_tag_len: int = TAG_MIN, max_datagram: int = MAX_DATAGRAM) -> Datagram:
    """Parse and verify a datagram as the collector does, in the order of
    docs/wire-format.md, and return it as the collector counts it.

    The tag is checked when ``secret`` is given, the sender id against
    ``sender_ids`` when given, the time when ``now_ms`` is given. The
    checks of the key file (unknown_key, disabled_key, source_not_allowed)
    and of the stream (replayed) need the collector's state and are not
    made here. For tools and tests; the collector's hot path
    (collector/_receive.c, and its twin collector/receive.py) makes the
    same checks in the same order without building objects.
    """
    header = parse_header(data, max_datagram)
    if header.tag_len < min_tag_len:
        raise WireError("short_tag", f"tag of {header.tag_len} bytes, at least {min_tag_len} required")
    if secret is not None:
        cut = len(data) - header.tag_len
        if not hmac.compare_digest(compute_tag(secret, data[:cut], header.tag_len), data[cut:]):
            raise WireError("bad_tag", "tag does not match")
    if sender_ids is not None and header.sender_id not in sender_ids:
        raise WireError("sender_not_allowed", f"sender id {header.sender_id} is not one of the key's")
    if now_ms is not None:
        if now_ms - header.time_ms > max_age_ms:
            raise WireError("stale", f"sent {now_ms - header.time_ms} ms ago, more than {max_age_ms}")
        if header.time_ms - now_ms > max_future_ms:
            raise WireError("future", f"sent {header.time_ms - now_ms} ms ahead, more than {max_future_ms}")
    records = []
    for i in range(header.count):
        rec = Record.unpack(data, HEADER_SIZE + i * header.record_size)
        for flag, names in FLAG_FIELDS:
            if not rec.flags & flag:
                for name in names:
                    setattr(rec, name, 0)
        records.append(rec)
    return Datagram(header, records)
