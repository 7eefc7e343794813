"""Short fuzz runs of the collector's two receive loops: mutated datagrams
in, the compiled Receiver (collector/_receive.c) and the pure-Python one
(collector/receive.py) must give each the same verdict and end in the same
counters, kept records and replay state.

Each input is tried as it is and, when its framing parses, once more with
the key's id and a sender id of the key, stamped with the clock and signed,
so the paths past the tag (sender, clock, replay window, records) are
fuzzed too. One pair of receivers lives through the whole run, so the
streams the inputs build up are compared as well.

Derandomized: the same inputs on every run."""
import ipaddress
import struct
import time

from hypothesis import HealthCheck, given, settings

import harness
from mutations import mutated
from collector import config, receive
from ipr_agent import wire

SECRET = bytes(range(32))
SEEDS = harness.wire_seeds()


def make_config():
    key = config.Key(1, SECRET, True, (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("2001:db8::/33")), "",
                     frozenset({1, 2}))
    other = config.Key(2, SECRET[::-1], True, (ipaddress.ip_network("192.0.2.0/28"),), "", frozenset({2}))
    return config.Config(keys={1: key, 2: other}, replay_window=64, max_datagram=9000)


def make_twins():
    from collector import _receive  # a failure, not a skip, when it was not built
    return [receive.Receiver(make_config()), _receive.Receiver(make_config())]


TWINS = make_twins()


CLOCK = (0, -60_000, -60_001, 5_000, 5_001, -1)  # ms from now: at and past the limits


def signed(head: bytes, body: bytes, tag_len: int, now_ms: int) -> bytes:
    """``head`` (44 bytes) with key 1, one of its sender ids and a clock
    reading picked by its own bytes, then ``body``, signed."""
    head = bytearray(head)
    pick = head[31] ^ head[35]
    struct.pack_into(">II", head, 12, 1, 1 + pick % 2)
    struct.pack_into(">Q", head, 36, now_ms + CLOCK[pick % len(CLOCK)])
    return bytes(head) + body + wire.compute_tag(SECRET, bytes(head) + body, tag_len)


def variants(data: bytes, now_ms: int) -> list[bytes]:
    """The input; it signed when its framing parses; and a datagram whose
    sequence number, instance and records are the input's bytes."""
    out = [data]
    try:
        header = wire.parse_header(data)
    except wire.WireError:
        pass
    else:
        out.append(signed(data[:44], data[44:len(data) - header.tag_len], header.tag_len, now_ms))
    raw = (data + bytes(64))[:64]
    count = 1 + raw[0] % 3
    records = (data * (count * 120 // max(len(data), 1) + 1))[:count * 120] if data else bytes(count * 120)
    seq = int.from_bytes(raw[1:3], "big") % 200  # a small range: replays, gaps, late arrivals
    head = wire.HEADER.pack(b"IPR", 1, 16 + raw[3] % 17, 0, 120, count, 0, 1, 1, raw[4] % 3, seq, 0)
    out.append(signed(head, records, 16 + raw[3] % 17, now_ms))
    return out


def same(twins, data, addr, now_ms):
    verdicts = [r.handle(data, addr, now_ms) for r in twins]
    assert verdicts[0] == verdicts[1], verdicts
    states = [(r.counters(), r.peek(), sorted(r.streams(bits=True)), r.dirty) for r in twins]
    assert states[0] == states[1]


@settings(max_examples=1500, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=mutated(SEEDS, 9100))
def test_both_receive_loops_agree_on_mutated_datagrams(data):
    now_ms = time.time_ns() // 1_000_000
    fresh = make_twins()
    for variant in variants(data, now_ms):
        for addr in (("192.0.2.1", 5000), ("2001:db8::1", 5000, 0, 0)):
            same(fresh, variant, addr, now_ms)
            same(TWINS, variant, addr, now_ms)
    if len(TWINS[0].peek()[0]) > 1 << 20:  # a flush
        assert TWINS[0].take() == TWINS[1].take()
        for r in TWINS:
            r.reset_counters()
