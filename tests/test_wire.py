import json
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from collector import config, spool
from ipr_agent import wire
from collector.daemon import Metrics, Worker, clean_types

VECTORS = json.loads((Path(__file__).parent / "vectors" / "wire-v1.json").read_text())


@pytest.mark.parametrize("vector", VECTORS["valid"], ids=lambda v: v["name"])
def test_the_encoder_reproduces_each_golden_vector(vector):
    header = wire.Header(**vector["header"])
    records = [wire.Record(**r).pack() for r in vector["records"]]
    assert wire.encode(header, records, bytes.fromhex(vector["secret"])).hex() == vector["datagram"]


@pytest.mark.parametrize("vector", VECTORS["valid"], ids=lambda v: v["name"])
def test_the_decoder_reads_each_golden_vector(vector):
    dgram = wire.decode(bytes.fromhex(vector["datagram"]), bytes.fromhex(vector["secret"]))
    for name, value in vector["header"].items():
        assert getattr(dgram.header, name) == value
    assert [r.as_dict() for r in dgram.records] == vector["records"]


@pytest.mark.parametrize("vector", VECTORS["accepted"], ids=lambda v: v["name"])
def test_the_decoder_accepts_each_receiver_vector_and_reads_its_records(vector):
    dgram = decode_vector(vector)
    assert [r.as_dict() for r in dgram.records] == vector["records"]


@pytest.mark.parametrize("vector", VECTORS["invalid"], ids=lambda v: v["name"])
def test_the_decoder_rejects_each_bad_vector_with_its_reason(vector):
    with pytest.raises(wire.WireError) as err:
        decode_vector(vector)
    assert err.value.reason == vector["reason"]


def header_of(data: bytes) -> dict:
    """key_id, sender_id and time_ms from a datagram, when it is long enough to hold them."""
    if len(data) < wire.HEADER_SIZE:
        return {"key_id": 1, "sender_id": 0, "time_ms": 0}
    f = wire.HEADER.unpack_from(data)
    return {"key_id": f[7], "sender_id": f[8], "time_ms": f[11]}


def decode_vector(vector):
    """ipr_agent.wire.decode with the receiver the vectors file describes."""
    data = bytes.fromhex(vector["datagram"])
    h = header_of(data)
    return wire.decode(data, bytes.fromhex(vector["secret"]), sender_ids=vector.get("sender_ids", [h["sender_id"]]),
                       now_ms=vector.get("now_ms", h["time_ms"]))


def make_worker(tmp_path, keys, **settings):
    """A collector worker with these key file entries, on a real socket."""
    (tmp_path / "keys.json").write_text(config.dump_keys(keys))
    (tmp_path / "keys.json").chmod(0o600)
    lines = ['spool_dir = "spool"', 'key_file = "keys.json"'] + [f"{k} = {v!r}" for k, v in settings.items()]
    (tmp_path / "c.toml").write_text("\n".join(lines) + "\n")
    cfg = config.load_config(tmp_path / "c.toml")
    spool.make_dirs(cfg.spool_dir)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    worker = Worker(cfg, sock, 0, Metrics())
    worker.sock_to_close = sock
    return worker


def collector_verdict(tmp_path, monkeypatch, vector) -> str:
    """Worker.handle's verdict on a vector, with the receiver the vectors file describes."""
    data = bytes.fromhex(vector["datagram"])
    h = header_of(data)
    worker = make_worker(tmp_path, [{"id": h["key_id"], "secret": vector["secret"], "enabled": True,
                                     "networks": ["0.0.0.0/0", "::/0"],
                                     "sender_ids": vector.get("sender_ids", [h["sender_id"]])}],
                         max_age=60.0, max_future=5.0, min_tag_len=16, max_datagram=65507)
    now_ms = vector.get("now_ms", h["time_ms"])
    monkeypatch.setattr(time, "time_ns", lambda: now_ms * 1_000_000)
    worker.buf[:len(data)] = data
    worker.handle(len(data), ("192.0.2.1", 5000))
    worker.sock_to_close.close()
    rejects = {r: n for r, n in worker.rejects.items() if n}
    assert sum(rejects.values()) + worker.counts["accepted"] == 1
    if rejects:
        return next(iter(rejects))
    # What it keeps is what decode reads: the same record bytes, as the
    # collector counts them (fields whose flag is clear are masked when rows
    # are aggregated, see test_fields_whose_flag_is_clear_are_not_counted).
    assert len(worker.records) == 120 * worker.counts["records"]
    clean_types(worker.records)  # as the flush does
    for i in range(worker.counts["records"]):
        rec = wire.Record.unpack(bytes(worker.records), 120 * i)
        assert rec.traffic_type == wire.decode(data).records[i].traffic_type
    return "accepted"


