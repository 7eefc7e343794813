"""Writes wire-v1.json, the golden vectors of the wire format.

The JSON is checked in. Tests compare both encoders (Python, and the C
nginx module) against the committed file, and run every vector through
both receivers (ipr_agent.wire.decode and the collector's Worker.handle),
so regenerating it could hide a change of the format: a vector already
there must come out byte for byte the same; only new ones may be added.

    python tests/vectors/make_vectors.py > tests/vectors/wire-v1.json

Sections: ``valid`` (an encoder must produce these bytes from the header
and records; a receiver accepts them), ``accepted`` (bytes no conforming
encoder sends but a receiver must accept, reading ``records``), ``invalid``
(a receiver rejects them with ``reason``) and ``streams`` (sequences of one
stream and what the replay window and the loss count make of them). How to
check a vector is in the file's ``receiver`` entry.
"""
import hashlib
import hmac
import json
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ipr_agent import wire  # noqa: E402

ALL = (wire.F_TCPINFO | wire.F_TCPINFO_SEGS | wire.F_BYTES_SENT | wire.F_DELIVERY_RATE)

VALID = [
    dict(
        name="one-ipv4-record",
        description="One IPv4 response over TLS, first on its connection, all TCP_INFO fields.",
        secret="000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        header=dict(key_id=1, sender_id=42, instance_id=0x0123456789ABCDEF, sequence=1,
                    time_ms=1767225600000, tag_len=16),
        records=[wire.Record(client="198.51.100.7", server="192.0.2.10", traffic_type="static",
                             server_port=443, status=200, flags=ALL | wire.F_NEW_CONNECTION | wire.F_TLS,
                             http_version=11, requests=1, duration_us=1834, response_bytes=5120,
                             wire_bytes=5517, retrans_bytes=0, data_segs=5, retrans_segs=0,
                             rtt_us=23150, rttvar_us=4021, min_rtt_us=21877, delivery_rate=2210000)],
    ),
    dict(
        name="three-ipv6-records-long-tag",
        description="Three records (IPv6, mapped IPv4), a 32-byte tag, key id 7.",
        secret="5c1d9e8f7a6b5c4d3e2f10ffeeddccbbaa99887766554433",
        header=dict(key_id=7, sender_id=3, instance_id=0xFEDCBA9876543210, sequence=987654321,
                    time_ms=1767225659999, tag_len=32),
        records=[
            wire.Record(client="2001:db8:1::25", server="2001:db8:ffff::1", traffic_type="video",
                        server_port=443, status=206, flags=ALL | wire.F_APP_LIMITED | wire.F_TLS,
                        http_version=20, requests=1, duration_us=912004, response_bytes=8388608,
                        wire_bytes=8455912, retrans_bytes=43440, data_segs=5840, retrans_segs=30,
                        rtt_us=48210, rttvar_us=9102, min_rtt_us=41007, delivery_rate=11842003),
            wire.Record(client="203.0.113.200", server="2001:db8:ffff::1", traffic_type="api",
                        server_port=8080, status=404, flags=ALL, http_version=11, requests=1,
                        duration_us=310, response_bytes=153, wire_bytes=380, retrans_bytes=0,
                        data_segs=1, retrans_segs=0, rtt_us=180, rttvar_us=90, min_rtt_us=75,
                        delivery_rate=0),
            wire.Record(client="2001:db8:1::25", server="2001:db8:ffff::1", traffic_type="video",
                        server_port=443, status=503, flags=wire.F_TCPINFO, http_version=20,
                        requests=2, duration_us=50, response_bytes=0, rtt_us=48000, rttvar_us=9000,
                        retrans_segs=1),
        ],
    ),
    dict(
        name="bytes-only-and-limits",
        description="Every field at its maximum, every defined flag set (fields whose flag is clear "
                    "are sent as 0, see bytes-only), an empty traffic type; a 20-byte tag.",
        secret="ffffffffffffffffffffffffffffffff",
        header=dict(key_id=4294967295, sender_id=4294967295, instance_id=2**64 - 1,
                    sequence=2**64 - 1, time_ms=253402300799999, tag_len=20),
        records=[wire.Record(client="0.0.0.0", server="::", traffic_type="", server_port=65535,
                             status=65535, flags=ALL | wire.F_APP_LIMITED | wire.F_NEW_CONNECTION | wire.F_TLS,
                             http_version=255, requests=2**32 - 1,
                             duration_us=2**32 - 1, response_bytes=2**64 - 1, wire_bytes=2**64 - 1,
                             retrans_bytes=2**64 - 1, data_segs=2**32 - 1, retrans_segs=2**32 - 1,
                             rtt_us=2**32 - 1, rttvar_us=2**32 - 1, min_rtt_us=2**32 - 1,
                             delivery_rate=2**64 - 1)],
    ),
    dict(
        name="bytes-only",
        description="A record with no TCP_INFO (the agent had no socket): flags 0, so every "
                    "measured field is 0; status unknown; sender id and sequence 0.",
        secret="000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        header=dict(key_id=0, sender_id=0, instance_id=1, sequence=0, time_ms=1767225600000, tag_len=16),
        records=[wire.Record(client="2001:db8::7", server="2001:db8::1", traffic_type="default",
                             server_port=8000, status=0, flags=0, http_version=0, requests=1,
                             duration_us=0, response_bytes=0)],
    ),
    dict(
        name="type-of-16-bytes",
        description="A traffic type of exactly 16 characters: no NUL follows it.",
        secret="000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        header=dict(key_id=1, sender_id=42, instance_id=0x0123456789ABCDEF, sequence=2,
                    time_ms=1767225600001, tag_len=16),
        records=[wire.Record(client="198.51.100.7", server="192.0.2.10", traffic_type="abcdefghijklmnop",
                             server_port=80, status=301, flags=wire.F_NEW_CONNECTION, http_version=10,
                             requests=1, duration_us=12, response_bytes=178)],
    ),
]


