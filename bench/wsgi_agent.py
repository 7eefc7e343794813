"""CPU per request of the WSGI agent (ipr_agent/wsgi.py + ipr_agent/sender.py).

    python bench/wsgi_agent.py [--requests 200000] [--no-wrk]

1. In process: a small WSGI app is called the way gunicorn calls it
   (app(environ, start_response), iterate, close()) many times, bare and
   wrapped by IprMiddleware, and time.process_time() is compared. The
   environ carries a real connected loopback TCP socket as gunicorn.socket,
   so every request really calls getsockopt(TCP_INFO), and the sender
   really sends its datagrams (to a UDP socket that nobody reads, so the
   kernel drops them after the send). Variants: a fixed traffic type, a
   callable one, and a new connection on every request.
2. If `wrk` is installed: a real gunicorn (gthread, 1 worker, 4 threads)
   serving the same app, bare and wrapped, loaded by wrk over keep-alive
   connections; requests per second of each. On a small machine wrk and
   gunicorn share the CPUs, so this is a rough figure.

No assertions: it prints figures. The target is <= 10 µs added per request.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ipr_agent.sender import Sender  # noqa: E402
from ipr_agent.wsgi import IprMiddleware  # noqa: E402

BODY = [b"x" * 512]
HEADERS = [("Content-Type", "application/octet-stream"), ("Content-Length", "512")]


def plain(environ, start_response):
    start_response("200 OK", HEADERS)
    return BODY


if os.environ.get("IPR_COLLECTOR"):  # imported by gunicorn for the wrk run
    measured = IprMiddleware(plain, Sender.from_env(), traffic_type="static")


def start_response(status, headers, exc_info=None):
    return None


def serve(app, environ, n: int, new_connections: bool = False) -> float:
    """CPU seconds for n requests, driven like gunicorn's worker loop."""
    start = time.process_time()
    if new_connections:
        for i in range(n):
            environ["REMOTE_PORT"] = str(1024 + i % 60000)  # another peer: a new connection
            result = app(environ, start_response)
            for _chunk in result:
                pass
            if hasattr(result, "close"):
                result.close()
    else:
        for _ in range(n):
            result = app(environ, start_response)
            for _chunk in result:
                pass
            if hasattr(result, "close"):
                result.close()
    return time.process_time() - start


def in_process(n: int) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    conn, peer = listener.accept()
    client.sendall(b"GET / HTTP/1.1\r\n\r\n")  # some traffic, so the counters are not all zero
    conn.recv(100)
    conn.sendall(b"HTTP/1.1 200 OK\r\n\r\n")
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/static/app.js", "SERVER_PROTOCOL": "HTTP/1.1",
               "REMOTE_ADDR": peer[0], "REMOTE_PORT": str(peer[1]), "SERVER_NAME": "127.0.0.1",
               "SERVER_PORT": str(listener.getsockname()[1]), "wsgi.url_scheme": "http",
               "gunicorn.socket": conn}

    def by_path(env):
        return env["PATH_INFO"].split("/", 2)[1]

    variants = [("fixed traffic type", "static", False),
                ("callable traffic type", by_path, False),
                ("new connection every request", "static", True)]
    print(f"1. In process: {n} requests, app called as gunicorn calls it, real TCP socket")
    print(f"   Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, Linux {os.uname().release}")
    serve(plain, dict(environ), n // 10)  # warm up
    bare = min(serve(plain, dict(environ), n) for _ in range(3))
    print(f"   {'without middleware':<48} {bare / n * 1e6:6.2f} µs/request (best of 3 rounds)")
    for label, ttype, new in variants:
        sender = Sender("127.0.0.1", sink.getsockname()[1], 1, b"\x01" * 32, 1)
        app = IprMiddleware(plain, sender, traffic_type=ttype)
        serve(app, dict(environ), n // 10, new)
        best = min(serve(app, dict(environ), n, new) for _ in range(3))
        sender.flush()
        print(f"   {'with middleware, ' + label:<48} {best / n * 1e6:6.2f} µs/request, "
              f"added {(best - bare) / n * 1e6:5.2f} µs")
        print(f"      sender (warm-up and 3 rounds): {sender.records_sent} records in {sender.datagrams_sent} datagrams, "
              f"{sender.send_errors} send errors; middleware errors: {app.errors}")
        sender.close()
    for s in (client, conn, listener, sink):
        s.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_wrk(duration: int, rounds: int) -> None:
    wrk = shutil.which("wrk")
    if wrk is None:
        print("\n2. wrk is not installed: skipping the gunicorn run (apt-get install wrk)")
        return
    gunicorn = ROOT / ".venv" / "bin" / "gunicorn"
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sink.bind(("127.0.0.1", 0))
    received = [0]

    def count():  # how many records reach the "collector"
        while True:
            try:
                data = sink.recv(70000)
            except OSError:
                return
            received[0] += data[8] << 8 | data[9]
    threading.Thread(target=count, daemon=True).start()
    print(f"\n2. gunicorn (gthread, 1 worker, 4 threads) + wrk -t1 -c8 -d{duration}s, keep-alive, "
          f"512-byte responses; {rounds} alternating rounds (the spread shows the noise)")
    env = {**os.environ, "IPR_COLLECTOR": f"127.0.0.1:{sink.getsockname()[1]}", "IPR_KEY_ID": "1",
           "IPR_KEY_SECRET": "01" * 32, "IPR_SENDER_ID": "1"}
    servers = {}
    try:
        for name in ("plain", "measured"):
            port = free_port()
            log = tempfile.TemporaryFile()
            proc = subprocess.Popen([str(gunicorn), "--worker-class", "gthread", "--workers", "1",
                                     "--threads", "4", "--keep-alive", "30", "--bind", f"127.0.0.1:{port}",
                                     "--pythonpath", str(ROOT / "bench"), "--log-level", "warning",
                                     f"wsgi_agent:{name}"], cwd=ROOT, env=env, stdout=log,
                                    stderr=subprocess.STDOUT)
            servers[name] = (proc, port, log)
        for name, (proc, port, log) in servers.items():
            deadline = time.monotonic() + 20
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).read()
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        log.seek(0)
                        raise RuntimeError(f"gunicorn did not start: {log.read().decode()}")
                    time.sleep(0.1)
        for _ in range(rounds):
            for name, (proc, port, log) in servers.items():
                before = received[0]
                out = subprocess.run([wrk, "-t1", "-c8", f"-d{duration}s", f"http://127.0.0.1:{port}/"],
                                     capture_output=True, text=True, check=True).stdout
                rate = re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)
                total = re.search(r"(\d+) requests in", out).group(1)
                extra = (f", {received[0] - before} records reached the UDP socket"
                         if name == "measured" else "")
                print(f"   {'without middleware' if name == 'plain' else 'with middleware':<20} "
                      f"{float(rate):9.0f} req/s ({total} requests{extra})")
    finally:
        for proc, _port, _log in servers.values():
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    sink.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--wrk-seconds", type=int, default=5)
    parser.add_argument("--wrk-rounds", type=int, default=2)
    parser.add_argument("--no-wrk", action="store_true")
    args = parser.parse_args()
    in_process(args.requests)
    if not args.no_wrk:
        with_wrk(args.wrk_seconds, args.wrk_rounds)


if __name__ == "__main__":
    main()
