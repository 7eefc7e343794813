"""The flush's sum: the compiled aggregate (collector/_receive.c) and its
pure-Python twin (collector.spool.aggregate) give the same rows, byte for
byte and in the same order, and the same errors, on the same input.

The compiled one must be built (make native): these tests fail, they do
not skip, when it is missing.
"""
import ipaddress
import json
import socket
import time

import numpy as np
import pytest

from collector import spool, synth
from ipr import native
from ipr_agent import wire

MINUTE = 29_000_000
U32 = 0xFFFF_FFFF
U64 = 0xFFFF_FFFF_FFFF_FFFF


def compiled():
    from collector import _receive  # an ImportError here is a failure: CI builds it
    return _receive.aggregate


def both(records, minutes) -> np.ndarray:
    """Both sums of the same input; they must be identical. Returns the rows."""
    twin = spool.aggregate(records, minutes)
    rows = compiled()(records, minutes)
    assert rows.dtype == spool.ROW == twin.dtype
    assert len(rows) == len(twin)
    assert rows.tobytes() == twin.tobytes()
    return rows


def raw(n: int, **fields) -> np.ndarray:
    """n wire records (spool.RAW) of one key, fields set as given."""
    recs = np.zeros(n, spool.RAW)
    recs["client"] = np.frombuffer(wire.pack_address("192.0.2.1"), "V16")[0]
    recs["server"] = np.frombuffer(wire.pack_address("2001:db8::1"), "V16")[0]
    recs["type"] = np.frombuffer(wire.pack_type("static"), "V16")[0]
    for name, value in fields.items():
        recs[name] = value
    return recs


def minutes_of(n: int, first: int = MINUTE, count: int = 1) -> np.ndarray:
    return (first + np.arange(n) % count).astype(np.uint32)


# -- real-looking traffic

@pytest.mark.parametrize("seed, minutes", [(1, 1), (2, 3), (3, 7)])
def test_both_sum_synthetic_traffic_of_many_clients_into_the_same_rows(seed, minutes):
    traffic = synth.Traffic(seed=seed, clients=3000)
    records = b"".join(traffic.packed_records(20_000))
    addresses = {wire.unpack_address(records[i:i + 16]) for i in range(0, len(records), 120)}
    assert any(":" in a for a in addresses) and any("." in a and ":" not in a.replace("::ffff:", "")
                                                    for a in addresses)
    rng = np.random.default_rng(seed)
    mins = np.sort(rng.integers(MINUTE, MINUTE + minutes, 20_000)).astype(np.uint32)
    rows = both(records, mins)
    assert int(rows["records"].sum()) == 20_000
    assert len(np.unique(rows["minute"])) == minutes


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_both_take_bytes_bytearray_and_memoryview(kind):
    records = b"".join(synth.Traffic(seed=9, clients=200).packed_records(3000))
    rows = both(kind(records), minutes_of(3000, count=2))
    assert int(rows["requests"].sum()) > 0


# -- edge records

def test_both_count_every_combination_of_flags_alike():
    flags = np.array(list(range(0x80)) + [0xFF, 0xFFFF], np.uint16)
    recs = raw(len(flags), flags=flags, requests=3, rtt_us=4321, min_rtt_us=np.arange(len(flags)) + 100,
               data_segs=7, retrans_segs=2, wire_bytes=1500, retrans_bytes=100, delivery_rate=10**6)
    rows = both(recs.tobytes(), minutes_of(len(recs)))
    assert len(rows) == 1
    f = flags.astype(int)
    assert rows["connections"][0] == ((f & wire.F_NEW_CONNECTION) != 0).sum()
    assert rows["tcpinfo_records"][0] == ((f & wire.F_TCPINFO) != 0).sum()
    assert rows["min_rtt_us"][0] == 100 + np.flatnonzero(f & wire.F_TCPINFO_SEGS)[0]


def test_both_class_statuses_at_every_boundary_alike():
    statuses = np.array([0, 1, 99, 100, 101, 199, 200, 299, 300, 399, 400, 499, 500, 599, 600, 601,
                         699, 700, 999, 1000, 65535], np.uint16)
    recs = raw(len(statuses), status=statuses, requests=np.arange(1, len(statuses) + 1))
    rows = both(recs.tobytes(), minutes_of(len(recs)))
    # requests per class: 1xx 100,101,199 / 2xx 200,299 / ... / other: below 100 and 600+
    assert rows["status"][0].tolist() == [4 + 5 + 6, 7 + 8, 9 + 10, 11 + 12, 13 + 14,
                                          1 + 2 + 3 + sum(range(15, 22))]


def test_both_put_rtts_at_every_histogram_edge_in_the_same_buckets():
    values = sorted({v for e in spool.RTT_EDGES_US for v in (e - 1, e, e + 1)} | {0, 1, U32})
    recs = raw(len(values), rtt_us=values, flags=wire.F_TCPINFO)
    rows = both(recs.tobytes(), minutes_of(len(recs)))
    expected = np.zeros(spool.RTT_BUCKETS, int)
    for v in values:
        expected[sum(1 for e in spool.RTT_EDGES_US if e <= v)] += 1
    assert rows["rtt_hist"][0].tolist() == expected.tolist()
    assert rows["rtt_sum_us"][0] == sum(values)


