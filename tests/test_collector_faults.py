"""The collector under faults: empty datagrams, a second collector on the
same spool, datagrams that arrive while the sockets are set up, killed
workers and a killed master, spools and addresses it cannot use, and sums
too big for their fields."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from collector import daemon, spool
from ipr_agent import wire
from tests.collector_helpers import ROOT, CollectorProcess, free_port, make_datagram

REC = [wire.Record(client="192.0.2.5", server="192.0.2.1", response_bytes=7)]


def udp():
    return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


def run_collector(config, *args, wrap=()):
    return subprocess.run([*wrap, sys.executable, "-m", "collector", "-c", str(config), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


def children(pid: int) -> set[int]:
    """The live (not zombie) processes whose parent is ``pid``."""
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid and stat[0] != "Z":
                out.add(int(entry))
    return out


def alive(pid: int) -> bool:
    try:
        stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return stat[0] != "Z"


def wait_until(check, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def total_bytes(c) -> int:
    return int(c.rows()["response_bytes"].sum())


# -- the receive loop --------------------------------------------------------

def test_an_empty_datagram_is_received_and_rejected_as_garbage_while_running(tmp_path):
    with CollectorProcess(tmp_path, flush_interval=0.1) as c:
        s = udp()
        s.sendto(b"", c.address())
        s.sendto(b"", c.address())
        c.wait_metric('ipr_collector_datagrams_rejected_total{reason="garbage"}', 2, timeout=5)
        assert c.metrics()["ipr_collector_datagrams_received_total"] == 2
        s.sendto(make_datagram(REC, 1), c.address())  # and the worker goes on
        c.wait_metric("ipr_collector_datagrams_accepted_total", 1)


# -- the spool lock ----------------------------------------------------------

def test_a_second_collector_on_the_same_spool_exits_and_leaves_the_first_as_it_was(tmp_path):
    with CollectorProcess(tmp_path, flush_interval=0.1) as c:
        s = udp()
        s.sendto(make_datagram(REC, 1), c.address())
        c.wait_metric("ipr_collector_datagrams_accepted_total", 1)
        metrics_files = sorted((c.spool_dir / "metrics").iterdir())
        out = run_collector(c.config)
        assert out.returncode == 1
        assert out.stderr.strip().splitlines() == [
            f"error: another collector uses the spool {c.spool_dir} (it holds {c.spool_dir / 'lock'}); "
            f"stop it, or give this one another spool_dir"]
        assert sorted((c.spool_dir / "metrics").iterdir()) == metrics_files
        assert c.metrics()["ipr_collector_datagrams_accepted_total"] == 1
        s.sendto(make_datagram(REC, 2), c.address())
        c.wait_metric("ipr_collector_datagrams_accepted_total", 2)


# -- steering ----------------------------------------------------------------

def test_datagrams_queued_before_the_steering_program_go_to_the_worker_it_picks():
    """Until the program is attached, the kernel places datagrams by their
    source; those the master takes off the sockets at start-up are handed to
    the worker the program picks, which is the socket the kernel picks
    once the program is attached."""
    count, port = 3, free_port()
    socks = []
    for _ in range(count):  # a group as open_group binds it, the program not yet attached
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(("127.0.0.1", port))
        socks.append(s)
    instances = [0x10000 * i + i for i in range(60)]  # low words 0..59; high words that a wrong rule would use
    for inst in instances:
        with udp() as sender:  # a fresh source port each time: the kernel's hash spreads them
            sender.sendto(make_datagram(REC, 1, instance_id=inst), ("127.0.0.1", port))
    with udp() as sender:
        sender.sendto(b"", ("127.0.0.1", port))  # too short for the program's load: the first socket
    daemon.attach_steering(socks[0], count)
    queued = daemon.take_queued(socks, 9001)
    assert sorted(len(d) for q in queued for d, _a in q) == [0] + [len(make_datagram(REC, 1))] * 60
    for index, datagrams in enumerate(queued):
        for data, _addr in datagrams:
            low_word = int.from_bytes(data[24:28], "big") if data else 0
            assert low_word % count == index
    # The rule is the kernel's: sent now, each datagram lands on that socket.
    for inst in instances:
        with udp() as sender:
            sender.sendto(make_datagram(REC, 2, instance_id=inst), ("127.0.0.1", port))
    landed = {}
    for index, s in enumerate(socks):
        s.settimeout(0.5)
        try:
            while True:
                data = s.recv(9001)
                landed[int.from_bytes(data[20:28], "big")] = index
                s.settimeout(0.05)
        except (TimeoutError, socket.timeout):
            pass
        s.close()
    assert landed == {inst: daemon.steered_index(make_datagram(REC, 2, instance_id=inst), 300, count)
                      for inst in instances}
    assert set(landed.values()) == set(range(count))


FLOOD = """
import os, socket, sys
sys.path.insert(0, sys.argv[1])
from ipr_agent import wire
from tests.collector_helpers import make_datagram
port, stop = int(sys.argv[2]), sys.argv[3]
grams = [make_datagram([wire.Record(client="10.0.0.%d" % i, server="192.0.2.1", response_bytes=1)],
                       1, instance_id=i) for i in range(1, 33)]
socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(8)]
n = 0
while not os.path.exists(stop):
    try:
        socks[n % 8].sendto(grams[n % 32], ("127.0.0.1", port))
    except OSError:
        pass
    n += 1
"""


def test_datagrams_sent_while_the_collector_starts_reach_the_worker_of_their_instance(tmp_path):
    """A sender floods the port while the collector binds it: every row a
    worker writes belongs to an instance steered to that worker (the client
    address names the instance)."""
    processes = 2
    for attempt in range(3):
        port, stop = free_port(), tmp_path / f"stop-{attempt}"
        flood = subprocess.Popen([sys.executable, "-c", FLOOD, str(ROOT), str(port), str(stop)])
        try:
            c = CollectorProcess(tmp_path / str(attempt), processes=processes, listen=f"127.0.0.1:{port}")
            with c:
                c.wait_metric("ipr_collector_datagrams_accepted_total", 32)
                stop.touch()
                flood.wait(10)
        finally:
            stop.touch()
            flood.wait(10)
        for path in (c.spool_dir / "incoming").glob("*.seg"):
            worker = int(path.name.split("-w")[1].split("-")[0])
            instances = {int(d["client"].rsplit(".", 1)[1]) for d in spool.row_dicts(spool.read_segment(path))}
            assert {i % processes for i in instances} <= {worker}, (path.name, sorted(instances))


# -- dead workers, a dead master ---------------------------------------------

def test_a_killed_workers_open_segment_is_recovered_before_its_successor_starts(tmp_path):
    with CollectorProcess(tmp_path, segment_seconds=3600.0, flush_interval=0.1) as c:
        s = udp()
        s.sendto(make_datagram(REC, 1), c.address())
        c.wait_metric("ipr_collector_spool_rows_total", 1)
        (segment,) = (c.spool_dir / "open").iterdir()
        os.kill(int(segment.name.split("-")[-3]), signal.SIGKILL)
        c.wait_log(f"recovered: {segment.name}: recovered 1 rows", timeout=10)
        assert (c.spool_dir / "incoming" / segment.name).exists() and not segment.exists()
        s.sendto(make_datagram(REC, 2), c.address())  # the successor takes the socket
        wait_until(lambda: total_bytes(c) == 14, what="the successor's row")
        assert c.stop() == 0
    assert total_bytes(c) == 14


def test_killing_the_master_stops_its_children_after_their_flush_and_a_restart_works(tmp_path):
    c = CollectorProcess(tmp_path, processes=2, segment_seconds=3600.0, flush_interval=1.0)
    sent = 0
    with c:
        s = udp()
        for seq in range(1, 41):
            s.sendto(make_datagram(REC, seq, instance_id=seq % 4), c.address())
            sent += 1
        c.wait_metric("ipr_collector_datagrams_accepted_total", 40)
        kids = children(c.proc.pid)
        assert len(kids) == 3  # two workers and the metrics process
        for seq in range(41, 61):  # still in the workers' memory when the master dies
            s.sendto(make_datagram(REC, seq, instance_id=seq % 4), c.address())
            sent += 1
        os.kill(c.proc.pid, signal.SIGKILL)
        c.proc.wait(10)
        wait_until(lambda: not any(alive(k) for k in kids), what="the orphans to exit")
        assert not list((c.spool_dir / "open").iterdir()), "each orphan closed its segment"
    with c:  # the lock is free
        assert c.metrics()["ipr_collector_datagrams_received_total"] == 0
    assert total_bytes(c) == 7 * sent


# -- start-up failures -------------------------------------------------------

def assert_one_error_line(out, code, *parts):
    assert out.returncode == code, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    for part in parts:
        assert part in lines[0]


def test_a_spool_under_a_regular_file_is_one_clear_error_at_check_and_start(tmp_path):
    c = CollectorProcess(tmp_path)
    (tmp_path / "afile").write_text("not a directory\n")
    c.config.write_text(c.config.read_text().replace('spool_dir = "spool"', 'spool_dir = "afile/spool"'))
    assert_one_error_line(run_collector(c.config, "--check"), 2, str(tmp_path / "afile"), "not a directory")
    assert_one_error_line(run_collector(c.config), 1, str(tmp_path / "afile" / "spool"), "Not a directory",
                          "set spool_dir in")


@pytest.mark.skipif(not shutil.which("unshare"), reason="needs unshare(1) to mount the spool read-only")
def test_a_read_only_spool_is_one_clear_error_at_check_and_start(tmp_path):
    c = CollectorProcess(tmp_path)
    spool.make_dirs(c.spool_dir)
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode:
        pytest.skip("cannot make a mount namespace here")
    read_only = ["unshare", "-m", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"', str(c.spool_dir)]
    assert_one_error_line(run_collector(c.config, "--check", wrap=read_only), 2,
                          str(c.spool_dir), "is not writable", "set spool_dir in")
    assert_one_error_line(run_collector(c.config, wrap=read_only), 1,
                          str(c.spool_dir), "Read-only file system", "set spool_dir in")


def test_an_address_that_cannot_be_bound_is_one_clear_error_at_check_and_start(tmp_path):
    c = CollectorProcess(tmp_path, listen="192.0.2.1:9477")  # TEST-NET: no local interface has it
    assert_one_error_line(run_collector(c.config, "--check"), 2, "listen: cannot bind [192.0.2.1]:9477")
    assert_one_error_line(run_collector(c.config), 1, "cannot listen on [192.0.2.1]:9477",
                          "change listen in the configuration")


def test_check_passes_a_usable_configuration_and_warns_about_an_address_in_use(tmp_path):
    with CollectorProcess(tmp_path, listen="127.0.0.1:0") as c:
        c.config.write_text(c.config.read_text().replace("127.0.0.1:0", f"127.0.0.1:{c.port}"))
        out = run_collector(c.config, "--check")
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("ok: 1 key(s)")
        assert f"warning: listen: cannot bind [127.0.0.1]:{c.port}" in out.stderr


# -- reloads -----------------------------------------------------------------

def test_one_reload_counts_once_whatever_the_number_of_workers(tmp_path):
    with CollectorProcess(tmp_path, processes=3) as c:
        for n in (1, 2):
            c.signal(signal.SIGHUP)
            for worker in range(3):
                c.wait_log(f"worker {worker} reloaded", count=n)
            m = c.metrics()
            assert m['ipr_collector_reloads_total{result="ok"}'] == n
            assert m['ipr_collector_reloads_total{result="failed"}'] == 0


# -- saturation --------------------------------------------------------------

def huge_records(n=2):
    return [wire.Record(client="192.0.2.5", server="192.0.2.1", status=200, requests=wire.U32,
                        response_bytes=2**64 - 1, flags=wire.F_BYTES_SENT | wire.F_DELIVERY_RATE,
                        wire_bytes=2**63, delivery_rate=2**64 - 1) for _ in range(n)]


def test_spool_sums_saturate_at_each_fields_maximum_instead_of_wrapping():
    rows = spool.aggregate(b"".join(r.pack() for r in huge_records()), np.full(2, 7, np.uint32))
    assert len(rows) == 1
    assert rows["status"][0].tolist() == [0, 2**32 - 1, 0, 0, 0, 0]  # a u32 field
    assert int(rows["requests"][0]) == 2 * wire.U32  # a u64 field holds it exactly
    for field in ("response_bytes", "wire_bytes", "rate_sum"):
        assert int(rows[field][0]) == 2**64 - 1, field
    merged = spool.merge(np.concatenate([rows, rows, rows]))
    assert len(merged) == 1
    assert merged["status"][0].tolist() == [0, 2**32 - 1, 0, 0, 0, 0]
    assert int(merged["requests"][0]) == 6 * wire.U32
    assert int(merged["response_bytes"][0]) == 2**64 - 1
    assert int(merged["records"][0]) == 6
    # Below the maximum, sums stay exact.
    small = spool.aggregate(b"".join(r.pack() for r in huge_records(1)), np.full(1, 7, np.uint32))
    assert int(small["response_bytes"][0]) == 2**64 - 1 and int(small["wire_bytes"][0]) == 2**63
    assert int(spool.merge(np.concatenate([small, small]))["wire_bytes"][0]) == 2**64 - 1
    assert int(spool.merge(np.concatenate([small[:1].copy() for _ in range(3)]))["status"][0][1]) == 2**32 - 1


def test_a_stop_takes_the_queue_but_does_not_wait_for_a_flood_to_end(tmp_path):
    from collector import config
    (tmp_path / "c.toml").write_text('spool_dir = "spool"\nkey_file = "keys.json"\n')
    cfg = config.load_config(tmp_path / "c.toml")
    spool.make_dirs(cfg.spool_dir)
    sock = udp()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
    sock.bind(("127.0.0.1", 0))
    worker = daemon.Worker(cfg, sock, 0, daemon.Metrics())
    sender = udp()
    for _ in range(3000):
        sender.sendto(b"x", sock.getsockname())
    # With no time left, it stops at its first look at the clock ...
    assert worker.drain(seconds=0) == 1024
    # ... otherwise it takes the rest, until the queue is empty.
    assert worker.drain() == 3000 - 1024
    assert worker.rejects["garbage"] == 3000
    sock.close()
    sender.close()
