"""The collector daemon on real sockets: python -m collector in a subprocess."""
import random
import signal
import socket
import time

import numpy as np
import pytest

from collector import spool
from ipr_agent import wire
from tests.collector_helpers import ROOT, CollectorProcess, key, make_datagram, write_keys

FULL = wire.F_TCPINFO | wire.F_TCPINFO_SEGS | wire.F_BYTES_SENT | wire.F_DELIVERY_RATE


def udp(family="v4"):
    return socket.socket(socket.AF_INET if family == "v4" else socket.AF_INET6, socket.SOCK_DGRAM)


def random_records(rng, n, clients, types=("static", "api", "video")):
    out = []
    for _ in range(n):
        rtt = rng.randrange(100, 3_000_000)
        out.append(wire.Record(
            client=rng.choice(clients), server=rng.choice(["192.0.2.1", "2001:db8::80"]),
            traffic_type=rng.choice(types), server_port=443,
            status=rng.choice([200, 200, 204, 301, 404, 500, 101, 0, 999]),
            flags=rng.choice([FULL, FULL | wire.F_NEW_CONNECTION, wire.F_TCPINFO, 0]),
            requests=rng.randrange(1, 3), duration_us=rng.randrange(10**6),
            response_bytes=rng.randrange(10**7), wire_bytes=rng.randrange(10**7),
            retrans_bytes=rng.randrange(10**4), data_segs=rng.randrange(10**4),
            retrans_segs=rng.randrange(10), rtt_us=rtt, rttvar_us=rtt // 4,
            min_rtt_us=rng.randrange(50, 10**5), delivery_rate=rng.randrange(10**9)))
    return out


def expected_totals(records):
    """What the spool must sum to, computed the obvious way, record by record."""
    t = dict(records=0, requests=0, response_bytes=0, wire_bytes=0, retrans_segs=0,
             data_segs=0, rtt_sum_us=0, rate_sum=0, connections=0, tcpinfo_records=0,
             hist=[0] * spool.RTT_BUCKETS, status=[0] * 6, min_rtt=spool.NO_MIN_RTT)
    for r in records:
        t["records"] += 1
        t["requests"] += r.requests
        t["response_bytes"] += r.response_bytes
        t["connections"] += bool(r.flags & wire.F_NEW_CONNECTION)
        cls = r.status // 100
        t["status"][cls - 1 if 1 <= cls <= 5 else 5] += r.requests
        if r.flags & wire.F_BYTES_SENT:
            t["wire_bytes"] += r.wire_bytes
        if r.flags & wire.F_TCPINFO_SEGS:
            t["data_segs"] += r.data_segs
            t["min_rtt"] = min(t["min_rtt"], r.min_rtt_us)
        if r.flags & wire.F_DELIVERY_RATE:
            t["rate_sum"] += r.delivery_rate
        if r.flags & wire.F_TCPINFO:
            t["tcpinfo_records"] += 1
            t["retrans_segs"] += r.retrans_segs
            t["rtt_sum_us"] += r.rtt_us
            t["hist"][sum(1 for edge in spool.RTT_EDGES_US if r.rtt_us >= edge)] += 1
    return t


def spool_totals(rows):
    return dict(records=int(rows["records"].sum()), requests=int(rows["requests"].sum()),
                response_bytes=int(rows["response_bytes"].sum()), wire_bytes=int(rows["wire_bytes"].sum()),
                retrans_segs=int(rows["retrans_segs"].sum()), data_segs=int(rows["data_segs"].sum()),
                rtt_sum_us=int(rows["rtt_sum_us"].sum()), rate_sum=int(rows["rate_sum"].sum()),
                connections=int(rows["connections"].sum()), tcpinfo_records=int(rows["tcpinfo_records"].sum()),
                hist=rows["rtt_hist"].sum(axis=0).tolist(), status=rows["status"].sum(axis=0).tolist(),
                min_rtt=int(rows["min_rtt_us"].min()) if len(rows) else spool.NO_MIN_RTT)