@pytest.mark.parametrize("min_rtts, flags, expected", [
    ([5, 3, 9], wire.F_TCPINFO_SEGS, 3),
    ([U32, U32], wire.F_TCPINFO_SEGS, U32),
    ([0, 7], wire.F_TCPINFO_SEGS, 0),
    ([5, 3], 0, spool.NO_MIN_RTT),  # no record carries a min RTT
    ([5, 3], wire.F_TCPINFO, spool.NO_MIN_RTT),
])
def test_both_take_the_same_minimum_rtt(min_rtts, flags, expected):
    recs = raw(len(min_rtts), min_rtt_us=min_rtts, flags=flags)
    assert both(recs.tobytes(), minutes_of(len(recs)))["min_rtt_us"][0] == expected


# -- saturation

def test_both_saturate_every_sum_at_its_fields_maximum():
    everything = 0x7F  # every flag
    recs = raw(3, flags=everything, status=200, requests=U32, duration_us=U32, response_bytes=U64,
               wire_bytes=U64, retrans_bytes=U64, data_segs=U32, retrans_segs=U32, rtt_us=U32,
               rttvar_us=U32, min_rtt_us=U32, delivery_rate=U64)
    row = both(recs.tobytes(), minutes_of(3))[0]
    for name in ("response_bytes", "wire_bytes", "retrans_bytes", "rate_sum"):  # 64-bit sums past 2**64
        assert row[name] == spool.column_max(name) == U64
    assert row["status"][1] == U32  # 3 x (2**32 - 1) requests in a u32 class
    # 32-bit values summed into 64-bit fields cannot saturate: exact
    for name in ("requests", "data_segs", "retrans_segs", "rtt_sum_us", "duration_sum_us"):
        assert row[name] == 3 * U32
    assert row["records"] == 3 and row["rtt_hist"][-1] == 3 and row["min_rtt_us"] == U32


@pytest.mark.parametrize("values, expected", [
    ([U64 - 5, 5], U64),            # exactly the maximum: not saturated, just full
    ([U64 - 5, 6], U64),            # one past 2**64 - 1
    ([2**63, 2**63 - 1], U64),      # 2**64 - 1 again, from two large halves
    ([2**63, 2**63], U64),          # exactly 2**64
    ([2**62] * 3, 3 * 2**62),       # large and still exact
    ([U64, 0, 0], U64),
])
def test_both_sum_64_bit_values_exactly_up_to_the_maximum(values, expected):
    flags = wire.F_BYTES_SENT | wire.F_DELIVERY_RATE
    recs = raw(len(values), flags=flags, response_bytes=values, wire_bytes=values, retrans_bytes=values,
               delivery_rate=values)
    row = both(recs.tobytes(), minutes_of(len(values)))[0]
    for name in ("response_bytes", "wire_bytes", "retrans_bytes", "rate_sum"):
        assert int(row[name]) == expected


def test_both_saturate_a_status_class_past_2_to_the_32_requests():
    # Counts of records past 2**32 would need 4 G records (480 GB); the
    # requests-weighted status classes are the u32 sums that can pass it here.
    statuses = [150, 250, 350, 450, 550, 650]
    recs = raw(12, status=statuses * 2, requests=[U32] * 6 + [1] * 6)
    row = both(recs.tobytes(), minutes_of(12))[0]
    assert row["status"].tolist() == [U32] * 6
    assert row["requests"] == 6 * U32 + 6


# -- keys, minutes and order

def test_both_keep_minutes_servers_clients_and_types_apart():
    recs = np.concatenate([raw(4, response_bytes=1), raw(4, response_bytes=2)])
    recs["client"][4:] = np.frombuffer(wire.pack_address("2001:db8::7"), "V16")[0]
    recs["server"][[1, 5]] = np.frombuffer(wire.pack_address("192.0.2.99"), "V16")[0]
    recs["type"][[2, 6]] = np.frombuffer(wire.pack_type("video"), "V16")[0]
    mins = np.array([MINUTE, MINUTE, MINUTE, MINUTE + 1] * 2, np.uint32)
    rows = both(recs.tobytes(), mins)
    assert len(rows) == 8


def test_both_fall_back_to_the_keys_order_on_a_hash_collision():
    # The key hash is a chain of bijections, so a second key with the same
    # hash is made by changing the minute and correcting the next word.
    def mix(a):
        a = ((a ^ (a >> 30)) * 0xBF58476D1CE4E5B9) & U64
        a = ((a ^ (a >> 27)) * 0x94D049BB133111EB) & U64
        return a ^ (a >> 31)
    first = raw(1, response_bytes=1)
    word = int.from_bytes(first.tobytes()[:8], "little")
    other = raw(1, response_bytes=2)
    other_word = mix(MINUTE) ^ word ^ mix(MINUTE + 5)
    other_bytes = bytearray(other.tobytes())
    other_bytes[:8] = other_word.to_bytes(8, "little")
    filler = raw(50, response_bytes=3)
    filler["client"] = [np.frombuffer(wire.pack_address(f"198.51.100.{i}"), "V16")[0] for i in range(50)]
    records = first.tobytes() + bytes(other_bytes) + filler.tobytes()
    mins = np.array([MINUTE, MINUTE + 5] + [MINUTE + 2] * 50, np.uint32)
    rows = both(records, mins)
    assert len(rows) == 52
    keys = [(int(r["minute"]), bytes(r["client"])) for r in rows]
    assert keys == sorted(keys, key=lambda k: (k[0], int.from_bytes(k[1][:8], "little"),
                                               int.from_bytes(k[1][8:], "little")))


