"""Helpers for the agent's tests: a UDP receiver and a real gunicorn."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from ipr_agent import wire

ROOT = Path(__file__).resolve().parents[1]
GUNICORN = ROOT / ".venv" / "bin" / "gunicorn"
SECRET = bytes.fromhex("5be0c1d2e3f405162738495a6b7c8d9eafb0c1d2e3f405162738495a6b7c8d9e")
DEADLINE = 20.0  # seconds to wait for something that must happen; never a measurement


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """A UDP socket standing in for the collector; keeps every datagram it got."""

    def __init__(self, host: str = "127.0.0.1", secret: bytes = SECRET):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        # Room for everything a test sends, so the kernel drops nothing.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]
        self.secret = secret
        self.raw: list[bytes] = []
        self.datagrams: list[wire.Datagram] = []

    def drain(self) -> int:
        """Take what has arrived (without waiting); datagrams that fail to verify raise."""
        self.sock.setblocking(False)
        n = 0
        while True:
            try:
                data = self.sock.recv(70000)
            except BlockingIOError:
                return n
            self.raw.append(data)
            self.datagrams.append(wire.decode(data, self.secret))
            n += 1

    def wait_for(self, done, what: str = "datagrams"):
        """Poll until ``done(self)`` is true, up to DEADLINE seconds."""
        deadline = time.monotonic() + DEADLINE
        while True:
            self.drain()
            if done(self):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; got {len(self.datagrams)} datagrams")
            self.sock.settimeout(0.05)
            try:  # sleep until something arrives, or a short while
                data = self.sock.recv(70000)
            except (TimeoutError, BlockingIOError):
                continue
            self.raw.append(data)
            self.datagrams.append(wire.decode(data, self.secret))

    def records(self) -> list[wire.Record]:
        return [r for d in self.datagrams for r in d.records]

    def records_with_header(self) -> list[tuple[wire.Header, wire.Record]]:
        return [(d.header, r) for d in self.datagrams for r in d.records]

    def close(self):
        self.sock.close()


class Gunicorn:
    """A real gunicorn serving tests/wsgi_app.py, its agent sending to ``collector_port``."""

    def __init__(self, workdir: Path, collector_port: int, *, workers: int = 2, threads: int = 4,
                 flush_interval: float = 0.1, extra_env: dict | None = None):
        self.port = free_port()
        self.log = Path(workdir) / f"gunicorn-{self.port}.log"
        self.env = {**os.environ,
                    "IPR_COLLECTOR": f"127.0.0.1:{collector_port}", "IPR_KEY_ID": "7",
                    "IPR_KEY_SECRET": SECRET.hex(), "IPR_SENDER_ID": "4242",
                    "IPR_FLUSH_INTERVAL": str(flush_interval), "PYTHONPATH": str(ROOT),
                    **(extra_env or {})}
        self.args = [str(GUNICORN), "--worker-class", "gthread", "--workers", str(workers),
                     "--threads", str(threads), "--keep-alive", "120", "--preload",
                     "--bind", f"127.0.0.1:{self.port}", "--pythonpath", str(ROOT / "tests"),
                     "--log-level", "warning", "wsgi_app:app"]
        self.proc = None

    def start(self) -> Gunicorn:
        self.logf = open(self.log, "wb")
        self.proc = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=self.logf,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log.read_text()}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ready", timeout=2).read()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"gunicorn did not start: {self.log.read_text()}")

    def stop(self) -> int | None:
        """SIGTERM (graceful: workers exit through sys.exit, so atexit runs) and wait."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: only what we started
            return self.proc.wait(DEADLINE)
        finally:
            self.logf.close()


class Uwsgi(Gunicorn):
    """A real uWSGI serving the same app over its HTTP/1.1 socket (keep-alive).

    The master imports the app, then forks the worker in C, without
    Python's fork hooks: the agent must notice by its pid check.
    """

    def __init__(self, workdir: Path, collector_port: int, **kw):
        super().__init__(workdir, collector_port, **kw)
        self.log = Path(workdir) / f"uwsgi-{self.port}.log"
        self.args = [str(ROOT / ".venv" / "bin" / "uwsgi"), "--http11-socket", f"127.0.0.1:{self.port}",
                     "--master", "--processes", "1", "--enable-threads", "--die-on-term",
                     "--pythonpath", str(ROOT / "tests"), "--pythonpath", str(ROOT),
                     "--module", "wsgi_app:app", "--disable-logging"]