def test_it_spools_good_datagrams_with_exact_totals(tmp_path):
    rng = random.Random(7)
    clients = ["198.51.100.%d" % i for i in range(1, 40)] + ["2001:db8:c::%x" % i for i in range(1, 40)]
    sent = []
    with CollectorProcess(tmp_path, keys=[key(1, sender_ids=range(1, 5))], processes=2) as c:
        # Four senders over IPv4 and IPv6, single and batched datagrams.
        for sender in range(1, 5):
            s = udp("v4" if sender % 2 else "v6")
            for seq in range(1, 151):
                batch = random_records(rng, 1 if seq % 3 else 11, clients)
                sent += batch
                s.sendto(make_datagram(batch, seq, sender_id=sender, instance_id=sender * 7919),
                         c.address("v4" if sender % 2 else "v6"))
            s.close()
        c.wait_metric("ipr_collector_records_accepted_total", len(sent))
        assert c.stop() == 0
        rows = c.rows()
        assert not list((c.spool_dir / "open").iterdir()), "SIGTERM closes every open segment"
    assert spool_totals(rows) == expected_totals(sent)
    # Rows are per minute x server x client x type: no key twice within a flush block.
    merged = spool.merge(rows)
    keys = {(r["minute"], r["client"], r["server"], r["traffic_type"]) for r in spool.row_dicts(merged)}
    assert len(keys) == len(merged)
    assert {r["traffic_type"] for r in spool.row_dicts(merged)} == {"static", "api", "video"}


def bad_datagrams(good_record):
    """(reason, datagram, source family) for every way a datagram can be bad."""
    rec = [good_record]
    now = int(time.time() * 1000)
    forged = bytearray(make_datagram(rec, 100))
    forged[50] ^= 0xFF  # a record byte changed after signing
    return [
        ("bad_tag", bytes(forged), "v4"),
        ("bad_tag", make_datagram(rec, 101, secret=b"another secret of 32 bytes......"), "v4"),
        ("unknown_key", make_datagram(rec, 102, key_id=99), "v4"),
        ("disabled_key", make_datagram(rec, 103, key_id=2), "v4"),
        ("source_not_allowed", make_datagram(rec, 104, key_id=3), "v4"),
        ("stale", make_datagram(rec, 105, time_ms=now - 120_000), "v4"),
        ("future", make_datagram(rec, 106, time_ms=now + 60_000), "v4"),
        ("truncated", make_datagram(rec, 107)[:-3], "v4"),
        ("truncated", make_datagram(rec, 108)[:50], "v4"),
        ("oversized", make_datagram([good_record] * 20, 109), "v4"),
        ("garbage", b"GET / HTTP/1.1\r\n\r\n", "v4"),
        ("garbage", bytes(random.Random(1).randbytes(300)), "v6"),
        ("bad_version", b"IPR\x02" + make_datagram(rec, 110)[4:], "v4"),
        ("malformed", make_datagram(rec, 111)[:8] + b"\0\0" + make_datagram(rec, 111)[10:], "v4"),
    ]


def test_it_rejects_bad_datagrams_by_reason_and_keeps_running(tmp_path):
    keys = [key(1), key(2, enabled=False), key(3, networks=["192.0.2.0/24"])]
    good = wire.Record(client="203.0.113.9", server="192.0.2.1", traffic_type="api", status=200,
                       response_bytes=1000, requests=1)
    with CollectorProcess(tmp_path, keys=keys, max_datagram=1500) as c:
        cases = bad_datagrams(good)
        s4, s6 = udp("v4"), udp("v6")
        s4.sendto(make_datagram([good], 1), c.address())
        for reason, data, fam in cases:
            (s4 if fam == "v4" else s6).sendto(data, c.address(fam))
        # A replay of the first good datagram, then a good one after all the bad.
        s4.sendto(make_datagram([good], 1), c.address())
        s4.sendto(make_datagram([good], 2), c.address())
        c.wait_metric("ipr_collector_datagrams_received_total", len(cases) + 3)
        c.wait_metric("ipr_collector_records_accepted_total", 2)
        m = c.metrics()
        expected = {}
        for reason, _d, _f in cases + [("replayed", None, None)]:
            expected[reason] = expected.get(reason, 0) + 1
        got = {name.split('"')[1]: v for name, v in m.items()
               if name.startswith("ipr_collector_datagrams_rejected_total") and v}
        assert got == expected
        assert m["ipr_collector_datagrams_accepted_total"] == 2
        assert c.stop() == 0
        assert spool_totals(c.rows())["response_bytes"] == 2000


def test_it_rejects_tags_shorter_than_the_configured_minimum(tmp_path):
    rec = [wire.Record(client="192.0.2.5", server="192.0.2.1")]
    with CollectorProcess(tmp_path, min_tag_len=24) as c:
        s = udp()
        s.sendto(make_datagram(rec, 1, tag_len=16), c.address())
        s.sendto(make_datagram(rec, 2, tag_len=24), c.address())
        c.wait_metric("ipr_collector_datagrams_received_total", 2)
        c.wait_metric('ipr_collector_datagrams_rejected_total{reason="short_tag"}', 1)
        assert c.metrics()["ipr_collector_datagrams_accepted_total"] == 1


