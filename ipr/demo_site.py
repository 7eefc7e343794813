"""A small WSGI site instrumented with the ipr agent, for `manage.py demo`.

    GET /static/<n>, /api/<n>, /video/<n>   n bytes of body, traffic type from the path
    anything else                           404

Run under gunicorn with IPR_COLLECTOR, IPR_KEY_ID, IPR_KEY_SECRET and
IPR_SENDER_ID set (see docs/agent.md).
"""
from ipr_agent.sender import Sender
from ipr_agent.wsgi import IprMiddleware

CHUNK = b"ipr-demo " * 7282  # 65538 bytes


def site(environ, start_response):
    parts = environ.get("PATH_INFO", "/").strip("/").split("/")
    if len(parts) == 2 and parts[0] in ("static", "api", "video") and parts[1].isdigit():
        size = int(parts[1])
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(size))])
        return body(size)
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]


def body(size):
    while size > 0:
        piece = CHUNK[:size]
        size -= len(piece)
        yield piece


def traffic_type(environ):
    first = environ.get("PATH_INFO", "/").strip("/").split("/")[0]
    return first if first in ("static", "api", "video") else "other"


app = IprMiddleware(site, Sender.from_env(), traffic_type=traffic_type)
