"""How sender keys reach a running collector: it starts with no key file,
watches the file, and loads each new one by itself, with no signal."""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from collector import config
from ipr_agent import wire
from tests.collector_helpers import ROOT, SECRET, CollectorProcess, key, make_datagram, write_keys

REC = [wire.Record(client="192.0.2.5", server="192.0.2.1", response_bytes=1)]
OTHER = bytes(range(32))
UNKNOWN = 'ipr_collector_datagrams_rejected_total{reason="unknown_key"}'
RELOADS_OK = 'ipr_collector_reloads_total{result="ok"}'
RELOADS_FAILED = 'ipr_collector_reloads_total{result="failed"}'
DEADLINE = 15  # seconds; a new key file is in use within 2


class Sender:
    """Datagrams from one sender instance, with rising sequence numbers."""

    def __init__(self, collector, key_id=1, secret=OTHER, tag_len=16, sender_id=None):
        self.collector, self.key_id, self.secret, self.tag_len = collector, key_id, secret, tag_len
        # A key file entry without sender_ids speaks for the sender id equal to its key id.
        self.sender_id = key_id if sender_id is None else sender_id
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.instance = int.from_bytes(os.urandom(4), "big")
        self.seq = 0

    def send(self):
        self.seq += 1
        self.sock.sendto(make_datagram(REC, self.seq, key_id=self.key_id, secret=self.secret,
                                       sender_id=self.sender_id, instance_id=self.instance,
                                       tag_len=self.tag_len),
                         self.collector.address())

    def until(self, metric, at_least):
        """Send one datagram after another until ``metric`` reaches ``at_least``."""
        deadline = time.monotonic() + DEADLINE
        while True:
            self.send()
            if self.collector.metrics().get(metric, 0) >= at_least:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{metric} < {at_least} after {DEADLINE} s\n{self.collector.log.read_text()}")
            time.sleep(0.05)


def without_key_file(tmp_path, **settings):
    c = CollectorProcess(tmp_path, flush_interval=0.1, **settings)
    c.key_file.unlink()
    return c


def log_lines(c, level):
    return [line for line in c.log.read_text().splitlines() if f" {level} " in line]