def build(v):
    header = wire.Header(**v["header"])
    data = wire.encode(header, [r.pack() for r in v["records"]], bytes.fromhex(v["secret"]))
    return {"name": v["name"], "description": v["description"], "secret": v["secret"],
            "header": v["header"], "records": [r.as_dict() for r in v["records"]],
            "datagram": data.hex()}


def sign(body: bytes, secret: str, tag_len: int = 16) -> bytes:
    return body + hmac.digest(bytes.fromhex(secret), body, hashlib.sha256)[:tag_len]


def with_header(base: bytes, secret: str, **changes) -> bytes:
    """The first vector with header bytes changed and signed again, so that
    only the change is wrong."""
    data = bytearray(base[:-16])
    for offset, value in changes.values():
        data[offset:offset + len(value)] = value
    return sign(bytes(data), secret)


def with_record(base: bytes, secret: str, changes: dict) -> bytes:
    """The first vector with bytes of its record (offset: bytes) changed, signed again."""
    data = bytearray(base[:-16])
    for offset, value in changes.items():
        data[wire.HEADER_SIZE + offset:wire.HEADER_SIZE + offset + len(value)] = value
    return sign(bytes(data), secret)


def accepted(name, description, data, secret, records, **extra):
    return {"name": name, "description": description, "secret": secret, **extra,
            "records": [r.as_dict() for r in records], "datagram": data.hex()}


def bad(name, reason, description, data, secret, **extra):
    return {"name": name, "reason": reason, "description": description, "secret": secret, **extra,
            "datagram": data.hex()}