def decoder_verdict(vector) -> str:
    try:
        decode_vector(vector)
    except wire.WireError as exc:
        return exc.reason
    return "accepted"


ALL_VECTORS = [(section, v) for section in ("valid", "accepted", "invalid") for v in VECTORS[section]]


@pytest.mark.parametrize("section, vector", ALL_VECTORS, ids=lambda x: x if isinstance(x, str) else x["name"])
def test_the_collector_and_the_decoder_give_every_vector_the_same_verdict(tmp_path, monkeypatch, section, vector):
    expected = vector.get("reason", "accepted")
    assert (decoder_verdict(vector), collector_verdict(tmp_path, monkeypatch, vector)) == (expected, expected)


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_the_collector_counts_a_datagram_of_fewer_than_4_bytes_as_garbage(tmp_path, n):
    worker = make_worker(tmp_path, [])
    worker.buf[:3] = b"IPR"  # what a longer datagram left in the buffer must not count
    worker.handle(n, ("192.0.2.1", 5000))
    assert worker.counts["received"] == 1
    assert {r: c for r, c in worker.rejects.items() if c} == {"garbage": 1}
    worker.sock_to_close.close()


@pytest.mark.parametrize("stream", VECTORS["streams"], ids=lambda s: s["name"])
def test_the_collector_keeps_each_stream_vectors_verdicts_loss_and_resets(tmp_path, stream):
    worker = make_worker(tmp_path, [{"id": 1, "secret": SECRET.hex(), "networks": ["0.0.0.0/0"],
                                     "sender_ids": [101]}], replay_window=stream["window"])
    verdicts = []
    for seq in stream["sequences"]:
        before = worker.rejects["replayed"]
        send(worker, seq)
        verdicts.append("replayed" if worker.rejects["replayed"] > before else "accepted")
    assert not any(n for r, n in worker.rejects.items() if r != "replayed")
    assert verdicts == stream["verdicts"]
    assert worker.senders[101][1] == stream["lost"]
    assert worker.sequence_resets.get(101, 0) == stream["resets"]
    worker.sock_to_close.close()


SECRET = bytes(range(32))
REC = wire.Record(client="192.0.2.5", server="192.0.2.1", response_bytes=1)


