"""The agent's sender (ipr_agent/sender.py) against a real UDP socket."""
from __future__ import annotations

import ctypes
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from agent_helpers import DEADLINE, ROOT, SECRET, Receiver
from ipr_agent import wire
from ipr_agent.sender import Sender, parse_collector

PER_DATAGRAM = (wire.DEFAULT_DATAGRAM - wire.HEADER_SIZE - wire.TAG_DEFAULT) // wire.RECORD_SIZE  # 11


def record(i: int = 0, client: str = "203.0.113.9") -> wire.Record:
    return wire.Record(client=client, server="192.0.2.10", traffic_type="api", server_port=443,
                       status=200, flags=wire.F_TCPINFO, http_version=11, duration_us=100 + i,
                       response_bytes=1000 + i, rtt_us=2000)


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def make_sender(receiver):
    made = []

    def make(**kw):
        kw.setdefault("flush_interval", 3600)  # only explicit or size flushes, unless a test asks
        s = Sender("127.0.0.1", receiver.port, 3, SECRET, 99, **kw)
        made.append(s)
        return s
    yield make
    for s in made:
        s.close()


def test_it_sends_a_datagram_as_soon_as_the_next_record_would_not_fit(receiver, make_sender):
    sender = make_sender()
    assert sender.records_per_datagram == PER_DATAGRAM == 11
    for i in range(PER_DATAGRAM - 1):
        sender.add(record(i))
    assert sender.datagrams_sent == 0
    sender.add(record(PER_DATAGRAM - 1))
    assert (sender.datagrams_sent, sender.records_sent) == (1, PER_DATAGRAM)
    sender.add(record(100))  # starts the next datagram
    assert sender.datagrams_sent == 1
    receiver.wait_for(lambda r: len(r.datagrams) == 1)
    assert len(receiver.raw[0]) == wire.HEADER_SIZE + 11 * wire.RECORD_SIZE + 16 <= wire.DEFAULT_DATAGRAM
    assert receiver.datagrams[0].records == [record(i) for i in range(PER_DATAGRAM)]
    sender.flush()
    receiver.wait_for(lambda r: len(r.datagrams) == 2)
    assert receiver.datagrams[1].records == [record(100)]


def test_a_larger_max_datagram_carries_more_records(receiver, make_sender):
    sender = make_sender(max_datagram=9000, tag_len=32)
    per = (9000 - wire.HEADER_SIZE - 32) // wire.RECORD_SIZE
    for i in range(per):
        sender.add(record(i))
    receiver.wait_for(lambda r: len(r.datagrams) == 1)
    assert receiver.datagrams[0].header.count == per == 74
    assert len(receiver.raw[0]) <= 9000


def test_it_flushes_by_interval_from_its_own_thread(receiver, make_sender):
    sender = make_sender(flush_interval=0.05)
    sender.add(record(1))
    # Nobody calls flush: only the background thread can send this.
    receiver.wait_for(lambda r: len(r.datagrams) == 1, "the interval flush")
    assert receiver.datagrams[0].records == [record(1)]
    assert sender._thread.daemon and sender._thread.name == "ipr-sender-flush"