@pytest.mark.parametrize("seed", range(12))
def test_both_sum_random_records_alike(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 5000))
    pool = int(rng.integers(1, 40))
    recs = np.frombuffer(rng.bytes(n * 120), spool.RAW).copy()
    # draw keys from a small pool so records group; the rest stays random
    keys = np.frombuffer(rng.bytes(pool * 48), np.uint8).reshape(pool, 48)
    as_bytes = recs.view(np.uint8).reshape(n, 120)
    as_bytes[:, :48] = keys[rng.integers(0, pool, n)]
    if seed % 3 == 0:  # large values everywhere, to saturate
        as_bytes[:, 56:] |= 0xF0
    mins = rng.integers(MINUTE, MINUTE + int(rng.integers(1, 4)), n).astype(np.uint32)
    if seed % 4 == 1:
        mins = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    both(recs.tobytes(), mins)


# -- empty and bad input

@pytest.mark.parametrize("records", [b"", bytearray(), memoryview(b"")])
@pytest.mark.parametrize("count", [0, 3])
def test_both_give_no_rows_for_no_records(records, count):
    assert len(both(records, np.zeros(count, np.uint32))) == 0


def errors(records, minutes):
    out = []
    for aggregate in (spool.aggregate, compiled()):
        with pytest.raises(Exception) as exc:
            aggregate(records, minutes)
        out.append((type(exc.value), str(exc.value)))
    assert out[0] == out[1]
    return out[0]


@pytest.mark.parametrize("size", [1, 119, 121, 239, 241, 1000])
def test_both_refuse_a_length_that_is_no_whole_number_of_records(size):
    assert errors(b"\0" * size, np.zeros(size // 120, np.uint32)) == (
        ValueError, "buffer size must be a multiple of element size")


@pytest.mark.parametrize("n, m", [(2, 0), (2, 3), (5, 4), (1, 2)])
def test_both_refuse_a_minute_count_that_is_not_the_record_count(n, m):
    kind, message = errors(raw(n).tobytes(), np.zeros(m, np.uint32))
    assert kind is ValueError and f"({m},)" in message and f"({n},)" in message


def test_the_compiled_sum_refuses_minutes_that_are_not_uint32():
    # The worker always passes uint32 minutes; numpy in the twin would cast.
    with pytest.raises(TypeError, match="uint32"):
        compiled()(raw(2).tobytes(), np.zeros(2, np.int64))


# -- the worker's flush

@pytest.mark.parametrize("value, module", [("0", "collector.spool"), ("1", "collector._receive")])
def test_the_worker_flushes_through_the_chosen_sum(tmp_path, monkeypatch, value, module):
    from collector import _receive, config
    from collector.daemon import Metrics, Worker
    monkeypatch.setenv("IPR_NATIVE", value)
    native.reset()
    called = []

    def spy(of, name):
        def run(records, minutes):
            called.append(name)
            return of(records, minutes)
        return run
    monkeypatch.setattr(_receive, "aggregate", spy(_receive.aggregate, "collector._receive"))
    monkeypatch.setattr(spool, "aggregate", spy(spool.aggregate, "collector.spool"))
    secret = bytes(range(32))
    key = config.Key(1, secret, True, (ipaddress.ip_network("127.0.0.0/8"),), "", frozenset({101}))
    cfg = config.Config(keys={1: key}, spool_dir=tmp_path / "spool", flush_interval=0.05)
    spool.make_dirs(cfg.spool_dir)
    traffic = synth.Traffic(seed=4, clients=50)
    sent = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        rx.bind(("127.0.0.1", 0))
        worker = Worker(cfg, rx, 0, Metrics())
        now = time.time_ns() // 1_000_000
        for seq in range(1, 51):
            records = traffic.packed_records(5)
            sent.append(b"".join(records))
            head = wire.HEADER.pack(b"IPR", 1, 16, 0, 120, 5, 0, 1, 101, 7, seq, now)
            body = head + b"".join(records)
            tx.sendto(body + wire.compute_tag(secret, body, 16), rx.getsockname())
        worker.step()
        worker.step()
        worker.flush(final=True)
    native.reset()
    assert called == [module]
    rows = spool.read_dir(cfg.spool_dir)
    expected = spool.aggregate(b"".join(sent), np.full(250, now // 60_000, np.uint32))
    assert int(rows["records"].sum()) == 250
    assert sorted(json.dumps(d, sort_keys=True) for d in spool.row_dicts(rows)) == \
        sorted(json.dumps(d, sort_keys=True) for d in spool.row_dicts(expected))