def main():
    valid = [build(v) for v in VALID]
    first = VALID[0]
    secret = first["secret"]
    base = bytes.fromhex(valid[0]["datagram"])
    rec = first["records"][0]
    t0 = first["header"]["time_ms"]
    flipped = bytearray(base)
    flipped[-1] ^= 0x01
    version2 = bytearray(base)
    version2[3] = 2
    zero_count = bytearray(base)
    zero_count[8:10] = b"\0\0"

    def record(**changes):
        return wire.Record(**{**rec.as_dict(), **changes})

    # A record as no conforming sender sends it: measurements and reserved
    # bytes where the flags say there are none, and undefined flag bits.
    junk = wire.Record(client="198.51.100.7", server="192.0.2.10", traffic_type="static",
                       server_port=443, status=200, flags=0x8000 | wire.F_NEW_CONNECTION, http_version=11,
                       requests=1, duration_us=1834, response_bytes=5120, wire_bytes=5517, retrans_bytes=9,
                       data_segs=5, retrans_segs=1, rtt_us=23150, rttvar_us=4021, min_rtt_us=21877,
                       delivery_rate=2210000).pack()
    junk = junk[:55] + b"\x7f" + junk[56:108] + b"\xff\xff\xff\xff" + junk[112:]
    longer = bytearray(base[:-16])
    longer[6:8] = struct.pack(">H", 128)
    longer += b"\xaa" * 8
    accepted_ = [
        accepted("flag-clear-fields-ignored",
                 "Measurements whose flag is clear, non-zero reserved bytes and an undefined flag bit "
                 "(0x8000) in a record: accepted; those fields are read as 0, the flags as sent.",
                 sign(base[:12 + 32] + junk, secret), secret,
                 [record(flags=0x8000 | wire.F_NEW_CONNECTION, wire_bytes=0, retrans_bytes=0, data_segs=0,
                         retrans_segs=0, rtt_us=0, rttvar_us=0, min_rtt_us=0, delivery_rate=0)]),
        accepted("type-bytes-after-nul", "Bytes after the traffic type's first NUL are ignored.",
                 with_record(base, secret, {32: b"api\0junk\xff\0\0\0\0\0\0\0"}), secret,
                 [record(traffic_type="api")]),
        accepted("type-not-printable-ascii",
                 "A traffic type with bytes outside 0x21..0x7e (UTF-8, a space, a tab): each such byte "
                 "is read as \"?\".",
                 with_record(base, secret, {32: "caf\u00e9 v\t".encode() + b"\0" * 8}), secret,
                 [record(traffic_type="caf???v?")]),
        accepted("longer-records",
                 "record_size 128 (a later version's longer records): the first 120 bytes of each "
                 "record are read, the rest skipped.",
                 sign(bytes(longer), secret), secret, [rec]),
        accepted("age-equals-max-age", "Sent exactly max_age (60 s) before the receiver's clock.",
                 base, secret, [rec], now_ms=t0 + 60_000),
        accepted("ahead-by-max-future", "Sent exactly max_future (5 s) ahead of the receiver's clock.",
                 base, secret, [rec], now_ms=t0 - 5_000),
        accepted("sender-allowed", "The key lists the sender id among others.",
                 base, secret, [rec], sender_ids=[7, 42, 4294967295]),
    ]
    invalid = [
        bad("forged-tag", "bad_tag", "The first vector with the last tag bit flipped.", flipped, secret),
        bad("cut-short", "truncated", "The first vector less its last byte.", base[:-1], secret),
        bad("one-byte-more", "truncated", "The first vector and one more byte.", base + b"\0", secret),
        bad("not-ipr", "garbage", "A DNS query.",
            bytes.fromhex("abcd01000001000000000000076578616d706c6503636f6d0000010001"), secret),
        bad("empty", "garbage", "A datagram of 0 bytes.", b"", secret),
        bad("magic-only", "garbage", "The 3 bytes IPR: shorter than 4 bytes.", b"IPR", secret),
        bad("magic-and-version", "truncated", "The 4 bytes IPR 01.", b"IPR\x01", secret),
        bad("version-2", "bad_version", "The first vector claiming version 2.", version2, secret),
        bad("header-only", "truncated", "The first vector's 44-byte header and a 15-byte tag: "
            "shorter than 60 bytes.", base[:59], secret),
        bad("no-records", "malformed", "The first vector with a record count of 0 (so its length "
            "does not match either: malformed is checked first).", zero_count, secret),
        bad("tag-len-15", "malformed", "tag_len 15.", with_header(base, secret, t=(4, b"\x0f"))[:-1], secret),
        bad("tag-len-33", "malformed", "tag_len 33.", with_header(base, secret, t=(4, b"\x21")), secret),
        bad("record-size-119", "malformed", "record_size 119.",
            with_header(base, secret, r=(6, b"\x00\x77")), secret),
        bad("header-flags-set", "malformed", "Header flags 0x01 (reserved, must be 0).",
            with_header(base, secret, f=(5, b"\x01")), secret),
        bad("header-reserved-set", "malformed", "Header bytes 10..11 (reserved) 0x0001.",
            with_header(base, secret, r=(10, b"\x00\x01")), secret),
        bad("sender-not-allowed", "sender_not_allowed",
            "A correctly signed datagram whose sender id (42) its key does not list.",
            base, secret, sender_ids=[101]),
        bad("one-ms-too-old", "stale", "Sent max_age (60 s) and 1 ms before the receiver's clock.",
            base, secret, now_ms=t0 + 60_001),
        bad("one-ms-too-far-ahead", "future", "Sent max_future (5 s) and 1 ms ahead of the receiver's clock.",
            base, secret, now_ms=t0 - 5_001),
    ]
    W = 64
    streams = [
        {"name": "in-order", "window": W, "sequences": [1, 2, 3],
         "verdicts": ["accepted"] * 3, "lost": 0, "resets": 0},
        {"name": "duplicate", "window": W, "sequences": [5, 5], "verdicts": ["accepted", "replayed"],
         "lost": 0, "resets": 0},
        {"name": "gap-then-late-arrival", "window": W, "sequences": [1, 4, 2],
         "verdicts": ["accepted"] * 3, "lost": 1, "resets": 0},
        {"name": "duplicate-at-the-far-edge", "window": W, "sequences": [1, W, 1],
         "verdicts": ["accepted", "accepted", "replayed"], "lost": W - 2, "resets": 0},
        {"name": "window-edges-below-the-first", "window": W, "sequences": [100, 100 - (W - 1), 100 - W],
         "verdicts": ["accepted", "accepted", "replayed"], "lost": 0, "resets": 0},
        {"name": "jump-of-exactly-the-window", "window": W, "sequences": [1, 1 + W, 2, 1],
         "verdicts": ["accepted", "accepted", "accepted", "replayed"], "lost": W - 2, "resets": 0},
        {"name": "jump-past-the-window", "window": W, "sequences": [1, 2 + W, 1 + W, 2, 1 + 10**9],
         "verdicts": ["accepted", "accepted", "accepted", "replayed", "accepted"], "lost": 0, "resets": 2},
    ]
    doc = {
        "format": "ipr wire format version 1",
        "receiver": "Check each vector with one key: key_id from the datagram's header (1 if it has "
                    "none), the vector's secret, the sender ids in sender_ids (default: the header's "
                    "sender_id), any source address; a clock reading now_ms (default: the header's "
                    "time_ms); max_age 60 s, max_future 5 s, min_tag_len 16, max_datagram 65507. "
                    "A stream's sequences arrive in order, all within the clock's limits; lost is "
                    "the loss count they leave (negative: late arrivals for gaps booked earlier), "
                    "resets the jumps past the window.",
        "valid": valid, "accepted": accepted_, "invalid": invalid, "streams": streams,
    }
    json.dump(doc, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
