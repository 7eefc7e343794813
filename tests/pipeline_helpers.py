"""Helpers for the end-to-end tests of tests/test_pipeline.py: a real Celery
worker, a TCP proxy that plays a database outage, HTTP connections that
count what they received, and sums over spool rows and archive tables."""
from __future__ import annotations

import http.client
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.db import connection

from collector import spool
from ipr_agent.wsgi import read_tcp_info
from ipr.traffic import tables

ROOT = Path(__file__).resolve().parents[1]
DEADLINE = 60.0  # seconds to wait for something that must happen; never a measurement


def wait_until(done, what: str, deadline: float = DEADLINE, explain=lambda: ""):
    """Poll ``done()`` until it returns something true; fail saying what was awaited."""
    end = time.monotonic() + deadline
    while True:
        value = done()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}\n{explain()}")
        time.sleep(0.05)


# -- the database ------------------------------------------------------------

def database_address() -> tuple[str, int]:
    s = connection.settings_dict
    return s["HOST"] or "127.0.0.1", int(s["PORT"] or 5432)


def database_url(address: tuple[str, int] | None = None) -> str:
    """The test database's URL, optionally through another host and port."""
    s = connection.settings_dict
    host, port = address or database_address()
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{host}:{port}/{s['NAME']}"


def _quiet_port() -> int:
    """A free port below the ephemeral range, so that while the proxy is down
    no outgoing connection can take it and the proxy can bind it again."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for port in random.sample(range(max(1025, low - 8000), low), 200):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


class TcpProxy:
    """Forwards 127.0.0.1:port to the database. ``stop()`` is the database
    going down: the port refuses connections and open ones are cut."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.port = _quiet_port()
        self.listener = None
        self.sockets: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    @property
    def up(self) -> bool:
        return self.listener is not None

    def start(self) -> TcpProxy:
        self.stopping.clear()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(64)
        self.listener.settimeout(0.1)  # so the accept loop sees stop()
        self._spawn(self._accept, self.listener)
        return self

    def stop(self) -> None:
        if self.listener is None:
            return
        self.stopping.set()
        with self.lock:
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        for t in self.threads:
            t.join(DEADLINE)
        with self.lock:
            for s in self.sockets:
                s.close()
            self.sockets, self.threads = [], []
        self.listener.close()
        self.listener = None

    def _spawn(self, target, *args):
        t = threading.Thread(target=target, args=args, daemon=True)
        with self.lock:
            self.threads.append(t)
        t.start()

    def _accept(self, listener):
        while not self.stopping.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            client.settimeout(None)
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets += [client, upstream]
            self._spawn(self._pump, client, upstream)
            self._spawn(self._pump, upstream, client)

    @staticmethod
    def _pump(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):  # one side gone: the connection is over
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


# -- the Celery worker -------------------------------------------------------