def test_sigterm_loses_nothing_that_reached_the_socket(tmp_path):
    rng = random.Random(3)
    clients = ["192.0.2.%d" % i for i in range(1, 200)]
    grams, sent = [], []
    for seq in range(1, 3001):
        batch = random_records(rng, 5, clients)
        sent += batch
        grams.append(make_datagram(batch, seq))
    with CollectorProcess(tmp_path, flush_interval=1.0) as c:
        s = udp()
        for g in grams:
            s.sendto(g, c.address())
        # No waiting: whatever the worker has not read yet is still queued.
        assert c.stop() == 0
        assert spool_totals(c.rows()) == expected_totals(sent)


def test_a_restarted_collector_still_rejects_replays(tmp_path):
    rec = [wire.Record(client="192.0.2.5", server="192.0.2.1", response_bytes=10)]
    first, second = make_datagram(rec, 10), make_datagram(rec, 11)
    c = CollectorProcess(tmp_path)
    with c:
        udp().sendto(first, c.address())
        c.wait_metric("ipr_collector_datagrams_accepted_total", 1)
    with c:
        s = udp()
        s.sendto(first, c.address())
        s.sendto(second, c.address())
        c.wait_metric("ipr_collector_datagrams_received_total", 2)
        c.wait_metric('ipr_collector_datagrams_rejected_total{reason="replayed"}', 1)
        assert c.metrics()["ipr_collector_datagrams_accepted_total"] == 1
    assert spool_totals(c.rows())["response_bytes"] == 20


def test_it_counts_lost_datagrams_per_sender(tmp_path):
    rec = [wire.Record(client="192.0.2.5", server="192.0.2.1")]
    with CollectorProcess(tmp_path, keys=[key(1, sender_ids=[5, 6])]) as c:
        s = udp()
        for seq in (1, 2, 3, 7, 8, 6, 12):  # 4, 5, 9, 10, 11 never arrive; 6 arrives late
            s.sendto(make_datagram(rec, seq, sender_id=5), c.address())
        for seq in (1, 2):
            s.sendto(make_datagram(rec, seq, sender_id=6), c.address())
        c.wait_metric('ipr_collector_sender_datagrams_total{sender="5"}', 7)
        c.wait_metric('ipr_collector_sender_datagrams_total{sender="6"}', 2)
        m = c.metrics()
        assert m['ipr_collector_sender_lost_datagrams_total{sender="5"}'] == 5
        assert m.get('ipr_collector_sender_lost_datagrams_total{sender="6"}', 0) == 0


def test_sighup_reloads_keys_and_keeps_the_old_ones_when_the_new_file_is_bad(tmp_path):
    rec = [wire.Record(client="192.0.2.5", server="192.0.2.1", response_bytes=1)]
    other = bytes(range(32))
    with CollectorProcess(tmp_path) as c:
        s = udp()
        s.sendto(make_datagram(rec, 1, key_id=2, secret=other), c.address())
        c.wait_metric('ipr_collector_datagrams_rejected_total{reason="unknown_key"}', 1)

        write_keys(c.key_file, [key(1), key(2, secret=other)])
        c.signal(signal.SIGHUP)
        c.wait_metric('ipr_collector_reloads_total{result="ok"}', 1)
        c.wait_log("worker 0 reloaded: 2 keys")
        s.sendto(make_datagram(rec, 2, key_id=2, secret=other), c.address())
        c.wait_metric("ipr_collector_datagrams_accepted_total", 1)

        c.key_file.write_text('{"keys": [{"id": 2, "secret": "not hex"}]}')
        c.signal(signal.SIGHUP)
        c.wait_metric('ipr_collector_reloads_total{result="failed"}', 1)
        s.sendto(make_datagram(rec, 3, key_id=2, secret=other), c.address())
        s.sendto(make_datagram(rec, 1, key_id=1), c.address())
        c.wait_metric("ipr_collector_datagrams_accepted_total", 3)
        assert "reload failed, keeping the running configuration" in c.log.read_text()
        assert c.stop() == 0


