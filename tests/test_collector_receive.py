"""The collector's receive loop: the compiled Receiver (collector/_receive.c)
and its pure-Python twin (collector/receive.py) give the same verdicts,
counters, replay state and record bytes on the same input.

The compiled one must be built (make native): these tests fail, they do
not skip, when it is missing.
"""
import ipaddress
import json
import logging
import random
import socket
import time
from pathlib import Path

import pytest

from collector import config, receive
from ipr import native
from ipr_agent import wire

VECTORS = json.loads((Path(__file__).parent / "vectors" / "wire-v1.json").read_text())
SECRET = bytes(range(32))
OTHER = bytes(range(1, 33))
ANY = ("0.0.0.0/0", "::/0")


def compiled_class():
    from collector import _receive  # an ImportError here is a failure: CI builds it
    return _receive.Receiver


TWINS = {"python": lambda: receive.Receiver, "compiled": compiled_class}


def make_key(id=1, secret=SECRET, enabled=True, networks=ANY, sender_ids=(101,)):
    return config.Key(id, secret, enabled, tuple(ipaddress.ip_network(n) for n in networks), "",
                      frozenset(sender_ids))


def make_config(keys=None, **settings):
    keys = [make_key()] if keys is None else keys
    return config.Config(keys={k.id: k for k in keys}, **settings)


def both(cfg):
    return [TWINS[name]()(cfg) for name in ("python", "compiled")]


def state(r) -> tuple:
    """Everything a Receiver shows: counters, kept records and runs, replay state."""
    return r.counters(), r.peek(), sorted(r.streams(bits=True)), r.dirty


def datagram(seq, key_id=1, sender_id=101, instance=7, time_ms=None, secret=SECRET, records=1,
             tag_len=16, record_size=120, fill=0):
    """A signed datagram; records longer than 120 bytes as a later version would send them."""
    time_ms = time.time_ns() // 1_000_000 if time_ms is None else time_ms
    recs = []
    for i in range(records):
        rec = wire.Record(client=f"192.0.2.{(i + fill) % 250}", server="198.51.100.1", traffic_type=f"t{i % 3}",
                          response_bytes=1000 + i + fill, flags=wire.F_TCPINFO, rtt_us=5 + i).pack()
        recs.append(rec + bytes((j + i) % 256 for j in range(record_size - 120)))
    head = wire.HEADER.pack(b"IPR", 1, tag_len, 0, record_size, records, 0, key_id, sender_id, instance,
                            seq, time_ms)
    body = head + b"".join(recs)
    return body + wire.compute_tag(secret, body, tag_len)


# -- which one runs

@pytest.mark.parametrize("value, name", [("0", "collector.receive"), ("1", "collector._receive")])
def test_ipr_native_picks_the_receiver(monkeypatch, value, name):
    monkeypatch.setenv("IPR_NATIVE", value)
    native.reset()
    try:
        assert receive.receiver_class().__module__ == name
    finally:
        native.reset()


@pytest.mark.parametrize("value, says", [("0", "receive loop pure Python (collector.receive)"),
                                         ("1", "receive loop compiled (collector._receive)")])
def test_the_workers_log_says_which_receive_loop_runs(tmp_path, monkeypatch, caplog, value, says):
    from collector.daemon import Metrics, Worker
    monkeypatch.setenv("IPR_NATIVE", value)
    native.reset()
    cfg = make_config(spool_dir=tmp_path / "spool")
    (tmp_path / "spool" / "state").mkdir(parents=True)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, caplog.at_level(logging.INFO):
        sock.bind(("127.0.0.1", 0))
        worker = Worker(cfg, sock, 3, Metrics())
        assert type(worker.receiver).__module__ == ("collector._receive" if value == "1" else "collector.receive")
    native.reset()
    assert f"worker 3: {says}" in caplog.text


# -- golden vectors

def vector_config(vector):
    data = bytes.fromhex(vector["datagram"])
    key_id, sender_id, time_ms = 1, 0, 0
    if len(data) >= wire.HEADER_SIZE:
        f = wire.HEADER.unpack_from(data)
        key_id, sender_id, time_ms = f[7], f[8], f[11]
    cfg = make_config([make_key(key_id, bytes.fromhex(vector["secret"]),
                                sender_ids=vector.get("sender_ids", [sender_id]))],
                      max_age=60.0, max_future=5.0, min_tag_len=16, max_datagram=65507)
    return data, cfg, vector.get("now_ms", time_ms)