def replace_file(path, text):
    """As the admin writes the key file: beside it, then renamed over it."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(text)
    tmp.chmod(0o600)
    os.rename(tmp, path)


@pytest.mark.parametrize("empty, what", [(False, "does not exist"), (True, "holds no keys")])
def test_with_no_keys_it_starts_warns_once_and_rejects_every_datagram_as_unknown_key(tmp_path, empty, what):
    c = without_key_file(tmp_path)
    if empty:
        write_keys(c.key_file, [])
    with c:
        Sender(c).until(UNKNOWN, 3)
        assert c.metrics()["ipr_collector_datagrams_accepted_total"] == 0
        assert c.stop() == 0
    [warning] = log_lines(c, "WARNING")
    assert f"no sender keys: {c.key_file} {what}, so every datagram is rejected as unknown_key" in warning
    assert "add a sender key in the admin (agents › sender keys)" in warning.lower()


def test_a_missing_key_file_passes_the_check_as_0_keys_but_a_malformed_one_stops_start_up(tmp_path):
    c = without_key_file(tmp_path)
    check = [sys.executable, "-m", "collector", "-c", str(c.config), "--check"]
    out = subprocess.run(check, capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0
    assert out.stdout.startswith("ok: 0 key(s), listening on")
    assert out.stderr == (f"warning: no sender keys: {c.key_file} does not exist, so every datagram is "
                          "rejected as unknown_key. Add a sender key in the admin (Agents › Sender keys), "
                          "which writes this file; the collector loads it within 2 seconds\n")
    c.key_file.write_text('{"keys": [')
    c.key_file.chmod(0o600)
    for argv in (check, check[:-1]):
        out = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=30)
        assert out.returncode == 2
        assert out.stderr.splitlines() == [f"error: {c.key_file}: Expecting value: line 1 column 11 (char 10)"]


def test_a_key_file_written_after_start_is_loaded_with_no_signal(tmp_path):
    with without_key_file(tmp_path) as c:
        sender = Sender(c, key_id=2)
        sender.until(UNKNOWN, 1)
        write_keys(c.key_file, [key(1), key(2, secret=OTHER)])
        sender.until("ipr_collector_datagrams_accepted_total", 1)
        assert f"the key file {c.key_file} changed: reloaded, 2 key(s) loaded" in c.log.read_text()
        assert c.metrics()[RELOADS_OK] == 1


def test_a_bad_key_file_written_over_a_good_one_is_tried_once_and_the_old_keys_stay(tmp_path):
    with CollectorProcess(tmp_path, keys=[key(2, secret=OTHER)], flush_interval=0.1) as c:
        sender = Sender(c, key_id=2)
        sender.until("ipr_collector_datagrams_accepted_total", 1)
        replace_file(c.key_file, '{"keys": [{"id": 2, "secret": "not hex", "networks": []}]}')
        c.wait_metric(RELOADS_FAILED, 1)
        [error] = log_lines(c, "ERROR")
        assert (f"the key file {c.key_file} changed: reload failed, keeping the running configuration "
                f"and keys: {c.key_file}: keys[0]: secret must be hex") in error
        accepted = c.metrics()["ipr_collector_datagrams_accepted_total"]
        sender.until("ipr_collector_datagrams_accepted_total", accepted + 1)
        time.sleep(2)  # room for more looks at the file, which must not try it again
        assert c.metrics()[RELOADS_FAILED] == 1
        write_keys(c.key_file, [key(1), key(2, secret=OTHER)])
        c.wait_metric(RELOADS_OK, 1)
        assert len(log_lines(c, "ERROR")) == 1


def test_a_deleted_key_file_leaves_no_keys_as_a_restart_would(tmp_path):
    with CollectorProcess(tmp_path, keys=[key(2, secret=OTHER)], flush_interval=0.1) as c:
        sender = Sender(c, key_id=2)
        sender.until("ipr_collector_datagrams_accepted_total", 1)
        c.key_file.unlink()
        sender.until(UNKNOWN, 1)
        assert f"no sender keys: {c.key_file} does not exist" in log_lines(c, "WARNING")[-1]


def test_sighup_reloads_the_settings_and_counts_one_reload_for_all_workers(tmp_path):
    # The settings are not watched: only SIGHUP applies them.
    with CollectorProcess(tmp_path, processes=2, flush_interval=0.1) as c:
        short, full = Sender(c, 1, SECRET, tag_len=16), Sender(c, 1, SECRET, tag_len=24)
        short.until("ipr_collector_datagrams_accepted_total", 1)
        c.config.write_text(c.config.read_text() + "min_tag_len = 24\n")
        c.signal(signal.SIGHUP)
        c.wait_log("worker 0 reloaded")
        c.wait_log("worker 1 reloaded")
        assert c.metrics()[RELOADS_OK] == 1
        assert "SIGHUP: reloaded, 1 key(s) loaded" in c.log.read_text()
        short.until('ipr_collector_datagrams_rejected_total{reason="short_tag"}', 1)
        accepted = c.metrics()["ipr_collector_datagrams_accepted_total"]
        full.until("ipr_collector_datagrams_accepted_total", accepted + 1)


# Keys bound to senders

def test_a_datagram_signed_with_one_key_for_another_keys_sender_is_rejected(tmp_path):
    keys = [{**key(1), "sender_ids": [101]}, {**key(2, secret=OTHER), "sender_ids": [202]}]
    with CollectorProcess(tmp_path, keys=keys, flush_interval=0.1) as c:
        Sender(c, key_id=2, secret=OTHER, sender_id=101).until(
            'ipr_collector_datagrams_rejected_total{reason="sender_not_allowed"}', 1)
        Sender(c, key_id=1, secret=SECRET, sender_id=101).until("ipr_collector_datagrams_accepted_total", 1)
        m = c.metrics()
        assert m['ipr_collector_sender_datagrams_total{sender="101"}'] == m["ipr_collector_datagrams_accepted_total"]


def test_a_key_file_entry_without_sender_ids_speaks_for_its_key_id_only(tmp_path):
    path = tmp_path / "keys.json"
    old_entry = {name: value for name, value in key(7).items() if name != "sender_ids"}
    write_keys(path, [old_entry, {**key(8), "sender_ids": [1, 4294967295]}])
    path.chmod(0o600)
    keys = config.load_keys(path)
    assert (keys[7].sender_ids, keys[8].sender_ids) == ({7}, {1, 4294967295})


@pytest.mark.parametrize("value", [[], [-1], [2**32], [True], ["101"], 101, None])
def test_a_key_file_with_bad_sender_ids_is_refused_naming_the_file_and_the_entry(tmp_path, value):
    path = tmp_path / "keys.json"
    write_keys(path, [key(7), {**key(8), "sender_ids": value}])
    path.chmod(0o600)
    with pytest.raises(config.ConfigError) as err:
        config.load_keys(path)
    assert str(err.value) == (f"{path}: keys[1]: sender_ids must be a non-empty list of integers "
                              "in 0..4294967295")


# The key file's mode

@pytest.mark.parametrize("mode", [0o644, 0o666, 0o604, 0o660, 0o620])
def test_a_key_file_others_may_read_or_the_group_may_write_stops_start_up_with_one_line(tmp_path, mode):
    c = CollectorProcess(tmp_path)
    c.key_file.chmod(mode)
    for argv in (["--check"], []):
        out = subprocess.run([sys.executable, "-m", "collector", "-c", str(c.config), *argv],
                             capture_output=True, text=True, cwd=ROOT, timeout=30)
        assert out.returncode == 2
        assert out.stderr.splitlines() == [
            f"error: {c.key_file}: mode {mode:04o} lets other users read or change the sender secrets; "
            f"run: chmod 600 {c.key_file} (or chmod 640 {c.key_file} with the collector's group)"]


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o400, 0o440])
def test_a_key_file_only_its_owner_and_group_may_read_is_accepted(tmp_path, mode):
    c = CollectorProcess(tmp_path)
    c.key_file.chmod(mode)
    out = subprocess.run([sys.executable, "-m", "collector", "-c", str(c.config), "--check"],
                         capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert (out.returncode, out.stdout.split(",")[0]) == (0, "ok: 1 key(s)")


def test_a_readable_key_file_written_over_a_good_one_is_refused_and_the_old_keys_stay(tmp_path):
    with CollectorProcess(tmp_path, keys=[key(2, secret=OTHER)], flush_interval=0.1) as c:
        old = Sender(c, key_id=2)
        old.until("ipr_collector_datagrams_accepted_total", 1)
        tmp = c.key_file.with_name("new.json")
        tmp.write_text(config.dump_keys([key(2, secret=OTHER), key(3, secret=OTHER)]))
        tmp.chmod(0o644)
        os.rename(tmp, c.key_file)
        c.wait_metric(RELOADS_FAILED, 1)
        assert f"keeping the running configuration and keys: {c.key_file}: mode 0644" in log_lines(c, "ERROR")[0]
        Sender(c, key_id=3).until(UNKNOWN, 1)
        accepted = c.metrics()["ipr_collector_datagrams_accepted_total"]
        old.until("ipr_collector_datagrams_accepted_total", accepted + 1)


def test_the_chmod_a_refusal_asks_for_is_taken_without_a_signal(tmp_path):
    with CollectorProcess(tmp_path, keys=[key(2, secret=OTHER)], flush_interval=0.1) as c:
        tmp = c.key_file.with_name("new.json")
        tmp.write_text(config.dump_keys([key(2, secret=OTHER), key(3, secret=OTHER)]))
        tmp.chmod(0o644)
        os.rename(tmp, c.key_file)
        c.wait_metric(RELOADS_FAILED, 1)
        Sender(c, key_id=3).until(UNKNOWN, 1)
        c.key_file.chmod(0o600)  # changes neither the inode, the size nor the mtime
        Sender(c, key_id=3).until("ipr_collector_datagrams_accepted_total", 1)