def test_sequence_numbers_start_at_1_and_count_datagrams(receiver, make_sender):
    sender = make_sender()
    stamps = []
    for i in range(5):
        before = time.time_ns() // 1_000_000
        sender.add(record(i))
        sender.flush()
        stamps.append((before, time.time_ns() // 1_000_000))
    sender.flush()  # nothing buffered: no datagram, no sequence number used
    receiver.wait_for(lambda r: len(r.datagrams) == 5)
    headers = [d.header for d in receiver.datagrams]
    assert [h.sequence for h in headers] == [1, 2, 3, 4, 5]
    assert {h.instance_id for h in headers} == {sender.instance_id}
    assert {(h.key_id, h.sender_id, h.tag_len) for h in headers} == {(3, 99, 16)}
    for h, (before, after) in zip(headers, stamps):
        assert before <= h.time_ms <= after  # stamped when sent


def test_signatures_verify_with_the_secret_and_fail_without_it(receiver, make_sender):
    sender = make_sender(tag_len=24)
    sender.add(record(7))
    sender.flush()
    receiver.wait_for(lambda r: len(r.raw) == 1)
    data = receiver.raw[0]
    assert wire.decode(data, SECRET).records == [record(7)]
    assert len(data) == wire.HEADER_SIZE + wire.RECORD_SIZE + 24
    with pytest.raises(wire.WireError) as err:
        wire.decode(data, bytes(32))
    assert err.value.reason == "bad_tag"
    tampered = bytearray(data)
    tampered[wire.HEADER_SIZE + 60] ^= 1
    with pytest.raises(wire.WireError):
        wire.decode(bytes(tampered), SECRET)


def test_instance_ids_are_random_per_sender(make_sender):
    ids = {make_sender().instance_id for _ in range(8)}
    assert len(ids) == 8
    assert make_sender(instance_id=0x0123456789ABCDEF).instance_id == 0x0123456789ABCDEF


def test_packed_records_take_the_fast_path(receiver, make_sender):
    sender = make_sender()
    sender.add_packed(record(5).pack())
    sender.flush()
    receiver.wait_for(lambda r: len(r.datagrams) == 1)
    assert receiver.datagrams[0].records == [record(5)]


def test_concurrent_adds_lose_and_duplicate_nothing(receiver, make_sender):
    sender = make_sender(flush_interval=0.01)  # the flush thread races the adders too
    threads, per_thread = 8, 500

    def work(t):
        for i in range(per_thread):
            sender.add(record(t * per_thread + i))
    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    sender.flush()
    total = threads * per_thread
    assert sender.records_sent == total and sender.send_errors == 0
    receiver.wait_for(lambda r: len(r.records()) >= total)
    assert sorted(r.duration_us for r in receiver.records()) == [100 + i for i in range(total)]
    seqs = [d.header.sequence for d in receiver.datagrams]
    assert sorted(seqs) == list(range(1, len(seqs) + 1))


def _fork_and_report(sender, fork, child_record):
    """Fork with ``fork``; the child adds a record, flushes and writes its view to a pipe."""
    read_end, write_end = os.pipe()
    pid = fork()
    if pid == 0:  # the child: report, then leave without running the parent's cleanup
        try:
            reset_at_fork = sender._pid == os.getpid()  # before any use: only a fork hook did it
            sender.add(child_record)
            sender.flush()
            os.write(write_end, json.dumps({"instance": sender.instance_id, "seq": sender.sequence,
                                            "sent": sender.records_sent,
                                            "reset_at_fork": reset_at_fork}).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as f:
        child = json.loads(f.read())
    os.waitpid(pid, 0)
    return child


@pytest.mark.parametrize("fork", ["os.fork", "libc fork (no Python fork hooks, like uWSGI)"])
def test_a_forked_child_sends_as_a_new_instance_without_the_parents_records(receiver, make_sender, fork):
    sender = make_sender(flush_interval=0.01)
    sender.add(record(0))
    sender.flush()  # parent: sequence 1, and its flush thread is running
    sender.add(record(1))  # buffered in the parent when it forks
    if fork == "os.fork":
        do_fork = os.fork
    else:
        libc = ctypes.PyDLL(None)  # PyDLL: fork while holding the GIL, as a C server would
        do_fork = libc.fork
    child = _fork_and_report(sender, do_fork, record(2))
    assert child["instance"] != sender.instance_id
    assert (child["seq"], child["sent"]) == (1, 1)
    # os.fork runs the agent's fork hook; a C fork is caught by add()'s pid check.
    assert child["reset_at_fork"] is (fork == "os.fork")
    sender.flush()
    receiver.wait_for(lambda r: len(r.datagrams) == 3)
    by_instance = {}
    for d in receiver.datagrams:
        by_instance.setdefault(d.header.instance_id, []).append(d)
    parent = by_instance.pop(sender.instance_id)
    (child_datagrams,) = by_instance.values()
    assert [d.header.sequence for d in parent] == [1, 2]
    assert [r for d in parent for r in d.records] == [record(0), record(1)]
    assert [d.header.sequence for d in child_datagrams] == [1]
    assert child_datagrams[0].records == [record(2)]  # not the parent's buffered record(1)


def test_an_unreachable_collector_never_raises_and_counts_errors():
    # A port nobody listens on: loopback answers with ICMP port unreachable,
    # which the connected socket reports as ECONNREFUSED on a later send.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sender = Sender("127.0.0.1", port, 3, SECRET, 99, flush_interval=3600)
    flushes = 0
    deadline = time.monotonic() + DEADLINE
    while sender.send_errors == 0 and time.monotonic() < deadline:
        for i in range(3):
            sender.add(record(i))
        sender.flush()
        flushes += 1
    assert sender.send_errors >= 1, "no ECONNREFUSED seen"
    assert "Connection refused" in sender.last_error or "ECONNREFUSED" in sender.last_error
    assert sender.datagrams_sent + sender.send_errors == flushes == sender.sequence
    assert sender.records_dropped == 3 * sender.send_errors
    assert sender.records_sent == 3 * sender.datagrams_sent
    sender.close()
    sender.add(record(9))  # after close: dropped, counted, no exception
    assert sender.records_dropped == 3 * sender.send_errors + 1


def test_a_record_that_cannot_be_packed_is_dropped_not_raised(receiver, make_sender):
    sender = make_sender()
    sender.add(record(client="not an address"))
    assert sender.records_dropped == 1 and "pack" in sender.last_error
    sender.add(record(1))
    sender.flush()
    receiver.wait_for(lambda r: len(r.datagrams) == 1)
    assert receiver.datagrams[0].records == [record(1)]


def test_close_sends_what_is_buffered(receiver):
    sender = Sender("127.0.0.1", receiver.port, 3, SECRET, 99, flush_interval=3600)
    sender.add(record(3))
    sender.close()
    sender.close()  # twice is fine
    receiver.wait_for(lambda r: len(r.datagrams) == 1)
    assert receiver.datagrams[0].records == [record(3)]


def test_a_process_that_exits_normally_sends_its_last_records(receiver):
    code = ("import sys; from ipr_agent.sender import Sender; from ipr_agent import wire; "
            f"s = Sender('127.0.0.1', {receiver.port}, 3, bytes.fromhex('{SECRET.hex()}'), 99, "
            "flush_interval=3600); "
            "s.add(wire.Record(client='198.51.100.1', server='192.0.2.1', response_bytes=77)); "
            "sys.exit(0)")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=DEADLINE)
    receiver.drain()  # the process has exited: its datagram is here or lost
    assert [r.response_bytes for r in receiver.records()] == [77]


def test_it_sends_to_an_ipv6_collector():
    try:
        receiver = Receiver("::1")
    except OSError:
        pytest.skip("no IPv6 loopback")
    sender = Sender.from_env({"IPR_COLLECTOR": f"[::1]:{receiver.port}", "IPR_KEY_ID": "3",
                              "IPR_KEY_SECRET": SECRET.hex(), "IPR_SENDER_ID": "99"})
    sender.add(record(4, client="2001:db8::7"))
    sender.flush()
    receiver.wait_for(lambda r: len(r.datagrams) == 1)
    assert receiver.datagrams[0].records == [record(4, client="2001:db8::7")]
    sender.close()
    receiver.close()


GOOD_ENV = {"IPR_COLLECTOR": "127.0.0.1:9477", "IPR_KEY_ID": "3",
            "IPR_KEY_SECRET": SECRET.hex(), "IPR_SENDER_ID": "99"}


def test_from_env_reads_every_setting(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET.hex() + "\n")
    env = {**GOOD_ENV, "IPR_KEY_SECRET": "", "IPR_KEY_SECRET_FILE": str(secret_file),
           "IPR_TRAFFIC_TYPE": "static", "IPR_MAX_DATAGRAM": "9000", "IPR_TAG_LEN": "32",
           "IPR_FLUSH_INTERVAL": "0.5"}
    sender = Sender.from_env(env)
    assert (sender.host, sender.port, sender.key_id, sender.sender_id) == ("127.0.0.1", 9477, 3, 99)
    assert (sender.secret, sender.traffic_type, sender.max_datagram, sender.tag_len,
            sender.flush_interval) == (SECRET, "static", 9000, 32, 0.5)
    sender.close()
    assert Sender.from_env(GOOD_ENV).traffic_type == "default"


def test_collector_addresses_parse():
    assert parse_collector("127.0.0.1:9477") == ("127.0.0.1", 9477)
    assert parse_collector("[::1]:9477") == ("::1", 9477)
    assert parse_collector("collector.example.net:1") == ("collector.example.net", 1)


@pytest.mark.parametrize("name, value", [
    ("IPR_COLLECTOR", None), ("IPR_COLLECTOR", "127.0.0.1"), ("IPR_COLLECTOR", "::1:9477"),
    ("IPR_COLLECTOR", "[::1]:0"), ("IPR_COLLECTOR", "127.0.0.1:65536"), ("IPR_COLLECTOR", "[::1]"),
    ("IPR_COLLECTOR", "no-such-host.invalid:9477"),
    ("IPR_KEY_ID", None), ("IPR_KEY_ID", "one"), ("IPR_KEY_ID", "-1"), ("IPR_KEY_ID", str(2**32)),
    ("IPR_SENDER_ID", None), ("IPR_SENDER_ID", "1.5"),
    ("IPR_KEY_SECRET", None), ("IPR_KEY_SECRET", "not hex"), ("IPR_KEY_SECRET", "00" * 15),
    ("IPR_KEY_SECRET_FILE", "/nonexistent/secret"),
    ("IPR_TRAFFIC_TYPE", "a-name-longer-than-16"), ("IPR_TRAFFIC_TYPE", "vidéo"),
    ("IPR_MAX_DATAGRAM", "100"), ("IPR_MAX_DATAGRAM", "70000"), ("IPR_TAG_LEN", "8"),
    ("IPR_FLUSH_INTERVAL", "0"), ("IPR_FLUSH_INTERVAL", "soon"), ("IPR_FLUSH_INTERVAL", "30"),
])
def test_a_bad_setting_fails_loudly_naming_the_variable(name, value):
    env = dict(GOOD_ENV)
    if value is None:
        env.pop(name)
    else:
        env[name] = value
    if name == "IPR_KEY_SECRET_FILE":
        env.pop("IPR_KEY_SECRET")
    with pytest.raises(ValueError, match=name):
        Sender.from_env(env)


def test_a_secret_given_twice_is_refused(tmp_path):
    (tmp_path / "s").write_text(SECRET.hex())
    with pytest.raises(ValueError, match="IPR_KEY_SECRET_FILE"):
        Sender.from_env({**GOOD_ENV, "IPR_KEY_SECRET_FILE": str(tmp_path / "s")})