ALL_VECTORS = [(section, v) for section in ("valid", "accepted", "invalid") for v in VECTORS[section]]


@pytest.mark.parametrize("section, vector", ALL_VECTORS, ids=lambda x: x if isinstance(x, str) else x["name"])
def test_both_receivers_give_every_golden_vector_the_same_verdict_counters_and_records(section, vector):
    data, cfg, now_ms = vector_config(vector)
    expected = vector.get("reason", "accepted")
    results = []
    for r in both(cfg):
        verdict = r.handle(data, ("192.0.2.1", 5000), now_ms)
        results.append((verdict, state(r)))
    assert results[0] == results[1]
    verdict, (counters, (records, runs), _streams, _dirty) = results[0]
    assert verdict == expected
    assert counters["received"] == 1
    assert {r: n for r, n in counters["rejects"].items() if n} == ({} if expected == "accepted" else {expected: 1})
    if expected == "accepted":
        decoded = wire.decode(data)
        assert counters["records"] == len(decoded.records) == len(records) // 120
        assert runs == [[decoded.header.time_ms // 60000, len(decoded.records)]]
        for i, rec in enumerate(decoded.records):
            assert wire.Record.unpack(bytes(records), 120 * i).client == rec.client


@pytest.mark.parametrize("stream", VECTORS["streams"], ids=lambda s: s["name"])
def test_both_receivers_keep_each_stream_vectors_verdicts_loss_and_resets(stream):
    cfg = make_config(replay_window=stream["window"])
    for r in both(cfg):
        verdicts = [r.handle(datagram(seq), ("192.0.2.1", 5000)) for seq in stream["sequences"]]
        assert verdicts == stream["verdicts"]
        c = r.counters()
        assert c["senders"][101][1] == stream["lost"]
        assert c["resets"].get(101, 0) == stream["resets"]


# -- streams: replay window, loss, late arrivals, resets

@pytest.mark.parametrize("window", [64, 100, 1024, 65536])
@pytest.mark.parametrize("seed", range(4))
def test_both_receivers_book_random_sequence_streams_alike(window, seed):
    rng = random.Random(seed * 1000 + window)
    cfg = make_config([make_key(1, sender_ids=(101, 102)), make_key(2, OTHER, sender_ids=(101,))],
                      replay_window=window)
    twins = both(cfg)
    now = time.time_ns() // 1_000_000
    streams = [(1, 101, 7), (1, 102, 7), (1, 101, 8), (2, 101, 7)]
    highest = {s: 1000 for s in streams}
    seen, resets = set(), 0
    for step in range(1500):
        s = rng.choice(streams)
        roll = rng.random()
        if roll < 0.5:
            seq = highest[s] + 1
        elif roll < 0.7:
            seq = highest[s] + rng.randint(2, window)  # a gap inside the window
        elif roll < 0.75:
            seq = highest[s] + window + rng.randint(1, 3 * window)  # a reset
        elif roll < 0.78:
            seq = max(0, rng.choice([highest[s] + window, highest[s] - window, highest[s] - window + 1]))
        else:
            seq = max(0, highest[s] - rng.randint(0, window + 5))  # late, a replay, or too old
        highest[s] = max(highest[s], seq)
        data = datagram(seq, key_id=s[0], sender_id=s[1], instance=s[2], time_ms=now,
                        secret=SECRET if s[0] == 1 else OTHER, records=rng.randint(1, 3), fill=step)
        verdicts = [r.handle(data, ("192.0.2.9", 4000), now) for r in twins]
        assert verdicts[0] == verdicts[1], (step, seq)
        seen.add(verdicts[0])
        if step % 97 == 0:
            assert state(twins[0]) == state(twins[1]), step
        if step % 250 == 249:  # a flush: counters published, records taken, state saved
            assert twins[0].take() == twins[1].take()
            resets += sum(twins[0].counters()["resets"].values())
            for r in twins:
                r.reset_counters()
                r.dirty = False
    assert state(twins[0]) == state(twins[1])
    assert seen == {"accepted", "replayed"} and resets  # every path was taken


def test_prune_and_load_give_both_receivers_the_same_replay_state():
    now = time.time_ns() // 1_000_000
    twins = both(make_config(replay_window=128))
    for r in twins:
        for i, seq in enumerate([5, 9, 7, 300]):
            r.handle(datagram(seq, instance=i % 2, time_ms=now), ("192.0.2.1", 1), now + i)
        assert r.prune(now + 3) == 1  # instance 0, last heard at now + 2
        r.load([(1, 101, 0, 4, now), (1, 101, 1, 400, now - 5), (1, 101, 9, 3, now), (3, 5, 2**64 - 1, 0, -1)])
    assert state(twins[0]) == state(twins[1])
    assert sorted(s[:6] for s in twins[0].streams()) == [
        (1, 101, 0, 4, now, 4), (1, 101, 1, 400, now - 5, 400), (1, 101, 9, 3, now, 3), (3, 5, 2**64 - 1, 0, -1, 0)]
    for r in twins:  # a loaded stream counts its whole window as seen
        assert [r.handle(datagram(seq, instance=1, time_ms=now), ("192.0.2.1", 1), now)
                for seq in (400, 273, 272, 401)] == ["replayed", "replayed", "replayed", "accepted"]
    assert state(twins[0]) == state(twins[1])


def test_a_negative_loss_balance_is_carried_over_a_reset_of_the_counters():
    for r in both(make_config()):
        for seq in (1, 5):
            r.handle(datagram(seq), ("192.0.2.1", 1))
        r.reset_counters()  # the 3 lost were published
        for seq in (2, 3, 4):
            r.handle(datagram(seq), ("192.0.2.1", 1))
        assert r.counters()["senders"] == {101: [3, -3]}
        r.reset_counters()
        assert r.counters()["senders"] == {101: [0, -3]}


# -- the other checks

def test_both_receivers_check_the_source_per_key_and_address():
    keys = [make_key(1, networks=("10.0.0.0/8", "2001:db8::/32")), make_key(2, OTHER, networks=("192.0.2.0/24",),
                                                                          sender_ids=(101,))]
    sources = ["10.1.2.3", "::ffff:10.1.2.3", "2001:db8::5", "fe80::1%lo", "192.0.2.7", "10.1.2.3", "203.0.113.1"]
    results = []
    for r in both(make_config(keys)):
        out = []
        for i, src in enumerate(sources * 2):
            for key_id, secret in ((1, SECRET), (2, OTHER)):
                out.append(r.handle(datagram(100 * i + key_id, key_id=key_id, secret=secret), (src, 9)))
        results.append((out, r.counters()["rejects"]))
    assert results[0] == results[1]
    assert results[0][0][:8] == ["accepted", "source_not_allowed"] * 3 + ["source_not_allowed"] * 2


def test_both_receivers_apply_the_clock_limits_to_the_millisecond():
    now = 1_800_000_000_000
    cfg = make_config(max_age=1.0005, max_future=0.0)
    times = [now - 1000, now - 1001, now, now + 1, now - 2**40, 2**64 - 1, 0]
    for r in both(cfg):
        assert [r.handle(datagram(i + 1, time_ms=t), ("192.0.2.1", 1), now) for i, t in enumerate(times)] == [
            "accepted", "stale", "accepted", "future", "stale", "future", "stale"]


def test_both_receivers_keep_the_version_1_part_of_longer_records_with_their_minutes():
    now = 1_800_000_000_000
    results = []
    for r in both(make_config()):
        for seq, t in ((1, now), (2, now + 1), (3, now - 60_000), (4, now)):
            assert r.handle(datagram(seq, time_ms=t, records=3, record_size=130, fill=seq), ("192.0.2.1", 1),
                            now) == "accepted"
        results.append(r.take())
        assert r.take() == (bytearray(), [])
    assert results[0] == results[1]
    records, runs = results[0]
    assert runs == [[now // 60000, 6], [now // 60000 - 1, 3], [now // 60000, 3]]
    assert bytes(records[:120]) == datagram(1, time_ms=now, records=3, fill=1)[44:164]


def test_a_reload_keeps_the_streams_and_takes_the_new_keys():
    for r in both(make_config()):
        assert r.handle(datagram(1), ("192.0.2.1", 1)) == "accepted"
        r.configure(make_config([make_key(1, OTHER)]))
        assert r.handle(datagram(2), ("192.0.2.1", 1)) == "bad_tag"
        assert r.handle(datagram(1, secret=OTHER), ("192.0.2.1", 1)) == "replayed"
        r.configure(make_config([make_key(1, enabled=False)]))
        assert r.handle(datagram(3), ("192.0.2.1", 1)) == "disabled_key"


def test_both_receivers_refuse_bad_arguments_with_the_same_errors():
    def errors(r):
        out = []
        idle = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        calls = [lambda: r.handle("text", ("192.0.2.1", 1)), lambda: r.handle(b"IPR", ()),
                 lambda: r.handle(b"IPR", None), lambda: r.receive(-1, 10, 0),
                 lambda: r.configure(make_config(replay_window=128)),
                 lambda: r.handle(datagram(1), (5, 1)), lambda: r.receive(idle, 10, float("nan")),
                 lambda: r.load([(1, 2, 3)]), lambda: r.load([(1, 2, 3, 4, "5")]),
                 lambda: r.load([[1, 2, 3, 4, 5], (-1, 2, 3, 4, 5)]), lambda: r.load([(1, 2**32, 3, 4, 5)]),
                 lambda: r.load([(1, 2, 3, 4, 2**63)]), lambda: r.load(5), lambda: r.prune(2**62)]
        for call in calls:
            try:
                out.append(call())
            except Exception as exc:
                out.append((type(exc).__name__, str(exc)))
        idle.close()
        return out, r.counters()
    twins = both(make_config())
    twins[0].handle(datagram(1), ("192.0.2.1", 1))
    twins[1].handle(datagram(1), ("192.0.2.1", 1))
    got = [errors(r) for r in twins]
    assert got[0] == got[1]
    assert got[0][0][4] == ("ValueError", "replay_window cannot change from 1024 to 128 while streams are held")
    assert got[0][0][7] == ("ValueError", "a stream is (key, sender, instance, highest, last ms), not 3 values")
    assert got[0][0][9][0] == "OverflowError" and got[0][0][-1] == 2  # the stream of [1, 2, ...] was taken


# -- real sockets

def drain(r, sock, batch):
    takes = []
    while True:
        n = r.receive(sock, batch, 0.05)
        if not n:
            return takes
        takes.append(n)


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_both_receivers_take_the_same_datagrams_from_a_real_socket(family):
    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    cfg = make_config([make_key(1, networks=("127.0.0.0/8", "::1/128"), sender_ids=(101, 102))],
                      max_datagram=2000)
    now = time.time_ns() // 1_000_000
    rng = random.Random(family)
    sent = []
    for i in range(700):
        roll = rng.random()
        if roll < 0.7:
            data = datagram(rng.randint(1, 600), sender_id=rng.choice((101, 102)), time_ms=now,
                            records=rng.randint(1, 12), fill=i)
        elif roll < 0.8:
            data = bytearray(datagram(i + 1, time_ms=now))
            data[rng.randrange(len(data))] ^= 0x40
            data = bytes(data)
        elif roll < 0.9:
            data = b"" if i % 2 else b"junk" * rng.randint(0, 10)
        else:
            data = datagram(i + 1, time_ms=now, records=17)  # 2100 bytes: oversized
        sent.append(data)
    results = []
    for r in both(cfg):
        with socket.socket(family, socket.SOCK_DGRAM) as rx, socket.socket(family, socket.SOCK_DGRAM) as tx:
            rx.bind((host, 0))
            assert r.receive(rx, 100, 0.01) == 0  # nothing queued: waits, then 0
            takes = []
            for at in range(0, len(sent), 90):  # 90 fit the default receive buffer
                for data in sent[at:at + 90]:
                    tx.sendto(data, rx.getsockname())
                takes += drain(r, rx, 70)  # more than one recvmmsg batch, less than the queue
        # Each stream's last-heard time is the clock's when it came: left out.
        streams = sorted(s[:4] + s[5:] for s in r.streams(bits=True))
        results.append((takes, r.counters(), r.peek(), streams))
    assert results[0] == results[1]
    takes, counters = results[0][:2]
    assert sum(takes) == counters["received"] == len(sent) and takes[:2] == [70, 20]
    assert counters["rejects"]["oversized"] and counters["rejects"]["garbage"] and counters["accepted"]
    assert counters["accepted"] + sum(counters["rejects"].values()) == len(sent)


def test_the_receiver_counts_a_source_outside_the_keys_networks_from_a_real_socket():
    cfg = make_config([make_key(1, networks=("10.0.0.0/8",))])
    for r in both(cfg):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            rx.bind(("127.0.0.1", 0))
            for seq in range(1, 4):
                tx.sendto(datagram(seq), rx.getsockname())
            assert sum(drain(r, rx, 64)) == 3
        assert {k: v for k, v in r.counters()["rejects"].items() if v} == {"source_not_allowed": 3}


def test_the_worker_steps_through_the_receiver_and_flushes_what_it_took(tmp_path):
    from collector import spool
    from collector.daemon import Metrics, Worker
    cfg = make_config([make_key(1, networks=("127.0.0.0/8",))], spool_dir=tmp_path / "spool",
                      flush_interval=0.05)
    spool.make_dirs(cfg.spool_dir)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        rx.bind(("127.0.0.1", 0))
        worker = Worker(cfg, rx, 0, Metrics())
        for seq in range(1, 201):
            tx.sendto(datagram(seq, records=2), rx.getsockname())
        tx.sendto(datagram(5), rx.getsockname())  # a replay
        worker.step()
        worker.step()
        worker.flush(final=True)
    m = worker.metrics.registry
    assert m.get_sample_value("ipr_collector_datagrams_received_total") == 201
    assert m.get_sample_value("ipr_collector_records_accepted_total") == 400
    assert m.get_sample_value("ipr_collector_datagrams_rejected_total", {"reason": "replayed"}) == 1
    assert spool.read_dir(cfg.spool_dir)["records"].sum() == 400
    saved = json.loads((cfg.spool_dir / "state" / "replay-0.json").read_text())["instances"]
    assert [e[:4] for e in saved] == [[1, 101, 7, 200]]


def test_both_receivers_hand_over_each_traffic_type_as_the_decoder_reads_it():
    rng = random.Random(5)
    alphabet = [0x00, 0x20, 0x21, 0x41, 0x7e, 0x7f, 0x80, 0xff]
    fields = [bytes([0x41] * k + [0] * (16 - k)) for k in range(17)]
    fields += [bytes(rng.choice(alphabet) for _ in range(16)) for _ in range(600)]
    one = wire.Record(client="192.0.2.1", server="192.0.2.2", traffic_type="web").pack()
    now = time.time_ns() // 1_000_000
    sent = []
    for i in range(0, len(fields), 20):
        recs = [one[:32] + f + one[48:] for f in fields[i:i + 20]]
        head = wire.HEADER.pack(b"IPR", 1, 16, 0, 120, len(recs), 0, 1, 101, 7, i + 1, now)
        sent.append(head + b"".join(recs) + wire.compute_tag(SECRET, head + b"".join(recs), 16))
    results = []
    for r in both(make_config()):
        assert {r.handle(d, ("192.0.2.1", 1), now) for d in sent} == {"accepted"}
        results.append((r.peek(), r.take()))
    assert results[0] == results[1]
    records = results[0][1][0]
    assert results[0][0][0] == records
    for i, f in enumerate(fields):
        assert records[120 * i + 32:120 * i + 48] == wire.clean_type(f), f
        assert records[120 * i:120 * i + 32] == one[:32] and records[120 * i + 48:120 * i + 120] == one[48:]


def test_both_receivers_take_a_socket_or_its_file_descriptor():
    for r in both(make_config([make_key(1, networks=("127.0.0.0/8",))])):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            rx.bind(("127.0.0.1", 0))
            for seq in (1, 2):
                tx.sendto(datagram(seq), rx.getsockname())
            assert r.receive(rx.fileno(), 1, 1.0) == 1
            assert r.receive(rx, 5, 1.0) == 1
            assert r.receive(rx.fileno(), 5, 0) == 0
            assert rx.fileno() >= 0  # still open: the receiver does not own it
        assert r.counters()["accepted"] == 2
