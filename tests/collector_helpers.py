"""Run the real collector daemon (``python -m collector``) in tests."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from collector import spool
from ipr_agent import wire

ROOT = Path(__file__).resolve().parents[1]
SECRET = bytes.fromhex("7f3a9c1e55d0b2a4c6e8f01234567890abcdef0123456789fedcba9876543210")


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_keys(path: Path, keys: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # the collector refuses a key file others can read
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(json.dumps({"keys": keys}))
    os.rename(tmp, path)  # a reload never sees a half-written file


def key(id=1, secret=SECRET, enabled=True, networks=("127.0.0.0/8", "::1/128"), sender_ids=None) -> dict:
    """A key file entry; without ``sender_ids`` it speaks for the sender id equal to its key id."""
    entry = {"id": id, "secret": secret.hex(), "enabled": enabled, "networks": list(networks)}
    if sender_ids is not None:
        entry["sender_ids"] = list(sender_ids)
    return entry


class CollectorProcess:
    """A collector with its own config, keys and spool under ``workdir``."""

    def __init__(self, workdir: Path, keys: list[dict] | None = None, processes: int = 1,
                 listen: str = "[::]:0", **settings):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.spool_dir = self.workdir / "spool"
        self.key_file = self.workdir / "keys.json"
        self.metrics_port = free_port()
        write_keys(self.key_file, keys if keys is not None else [key()])
        lines = [f'listen = ["{listen}"]', f"processes = {processes}",
                 'spool_dir = "spool"', 'key_file = "keys.json"',
                 f'metrics_listen = "127.0.0.1:{self.metrics_port}"']
        lines += [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
        self.config = self.workdir / "collector.toml"
        self.config.write_text("\n".join(lines) + "\n")
        self.proc = None
        self.port = None
        self.log = self.workdir / "collector.log"

    def start(self) -> CollectorProcess:
        self.logf = open(self.log, "ab")
        start_at = self.logf.tell()  # a restart appends to the same log
        self.proc = subprocess.Popen([sys.executable, "-m", "collector", "-c", str(self.config)],
                                     cwd=ROOT, stdout=self.logf, stderr=self.logf,
                                     start_new_session=True)  # so kill() reaches the workers too
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            m = re.search(rb"listening on \[.*?\]:(\d+)", self.log.read_bytes()[start_at:])
            if m and self._metrics_up():
                self.port = int(m.group(1))
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"collector exited: {self.log.read_text()}")
            time.sleep(0.05)
        raise RuntimeError(f"collector did not start: {self.log.read_text()}")

    def _metrics_up(self) -> bool:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=1).read()
            return True
        except OSError:
            return False

    def address(self, family: str = "v4") -> tuple[str, int]:
        return ("127.0.0.1" if family == "v4" else "::1", self.port)

    def signal(self, sig) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self.logf.close()
        return code

    def kill(self) -> None:
        """SIGKILL the master and its workers (a crash, or cleanup)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)

    def metrics(self) -> dict[str, float]:
        """Counters as {'name{labels}': value}."""
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def wait_metric(self, name: str, at_least: float, timeout: float = 15) -> float:
        deadline = time.monotonic() + timeout
        value = 0.0
        while time.monotonic() < deadline:
            value = self.metrics().get(name, 0.0)
            if value >= at_least:
                return value
            time.sleep(0.1)
        raise AssertionError(f"{name} reached {value}, expected >= {at_least}\n{self.log.read_text()}")

    def wait_log(self, text: str, count: int = 1, timeout: float = 15) -> None:
        """Wait until ``text`` is in the log ``count`` times, e.g. a worker's reload:
        the reload counter goes up when the master has checked the files, just
        before the workers take them."""
        deadline = time.monotonic() + timeout
        while self.log.read_text().count(text) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not {count} time(s) in the log\n{self.log.read_text()}")
            time.sleep(0.05)

    def rows(self):
        """Every spool row written so far (closed and open segments)."""
        arrays = [spool.read_segment(p) for sub in ("incoming", "open")
                  for p in sorted((self.spool_dir / sub).glob("*.seg"))]
        import numpy as np
        return np.concatenate(arrays) if arrays else np.zeros(0, spool.ROW)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        try:
            self.stop()
        finally:
            self.kill()


def make_datagram(records: list[wire.Record], seq: int, key_id: int = 1, secret: bytes = SECRET,
                  sender_id: int | None = None, instance_id: int = 1, time_ms: int | None = None,
                  tag_len: int = 16) -> bytes:
    """A signed datagram; the sender id is the key id unless given."""
    sender_id = key_id if sender_id is None else sender_id
    header = wire.Header(key_id, sender_id, instance_id, seq,
                         int(time.time() * 1000) if time_ms is None else time_ms, tag_len)
    return wire.encode(header, [r.pack() for r in records], secret)