def test_sighup_can_disable_a_key(tmp_path):
    rec = [wire.Record(client="192.0.2.5", server="192.0.2.1")]
    with CollectorProcess(tmp_path) as c:
        s = udp()
        s.sendto(make_datagram(rec, 1), c.address())
        c.wait_metric("ipr_collector_datagrams_accepted_total", 1)
        write_keys(c.key_file, [key(1, enabled=False)])
        c.signal(signal.SIGHUP)
        c.wait_metric('ipr_collector_reloads_total{result="ok"}', 1)
        c.wait_log("worker 0 reloaded: 1 keys")
        s.sendto(make_datagram(rec, 2), c.address())
        c.wait_metric('ipr_collector_datagrams_rejected_total{reason="disabled_key"}', 1)


def test_a_crash_leaves_a_spool_that_the_next_start_recovers(tmp_path):
    rec = [wire.Record(client="192.0.2.5", server="192.0.2.1", response_bytes=7)]
    c = CollectorProcess(tmp_path, segment_seconds=3600.0)
    with c:
        s = udp()
        for seq in range(1, 11):
            s.sendto(make_datagram(rec, seq), c.address())
        c.wait_metric("ipr_collector_spool_rows_total", 1)
        c.kill()  # SIGKILL: no final flush, the segment stays in open/
        assert list((c.spool_dir / "open").iterdir())
    with c:
        assert not list((c.spool_dir / "open").iterdir())
        assert "recovered" in c.log.read_text()
    assert spool_totals(c.rows())["response_bytes"] == 70


def test_a_worker_that_dies_is_restarted_on_the_same_socket(tmp_path):
    import os
    import re
    rec = [wire.Record(client="192.0.2.5", server="192.0.2.1", response_bytes=3)]
    with CollectorProcess(tmp_path) as c:
        s = udp()
        s.sendto(make_datagram(rec, 1), c.address())
        c.wait_metric("ipr_collector_datagrams_accepted_total", 1)
        worker = int(re.findall(r"-(\d+)-w0-", " ".join(p.name for p in (c.spool_dir / "open").iterdir()))[0])
        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while "restarting" not in c.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        s.sendto(make_datagram(rec, 2), c.address())
        deadline = time.monotonic() + 10
        while spool_totals(c.rows())["response_bytes"] < 6 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert c.stop() == 0
    assert spool_totals(c.rows())["response_bytes"] == 6


