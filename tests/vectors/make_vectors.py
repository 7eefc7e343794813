"""Writes wire-v1.json, the golden vectors of the wire format.

Run once when the format was specified; the JSON is frozen and checked in.
Tests compare both encoders (Python, and the C nginx module) against the
committed file, so regenerating it would hide a change of the format:
only do so for a new format version.

    python tests/vectors/make_vectors.py > tests/vectors/wire-v1.json
"""
import json
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
        description="A record with no TCP_INFO (the agent had no socket), an empty traffic type, "
                    "and every counter at its maximum; a 20-byte tag.",
        secret="ffffffffffffffffffffffffffffffff",
        header=dict(key_id=4294967295, sender_id=4294967295, instance_id=2**64 - 1,
                    sequence=2**64 - 1, time_ms=253402300799999, tag_len=20),
        records=[wire.Record(client="0.0.0.0", server="::", traffic_type="", server_port=65535,
                             status=65535, flags=0, http_version=255, requests=2**32 - 1,
                             duration_us=2**32 - 1, response_bytes=2**64 - 1, wire_bytes=2**64 - 1,
                             retrans_bytes=2**64 - 1, data_segs=2**32 - 1, retrans_segs=2**32 - 1,
                             rtt_us=2**32 - 1, rttvar_us=2**32 - 1, min_rtt_us=2**32 - 1,
                             delivery_rate=2**64 - 1)],
    ),
]


def build(v):
    header = wire.Header(**v["header"])
    data = wire.encode(header, [r.pack() for r in v["records"]], bytes.fromhex(v["secret"]))
    return {"name": v["name"], "description": v["description"], "secret": v["secret"],
            "header": v["header"], "records": [r.as_dict() for r in v["records"]],
            "datagram": data.hex()}


def main():
    valid = [build(v) for v in VALID]
    base = bytes.fromhex(valid[0]["datagram"])
    flipped = bytearray(base)
    flipped[-1] ^= 0x01
    version2 = bytearray(base)
    version2[3] = 2
    zero_count = bytearray(base)
    zero_count[8:10] = b"\0\0"
    invalid = [
        {"name": "forged-tag", "reason": "bad_tag", "secret": VALID[0]["secret"],
         "description": "The first vector with the last tag bit flipped.", "datagram": flipped.hex()},
        {"name": "cut-short", "reason": "truncated", "secret": VALID[0]["secret"],
         "description": "The first vector less its last byte.", "datagram": base[:-1].hex()},
        {"name": "not-ipr", "reason": "garbage", "secret": VALID[0]["secret"],
         "description": "A DNS query.", "datagram": "abcd01000001000000000000076578616d706c6503636f6d0000010001"},
        {"name": "version-2", "reason": "bad_version", "secret": VALID[0]["secret"],
         "description": "The first vector claiming version 2.", "datagram": version2.hex()},
        {"name": "no-records", "reason": "malformed", "secret": VALID[0]["secret"],
         "description": "The first vector with a record count of 0.", "datagram": zero_count.hex()},
    ]
    json.dump({"format": "ipr wire format version 1", "valid": valid, "invalid": invalid},
              sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
