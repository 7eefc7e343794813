"""The WSGI application tests/test_wsgi_gunicorn.py runs under a real gunicorn.

The agent is configured from IPR_* variables (the test points them at its
UDP receiver). Each request's X-Tag header becomes its record's traffic
type, so the test can match every record to the request that made it.

    /ready                 200, a few bytes
    /bytes/<n>             n bytes with Content-Length, in 64 KiB chunks
    /chunked/<n>           n bytes without Content-Length (chunked encoding)
    /write/<n>             n bytes: half through write(), half returned
    /file/<n>              n bytes through wsgi.file_wrapper (gunicorn uses sendfile)
    /boom                  the application raises: gunicorn answers 500
    /info                  JSON: this worker's pid and agent state, and the master's
    anything else          404
"""
import json
import os
import tempfile

from ipr_agent.sender import Sender
from ipr_agent.wsgi import IprMiddleware

CHUNK = bytes(range(256)) * 256  # 64 KiB

sender = Sender.from_env()
# With --preload this module is imported by the master: what it saw then.
IMPORT_PID = os.getpid()
IMPORT_INSTANCE = sender.instance_id


def body(n):
    while n > 0:
        piece = CHUNK[:n]
        n -= len(piece)
        yield piece


def site(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    parts = path.strip("/").split("/")
    size = int(parts[1]) if len(parts) == 2 and parts[1].isdigit() else None
    if path == "/ready":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
        return [b"ok\n"]
    if parts[0] == "bytes" and size is not None:
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(size))])
        return body(size)
    if parts[0] == "chunked" and size is not None:
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return body(size)
    if parts[0] == "write" and size is not None:
        write = start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                          ("Content-Length", str(size))])
        write(b"w" * (size // 2))
        return [b"r" * (size - size // 2)]
    if parts[0] == "file" and size is not None:
        f = tempfile.TemporaryFile()
        f.write(b"f" * size)
        f.seek(0)
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(size))])
        return environ["wsgi.file_wrapper"](f)
    if path == "/boom":
        raise RuntimeError("the application failed")
    if path == "/info":
        data = json.dumps({"pid": os.getpid(), "import_pid": IMPORT_PID,
                           "import_instance": IMPORT_INSTANCE, "instance": sender.instance_id,
                           "errors": app.errors, "records": app.records}).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(data)))])
        return [data]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]


def traffic_type(environ):
    tag = environ.get("HTTP_X_TAG", "default")
    if tag == "raise":
        raise ValueError("a bug in the traffic type callable")
    return tag


app = IprMiddleware(site, sender, traffic_type=traffic_type)