def test_check_reports_a_bad_configuration_and_exits_non_zero(tmp_path):
    import subprocess
    import sys
    c = CollectorProcess(tmp_path)
    from tests.collector_helpers import ROOT
    c.config.write_text(c.config.read_text().replace("processes = 1", "processes = 0"))
    out = subprocess.run([sys.executable, "-m", "collector", "-c", str(c.config), "--check"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2
    assert f"{c.config}: processes must be a int in 1..64, not 0" in out.stderr
    c.config.write_text(c.config.read_text().replace("processes = 0", "processes = 1"))
    c.key_file.write_text('{"keys": [{"id": 1, "secret": "abcd", "networks": []}]}')
    out = subprocess.run([sys.executable, "-m", "collector", "-c", str(c.config), "--check"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2
    assert "keys[0]: secret must be at least 16 bytes" in out.stderr


def test_spool_rows_of_a_flush_are_written_in_one_crc_checked_block(tmp_path):
    rng = random.Random(5)
    recs = random_records(rng, 50, ["192.0.2.1", "192.0.2.2"])
    rows = spool.aggregate(b"".join(r.pack() for r in recs), np.full(50, 29_000_000, np.uint32))
    spool.make_dirs(tmp_path)
    w = spool.SegmentWriter(tmp_path, "a.seg", 0, 1)
    w.append(rows, 2)
    w.append(rows, 3)
    path = w.close()
    data = bytearray(path.read_bytes())
    assert len(spool.read_segment(path)) == 2 * len(rows)
    # A torn last block (a crash mid-write) is skipped ...
    path.write_bytes(data[:-10])
    assert len(spool.read_segment(path)) == len(rows)
    # ... but damage before the last block is an error naming file and offset.
    data[spool.FILE_HEADER.size + spool.BLOCK_HEADER.size + 5] ^= 1
    path.write_bytes(data)
    with pytest.raises(spool.SpoolError, match=r"a\.seg: block at byte 32 fails its CRC"):
        spool.read_segment(path)
    # A header of another version or row size names the byte it read.
    header = bytearray(data[:spool.FILE_HEADER.size])
    header[8] = 0
    with pytest.raises(spool.SpoolError, match=r"b\.seg: unsupported segment version 0 at byte 8"):
        spool.scan_segment(bytes(header), "b.seg")
    header[8], header[12] = 1, 7
    with pytest.raises(spool.SpoolError, match=r"b\.seg: row size \d+ at byte 12 is not"):
        spool.scan_segment(bytes(header), "b.seg")


def test_one_sender_instance_always_reaches_the_same_worker(tmp_path):
    # Without steering, the kernel hashes the source port: a replay sent
    # from another port could reach a worker that never saw the sequence.
    rec = [wire.Record(client="192.0.2.5", server="192.0.2.1", response_bytes=1)]
    with CollectorProcess(tmp_path, processes=2) as c:
        udp().sendto(make_datagram(rec, 1, instance_id=0x1000), c.address())
        udp().sendto(make_datagram(rec, 1, instance_id=0x1001), c.address())
        c.wait_metric("ipr_collector_datagrams_accepted_total", 2)
        for _ in range(20):  # a fresh socket, so a fresh source port, each time
            udp().sendto(make_datagram(rec, 1, instance_id=0x1000), c.address())
        c.wait_metric('ipr_collector_datagrams_rejected_total{reason="replayed"}', 20)
        assert c.stop() == 0
    # Instance ids ending in 0 and 1 went to the two different workers.
    workers = {p.name.split("-w")[1].split("-")[0]: len(spool.read_segment(p))
               for p in (c.spool_dir / "incoming").glob("*.seg")}
    assert workers == {"0": 1, "1": 1}


def test_a_worker_restarted_after_a_reload_has_the_reloaded_keys(tmp_path):
    import os
    import re
    other = bytes(range(32))
    rec = [wire.Record(client="192.0.2.5", server="192.0.2.1", response_bytes=1)]
    with CollectorProcess(tmp_path) as c:
        write_keys(c.key_file, [key(1), key(2, secret=other)])
        c.signal(signal.SIGHUP)
        c.wait_metric('ipr_collector_reloads_total{result="ok"}', 1)
        c.wait_log("worker 0 reloaded: 2 keys")
        s = udp()
        s.sendto(make_datagram(rec, 1, key_id=2, secret=other), c.address())
        c.wait_metric("ipr_collector_datagrams_accepted_total", 1)
        worker = int(re.findall(r"-(\d+)-w0-", " ".join(p.name for p in (c.spool_dir / "open").iterdir()))[0])
        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while "restarting" not in c.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        s.sendto(make_datagram(rec, 2, key_id=2, secret=other), c.address())
        deadline = time.monotonic() + 10
        while spool_totals(c.rows())["response_bytes"] < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert spool_totals(c.rows())["response_bytes"] == 2


def test_recovery_sets_a_segment_damaged_before_its_end_aside_and_readers_skip_it(tmp_path):
    recs = [wire.Record(client="192.0.2.1", server="192.0.2.2", response_bytes=5)]
    rows = spool.aggregate(b"".join(r.pack() for r in recs), np.array([1], np.uint32))
    spool.make_dirs(tmp_path)
    w = spool.SegmentWriter(tmp_path, "broken.seg", 0, 1)
    w.append(rows, 2)
    w.append(rows, 3)
    w.file.close()  # left in open/, as by a crash
    data = bytearray(w.path.read_bytes())
    data[spool.FILE_HEADER.size + spool.BLOCK_HEADER.size] ^= 1  # damage the first of two blocks
    w.path.write_bytes(data)
    good = spool.SegmentWriter(tmp_path, "good.seg", 1, 1)
    good.append(rows, 2)
    good.file.close()
    notes = spool.recover_open(tmp_path)
    assert any("broken.seg: block at byte 32 fails its CRC" in n and "broken.seg.bad" in n for n in notes)
    assert sorted(p.name for p in (tmp_path / "incoming").iterdir()) == ["broken.seg.bad", "good.seg"]
    assert int(spool.read_dir(tmp_path)["response_bytes"].sum()) == 5


def test_a_sigterm_just_after_start_stops_every_process(tmp_path):
    """systemctl stop can come at any moment, also while the master forks
    its workers: a child must never run on with the master's handler."""
    import subprocess
    import sys
    (tmp_path / "collector.toml").write_text('listen = ["127.0.0.1:0"]\nprocesses = 2\nmetrics_listen = ""\n')
    for _ in range(3):
        process = subprocess.Popen([sys.executable, "-m", "collector", "-c", str(tmp_path / "collector.toml")],
                                   cwd=ROOT, stderr=subprocess.PIPE, text=True)
        while "listening on" not in process.stderr.readline():
            pass
        process.terminate()
        assert process.wait(timeout=20) == 0