def send(worker, seq, key_id=1, sender_id=101, instance_id=7, secret=SECRET, records=(REC,)):
    data = wire.encode(wire.Header(key_id, sender_id, instance_id, seq, time.time_ns() // 1_000_000),
                       [r.pack() for r in records], secret)
    worker.buf[:len(data)] = data
    worker.handle(len(data), ("192.0.2.1", 5000))


def test_a_sequence_far_ahead_is_a_reset_not_a_billion_lost_datagrams(tmp_path):
    worker = make_worker(tmp_path, [{"id": 1, "secret": SECRET.hex(), "networks": ["0.0.0.0/0"],
                                     "sender_ids": [101]}])
    send(worker, 1)
    send(worker, 3)
    send(worker, 1 + 10**9)
    worker.publish_counters()
    m = worker.metrics.registry
    assert m.get_sample_value("ipr_collector_sender_lost_datagrams_total", {"sender": "101"}) == 1
    assert m.get_sample_value("ipr_collector_sender_sequence_resets_total", {"sender": "101"}) == 1
    assert m.get_sample_value("ipr_collector_datagrams_accepted_total") == 3
    worker.sock_to_close.close()


def test_a_key_speaks_only_for_its_sender_ids_and_each_key_has_its_own_streams(tmp_path):
    other = bytes(range(1, 33))
    worker = make_worker(tmp_path, [
        {"id": 1, "secret": SECRET.hex(), "networks": ["0.0.0.0/0"], "sender_ids": [101]},
        {"id": 2, "secret": other.hex(), "networks": ["0.0.0.0/0"], "sender_ids": [202, 101]},
    ])
    send(worker, 5, key_id=2, sender_id=202, secret=other)
    send(worker, 5, key_id=1, sender_id=202)  # key 1 may not speak for 202
    assert worker.rejects["sender_not_allowed"] == 1
    send(worker, 5, key_id=1, sender_id=101)
    send(worker, 5, key_id=2, sender_id=101, secret=other)  # the same numbers under key 2: another stream
    assert worker.rejects["replayed"] == 0 and worker.counts["accepted"] == 3
    worker.publish_counters()
    assert worker.metrics.registry.get_sample_value("ipr_collector_datagrams_rejected_total",
                                                    {"reason": "sender_not_allowed"}) == 1
    worker.sock_to_close.close()


def test_the_collector_counts_a_traffic_type_as_the_decoder_reads_it(tmp_path):
    worker = make_worker(tmp_path, [{"id": 1, "secret": SECRET.hex(), "networks": ["0.0.0.0/0"],
                                     "sender_ids": [101]}])
    odd = bytearray(REC.pack())
    odd[32:48] = b"api\0junk\xffzz\0\0\0\0\0"
    plain = wire.Record(client="192.0.2.5", server="192.0.2.1", traffic_type="video").pack()
    data = wire.encode(wire.Header(1, 101, 7, 1, time.time_ns() // 1_000_000), [plain, bytes(odd)], SECRET)
    worker.buf[:len(data)] = data
    worker.handle(len(data), ("192.0.2.1", 5000))
    worker.flush(final=True)  # the types are checked per flush, for all its records at once
    rows = spool.read_dir(worker.cfg.spool_dir)
    assert sorted(rows["traffic_type"].tolist()) == [b"api", b"video"]
    worker.sock_to_close.close()


def test_fields_whose_flag_is_clear_are_not_counted():
    [vector] = [v for v in VECTORS["accepted"] if v["name"] == "flag-clear-fields-ignored"]
    data = bytes.fromhex(vector["datagram"])
    rows = spool.aggregate(data[44:-16], np.array([1], np.uint32))
    for name in ("wire_bytes", "retrans_bytes", "data_segs", "retrans_segs", "rtt_sum_us", "rate_sum"):
        assert rows[name].sum() == 0, name
    assert rows["response_bytes"].sum() == vector["records"][0]["response_bytes"]


def test_negative_values_are_sent_as_0_and_too_large_ones_as_the_maximum():
    rec = wire.Record(client="192.0.2.1", server="192.0.2.2", server_port=70000, status=-1, flags=-5,
                      requests=-1, rtt_us=2**40, delivery_rate=-3, response_bytes=2**70)
    back = wire.Record.unpack(rec.pack())
    assert (back.server_port, back.status, back.flags, back.requests, back.rtt_us, back.delivery_rate,
            back.response_bytes) == (wire.U16, 0, 0, 0, wire.U32, 0, wire.U64)


def test_addresses_round_trip_and_ipv4_is_mapped():
    assert wire.pack_address("192.0.2.1") == b"\0" * 10 + b"\xff\xff" + bytes([192, 0, 2, 1])
    for text in ("192.0.2.1", "2001:db8::1", "::", "0.0.0.0"):
        assert wire.unpack_address(wire.pack_address(text)) == text


def test_counters_saturate_instead_of_wrapping():
    rec = wire.Record(client="192.0.2.1", server="192.0.2.2", response_bytes=2**70, rtt_us=2**40)
    back = wire.Record.unpack(rec.pack())
    assert back.response_bytes == wire.U64 and back.rtt_us == wire.U32


def test_encode_refuses_an_out_of_range_tag_length_or_record_count():
    rec = wire.Record(client="192.0.2.1", server="192.0.2.2").pack()
    with pytest.raises(ValueError):
        wire.encode(wire.Header(1, 1, 1, 1, 1, tag_len=8), [rec], b"k" * 16)
    with pytest.raises(ValueError):
        wire.encode(wire.Header(1, 1, 1, 1, 1), [], b"k" * 16)


def test_a_traffic_type_is_sent_as_printable_ascii_and_read_back_the_same():
    assert wire.pack_type("caf\u00e9 v\0") == b"caf??v?" + b"\0" * 9
    assert wire.pack_type("0123456789abcdefXYZ") == b"0123456789abcdef"
    for name in ("caf\u00e9 v\0", "static", ""):
        assert wire.TYPE_OK.fullmatch(wire.pack_type(name))
        assert wire.clean_type(wire.pack_type(name)) == wire.pack_type(name)


def test_the_collectors_flush_time_type_check_agrees_with_the_per_record_one():
    from collector.daemon import clean_types
    import random
    rng = random.Random(5)
    alphabet = [0x00, 0x20, 0x21, 0x41, 0x7e, 0x7f, 0x80, 0xff]
    fields = [bytes([0x41] * k + [0] * (16 - k)) for k in range(17)]
    fields += [bytes(rng.choice(alphabet) for _ in range(16)) for _ in range(3000)]
    one = wire.Record(client="192.0.2.1", server="192.0.2.2", traffic_type="web").pack()
    records = bytearray(one * (len(fields) + 1))
    for i, field in enumerate(fields):
        records[120 * i + 32:120 * i + 48] = field
        good = bool(wire.TYPE_OK.fullmatch(field))
        assert good == (wire.clean_type(field) == field)
    clean_types(records)
    for i, field in enumerate(fields):
        assert records[120 * i + 32:120 * i + 48] == wire.clean_type(field), field
        # Only the type is touched.
        assert records[120 * i:120 * i + 32] == one[:32] and records[120 * i + 48:120 * i + 120] == one[48:]
    assert records[-120:] == one
