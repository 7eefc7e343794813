import json
import socket
from pathlib import Path

import pytest

from collector import config
from ipr_agent import wire
from collector.daemon import Metrics, Worker

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


@pytest.mark.parametrize("vector", VECTORS["invalid"], ids=lambda v: v["name"])
def test_the_decoder_rejects_each_bad_vector_with_its_reason(vector):
    with pytest.raises(wire.WireError) as err:
        wire.decode(bytes.fromhex(vector["datagram"]), bytes.fromhex(vector["secret"]))
    assert err.value.reason == vector["reason"]


def _worker_for(tmp_path, vectors):
    """A collector worker whose keys are the vectors' keys, on a real socket."""
    keys = {}
    for v in vectors:
        kid = v.get("header", {}).get("key_id", 1)
        keys[kid] = {"id": kid, "secret": v["secret"], "enabled": True, "networks": ["0.0.0.0/0", "::/0"]}
    (tmp_path / "keys.json").write_text(config.dump_keys(list(keys.values())))
    (tmp_path / "c.toml").write_text('spool_dir = "spool"\nkey_file = "keys.json"\nmax_age = 3600.0\n'
                                     "max_future = 600.0\nmax_datagram = 65507\n")
    from collector import spool
    cfg = config.load_config(tmp_path / "c.toml")
    spool.make_dirs(cfg.spool_dir)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return Worker(cfg, sock, 0, Metrics()), sock


@pytest.mark.parametrize("vector", VECTORS["invalid"], ids=lambda v: v["name"])
def test_the_collector_rejects_each_bad_vector_with_its_reason(tmp_path, vector):
    worker, sock = _worker_for(tmp_path, VECTORS["invalid"])
    data = bytes.fromhex(vector["datagram"])
    worker.buf[:len(data)] = data
    worker.handle(len(data), ("127.0.0.1", 5000))
    assert {r: n for r, n in worker.rejects.items() if n} == {vector["reason"]: 1}
    sock.close()


def test_the_collector_accepts_the_golden_vectors_whose_time_is_fresh(tmp_path):
    # Vectors carry fixed timestamps, so re-sign them with the current time.
    import time
    worker, sock = _worker_for(tmp_path, VECTORS["valid"][:2])
    for v in VECTORS["valid"][:2]:
        header = wire.Header(**{**v["header"], "time_ms": int(time.time() * 1000)})
        data = wire.encode(header, [wire.Record(**r).pack() for r in v["records"]], bytes.fromhex(v["secret"]))
        worker.buf[:len(data)] = data
        worker.handle(len(data), ("::1", 5000))
    assert not any(worker.rejects.values())
    assert worker.counts["records"] == 4
    sock.close()


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