class CeleryWorker:
    """A real ``celery -A cron worker`` on a queue of its own, so that no other
    worker on the same Redis takes its tasks."""

    def __init__(self, workdir: Path, *, database_url: str, spool_dir: Path):
        self.queue = f"ingest.test-{uuid.uuid4().hex[:12]}"
        self.log = Path(workdir) / f"worker-{self.queue}.log"
        data_dir = Path(workdir) / "worker-data"
        data_dir.mkdir(exist_ok=True)
        self.env = {**os.environ, "DATABASE_URL": database_url, "IPR_SPOOL_DIR": str(spool_dir),
                    "IPR_DATA_DIR": str(data_dir), "IPR_INGEST_QUEUES": self.queue,
                    "DJANGO_SETTINGS_MODULE": "ipr.settings",
                    # the loopback clients stand for routed ones (tests/conftest.py)
                    "IPR_ROUTE_SPECIAL": "127.0.0.0/8"}
        self.args = [sys.executable, "-m", "celery", "-A", "cron", "worker", "--pool=solo",
                     "-Q", self.queue, "-n", f"{self.queue}@%h", "--loglevel=INFO",
                     "--without-mingle", "--without-gossip", "--without-heartbeat"]
        self.proc = None

    def start(self) -> CeleryWorker:
        self.logf = open(self.log, "wb")
        self.proc = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=self.logf,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def send(self, task: str, **kwargs) -> str:
        """Send a task by name through the broker to this worker; the task's id."""
        from cron.celery import app
        return app.send_task(task, kwargs=kwargs, queue=self.queue).id

    def ingest(self) -> str:
        return self.send("ipr.ingest")

    def outcome(self, task_id: str, task: str = "ipr.ingest") -> str:
        """Wait until the worker has run the task: the line that says how it ended."""
        mark = f"{task}[{task_id}]"

        def ended():
            if self.proc.poll() is not None:
                raise AssertionError(f"the worker exited ({self.proc.returncode}):\n{self.log_text()}")
            for line in self.log_text().splitlines():
                if mark in line and (" succeeded in " in line or " raised " in line):
                    return line
            return None
        return wait_until(ended, f"task {mark} to end", explain=self.log_text)

    def run(self, task: str, **kwargs) -> str:
        line = self.outcome(self.send(task, **kwargs), task)
        assert " succeeded in " in line, f"{line}\n{self.log_text()}"
        return line

    def run_ingest(self) -> str:
        """The ingest, then the hourly archive of every pending hour (the open
        one too, which the beat would archive once it is closed)."""
        line = self.run("ipr.ingest")
        self.run("ipr.archive", everything=True)
        return line

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # warm shutdown: ends the task at hand
            try:
                self.proc.wait(DEADLINE)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: only what we started
                self.proc.wait(DEADLINE)
        self.logf.close()
        self._forget_queue()

    def _forget_queue(self):
        import redis
        r = redis.Redis.from_url(os.environ["REDIS_URL"])
        r.delete(self.queue, f"_kombu.binding.{self.queue}", f"_kombu.binding_permanent.{self.queue}")
        r.close()


# -- HTTP clients that count what they received ------------------------------

@dataclass
class Fetched:
    traffic_type: str
    status: int
    body: int            # body bytes read
    received: int        # bytes the client's socket received for this response
    new_connection: bool


class Connection:
    """One HTTP/1.1 connection that reads its own socket's TCP_INFO, so each
    response's bytes on the wire are known from the client's side."""

    def __init__(self, port: int):
        self.http = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE)
        self.http.connect()
        self.sock = self.http.sock
        # A duplicate keeps the socket readable after http.client closes it.
        self.tcp = self.sock.dup()
        self.received = 0
        self.fetched: list[Fetched] = []

    def get(self, path: str, traffic_type: str, close: bool = False) -> Fetched:
        headers = {"X-Tag": traffic_type}  # tests/wsgi_app.py makes it the traffic type
        if close:
            headers["Connection"] = "close"
        self.http.request("GET", path, headers=headers)
        assert self.http.sock is self.sock, "http.client reconnected: not one connection any more"
        response = self.http.getresponse()
        body = response.read()
        if close:
            # Wait for the server's FIN, so the counter surely holds it: the
            # FIN takes one sequence number, and that is not a response byte.
            self.tcp.settimeout(DEADLINE)
            assert self.tcp.recv(1) == b""
            total = read_tcp_info(self.tcp)["bytes_received"] - 1
        else:
            total = read_tcp_info(self.tcp)["bytes_received"]
        got = Fetched(traffic_type, response.status, len(body), total - self.received, not self.fetched)
        self.received = total
        self.fetched.append(got)
        return got

    def close(self):
        self.http.close()
        self.tcp.close()


def client_counts(fetched: list[Fetched]) -> dict[str, dict[str, int]]:
    """Per traffic type, what the archive must hold, from the clients' side."""
    out: dict[str, dict[str, int]] = {}
    for f in fetched:
        c = out.setdefault(f.traffic_type, dict.fromkeys(
            ["requests", "connections", "response_bytes", "sent_bytes"], 0))
        c["requests"] += 1
        c["connections"] += f.new_connection
        status = f"status_{f.status // 100}xx"
        c[status] = c.get(status, 0) + 1
        c["response_bytes"] += f.body
        c["sent_bytes"] += f.received
    return out


# -- sums ---------------------------------------------------------------------

PLAIN = ["records", "connections", "requests", "response_bytes", "wire_bytes", "retrans_bytes",
         "bytes_records", "data_segs", "retrans_segs", "segs_records", "tcpinfo_records",
         "rtt_sum_us", "duration_sum_us"]


def spool_sums(rows: np.ndarray) -> dict[str, int | None]:
    """What every archive table must add up to, read straight from spool rows."""
    out: dict[str, int | None] = {f: int(rows[f].astype(object).sum()) for f in PLAIN}
    for i, cls in enumerate(spool.STATUS_CLASSES):
        out[f"status_{cls}"] = int(rows["status"][:, i].astype(object).sum())
    for i in range(spool.RTT_BUCKETS):
        out[f"rtt_h{i}"] = int(rows["rtt_hist"][:, i].astype(object).sum())
    mins = rows["min_rtt_us"][rows["min_rtt_us"] != spool.NO_MIN_RTT]
    out["min_rtt_us"] = int(mins.min()) if len(mins) else None
    assert set(out) == set(tables.MEASURES), "the archive's measures changed: update this helper"
    return out


def add_sums(a: dict, b: dict) -> dict:
    out = {k: a[k] + b[k] for k in a if k != "min_rtt_us"}
    mins = [m for m in (a["min_rtt_us"], b["min_rtt_us"]) if m is not None]
    out["min_rtt_us"] = min(mins) if mins else None
    return out


def table_sums(name: str, group_by: str | None = None) -> dict:
    """The measures of a table summed (per ``group_by`` value, if given)."""
    cols = [f"sum({m})" for m in tables.SUMS] + ["min(min_rtt_us)"]
    with connection.cursor() as cur:
        if group_by:
            cur.execute(f"SELECT {group_by}::text, {', '.join(cols)} FROM {name} GROUP BY 1")
        else:
            cur.execute(f"SELECT NULL, {', '.join(cols)} FROM {name}")
        rows = cur.fetchall()
    out = {}
    for key, *values in rows:
        out[key.strip() if isinstance(key, str) else key] = {
            m: (int(v) if v is not None else (None if m == "min_rtt_us" else 0))
            for m, v in zip(tables.MEASURES, values)}
    return out if group_by else out[None]


def read_spool(spool_dir: Path, subs=("incoming", "processing")) -> dict[str, np.ndarray]:
    """Every closed segment's rows, by segment name."""
    return {p.name: spool.read_segment(p) for sub in subs for p in sorted((spool_dir / sub).glob("*.seg"))}


def segment_names(spool_dir: Path, sub: str) -> set[str]:
    return {p.name for p in (spool_dir / sub).glob("*.seg")}


def synthetic_rows(n: int, seed: int, minute: int, clients: list[str], server: str,
                   traffic_type: bytes = b"web") -> np.ndarray:
    """Spool rows as the collector writes them, with random measures."""
    from ipr.routing.lookup import address_bytes

    rng = np.random.default_rng(seed)
    rows = np.zeros(n, spool.ROW)
    rows["minute"] = minute
    rows["client"] = np.array([address_bytes(c) for c in clients], dtype="V16")[rng.integers(0, len(clients), n)]
    rows["server"] = address_bytes(server)
    rows["traffic_type"] = traffic_type
    for f in ("records", "connections", "tcpinfo_records", "segs_records", "bytes_records"):
        rows[f] = rng.integers(1, 50, n)
    rows["requests"] = rows["records"]
    rows["status"] = rng.integers(0, 10, (n, len(spool.STATUS_CLASSES)))
    for f in ("response_bytes", "wire_bytes", "retrans_bytes", "data_segs", "retrans_segs",
              "rtt_sum_us", "duration_sum_us"):
        rows[f] = rng.integers(0, 10**9, n)
    rows["rtt_hist"] = rng.integers(0, 20, (n, spool.RTT_BUCKETS))
    rows["min_rtt_us"] = rng.integers(100, 90_000, n)
    return rows


def write_segment(spool_dir: Path, rows: np.ndarray, name: str) -> Path:
    """A closed segment in incoming/, written the way the collector writes one."""
    spool.make_dirs(spool_dir)
    now_ms = int(time.time() * 1000)
    writer = spool.SegmentWriter(spool_dir, f"{name}-w0-{now_ms}.seg", 0, now_ms)
    writer.append(rows, now_ms)
    return writer.close()


