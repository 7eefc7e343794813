"""The WSGI middleware under a real gunicorn (gthread, 2 workers, --preload),
real HTTP requests from http.client, and a UDP socket as the collector.

What is checked exactly, and why it holds (loopback, one HTTP/1.1 request
at a time per connection):

- every request gives exactly one record, matched by its X-Tag header;
- response_bytes is the body length the client read; status as received;
- on a connection, let rx[k] be the client's tcpi_bytes_received after it
  read response k (rx[0] = 0), and sent[k] the sum over records 1..k of
  wire_bytes - retrans_bytes: the bytes handed to TCP, whether already
  transmitted or still queued. The record of request k is read after
  gunicorn handed all of response k to the kernel; the server sends
  nothing else, and the client read every response whole. So
  sent[k] == rx[k] for every k: each record covers its response to the
  byte, with nothing counted twice and nothing left out, even for a
  connection's last response. (When the server closes the connection,
  the client's counter may also hold the FIN, which takes one sequence
  number: then rx[k] == sent[k] + 1.);
- segments: a transmitted segment carries at least one byte, so
  data_segs <= wire_bytes for each record;
- the first record of a connection has NEW_CONNECTION, later ones do not.
"""
from __future__ import annotations

import http.client
import json
import socket

import pytest

from agent_helpers import DEADLINE, Gunicorn, Receiver, SECRET
from ipr_agent import wire
from ipr_agent.wsgi import IprMiddleware, read_tcp_info

MEASURED = wire.F_TCPINFO | wire.F_TCPINFO_SEGS | wire.F_BYTES_SENT | wire.F_DELIVERY_RATE


def kernel_info_len() -> int:
    a = socket.socket()
    a.bind(("127.0.0.1", 0))
    a.listen()
    with a, socket.create_connection(a.getsockname()) as c:
        return len(c.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 512))


FULL_TCP_INFO = kernel_info_len() >= 216  # Linux >= 4.19: every field the agent reads


class Client:
    """One HTTP connection that also reads its own socket's TCP_INFO."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE)
        self.conn.connect()
        self.sock = self.conn.sock
        # A duplicate fd keeps the socket readable after http.client closes
        # it (Connection: close).
        self.tcp = self.sock.dup()
        self.rx = [0]  # client's bytes received after each response
        self.tags: list[str] = []
        self.bodies: list[int] = []
        self.statuses: list[int] = []

    def get(self, path: str, tag: str, close: bool = False):
        headers = {"X-Tag": tag}
        if close:
            headers["Connection"] = "close"
        self.conn.request("GET", path, headers=headers)
        assert self.conn.sock is self.sock, "http.client reconnected: not one connection any more"
        response = self.conn.getresponse()
        data = response.read()
        self.rx.append(read_tcp_info(self.tcp)["bytes_received"])
        self.tags.append(tag)
        self.bodies.append(len(data))
        self.statuses.append(response.status)
        return response, data

    def close(self):
        self.conn.close()
        self.tcp.close()


def records_for(receiver: Receiver, tags: list[str]) -> dict[str, list]:
    """Wait until every tag has a record; return tag -> [(header, record), ...]."""
    wanted = set(tags)

    def found():
        return wanted <= {r.traffic_type for r in receiver.records()}
    receiver.wait_for(lambda _: found(), f"records for {len(wanted)} tags, e.g. {sorted(wanted)[:3]}")
    out = {t: [] for t in tags}
    for header, record in receiver.records_with_header():
        if record.traffic_type in out:
            out[record.traffic_type].append((header, record))
    return out


def check_connection(client: Client, records: list[wire.Record], port: int,
                     server_closed: bool = False):
    """The per-connection invariants of the module docstring, record by record."""
    assert records[0].flags & wire.F_NEW_CONNECTION
    assert not any(r.flags & wire.F_NEW_CONNECTION for r in records[1:])
    sent = 0
    for k, r in enumerate(records, 1):
        assert (r.client, r.server, r.server_port) == ("127.0.0.1", "127.0.0.1", port)
        assert r.requests == 1 and r.http_version == 11
        assert not r.flags & wire.F_TLS
        if FULL_TCP_INFO:
            assert r.flags & MEASURED == MEASURED
        assert r.rtt_us > 0 and 0 < r.min_rtt_us < wire.U32
        assert r.retrans_bytes <= r.wire_bytes
        assert r.data_segs <= r.wire_bytes
        sent += r.wire_bytes - r.retrans_bytes
        fin = 1 if server_closed and k == len(records) and client.rx[k] == sent + 1 else 0
        assert sent == client.rx[k] - fin, (k, client.rx, sent)


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def server(receiver, tmp_path_factory):
    g = Gunicorn(tmp_path_factory.mktemp("gunicorn"), receiver.port).start()
    yield g
    g.stop()


KEEP_ALIVE_PLAN = [
    ("/bytes/1000", 200), ("/bytes/5000000", 200), ("/chunked/300001", 200),
    ("/write/10001", 200), ("/file/200000", 200), ("/missing", 404),
    ("/bytes/5000000", 200), ("/bytes/10", 200),  # a final small one: covers all before it
]


@pytest.fixture(scope="module")
def keep_alive(server, receiver):
    client = Client(server.port)
    for i, (path, _status) in enumerate(KEEP_ALIVE_PLAN):
        client.get(path, f"ka-{i}")
    client.close()
    found = records_for(receiver, client.tags)
    return client, found


def test_it_reports_one_record_per_request_on_keep_alive(keep_alive):
    client, found = keep_alive
    assert [len(found[t]) for t in client.tags] == [1] * len(KEEP_ALIVE_PLAN)
    records = [found[t][0][1] for t in client.tags]
    assert [r.status for r in records] == [s for _p, s in KEEP_ALIVE_PLAN] == client.statuses
    # Body bytes the application produced = what the client read, including
    # the chunked, write() and sendfile responses.
    assert [r.response_bytes for r in records] == client.bodies
    assert client.bodies[:5] == [1000, 5_000_000, 300_001, 10_001, 200_000]


def test_keep_alive_deltas_add_up_to_what_the_client_received(keep_alive, server):
    client, found = keep_alive
    records = [found[t][0][1] for t in client.tags]
    check_connection(client, records, server.port)
    # Stated once more: everything, headers and both 5 MB bodies included,
    # is in the sum of the records.
    total = sum(r.wire_bytes - r.retrans_bytes for r in records)
    assert total == client.rx[-1] > 10_000_000


def test_the_records_of_one_connection_come_from_one_sender_instance(keep_alive):
    client, found = keep_alive
    assert len({found[t][0][0].instance_id for t in client.tags}) == 1


def test_each_connection_close_request_is_a_new_connection(server, receiver):
    plan = [("/bytes/100", 200), ("/bytes/3000000", 200), ("/missing", 404), ("/bytes/100", 200)]
    clients = []
    for i, (path, status) in enumerate(plan):
        client = Client(server.port)
        response, data = client.get(path, f"close-{i}", close=True)
        assert response.status == status
        client.close()
        clients.append(client)
    found = records_for(receiver, [c.tags[0] for c in clients])
    for client in clients:
        (entry,) = found[client.tags[0]]
        record = entry[1]
        assert record.status == client.statuses[0]
        assert record.response_bytes == client.bodies[0]
        # The only request of its connection: counted whole, and NEW_CONNECTION.
        check_connection(client, [record], server.port, server_closed=True)


def test_a_failing_application_is_reported_as_500_and_still_fails(server, receiver):
    client = Client(server.port)
    response, _ = client.get("/boom", "boom")
    assert response.status == 500
    client.close()
    (entry,) = records_for(receiver, ["boom"])["boom"]
    assert entry[1].status == 500
    assert entry[1].response_bytes == 0


def test_a_failing_traffic_type_callable_is_counted_and_the_response_is_unharmed(server, receiver):
    client = Client(server.port)  # one connection, so one worker and its counters
    before = json.loads(client.get("/info", "info-before")[1])
    response, data = client.get("/bytes/4321", "raise")
    after = json.loads(client.get("/info", "info-after")[1])
    client.close()
    assert response.status == 200 and len(data) == 4321
    assert after["errors"] == before["errors"] + 1
    assert after["pid"] == before["pid"]
    records_for(receiver, ["info-after"])
    mine = [(h, r) for h, r in receiver.records_with_header()
            if h.instance_id == before["instance"] and r.response_bytes == 4321]
    assert [r.traffic_type for _h, r in mine] == [""]  # sent, with the default (empty) type


def test_workers_forked_from_a_preloaded_app_send_as_their_own_instance(server, receiver):
    client = Client(server.port)
    info = json.loads(client.get("/info", "fork-info")[1])
    client.close()
    assert info["pid"] != info["import_pid"]  # --preload: imported by the master
    assert info["instance"] != info["import_instance"]
    (entry,) = records_for(receiver, ["fork-info"])["fork-info"]
    header = entry[0]
    assert (header.instance_id, header.key_id, header.sender_id) == (info["instance"], 7, 4242)
    instances = {d.header.instance_id for d in receiver.datagrams}
    assert info["import_instance"] not in instances
    for instance in instances:  # each worker numbers its datagrams 1, 2, 3, ...
        seqs = sorted(d.header.sequence for d in receiver.datagrams if d.header.instance_id == instance)
        assert seqs == list(range(1, len(seqs) + 1))


def test_the_last_records_are_flushed_when_gunicorn_stops(tmp_path):
    receiver = Receiver()
    # A long interval: only the exit flush can send these few records.
    g = Gunicorn(tmp_path, receiver.port, workers=1, flush_interval=5).start()
    try:
        client = Client(g.port)
        for i in range(3):
            client.get("/bytes/2000", f"exit-{i}")
        client.close()
    finally:
        assert g.stop() == 0
    receiver.drain()  # the worker has exited: everything it sent is here
    records = receiver.records()
    assert sorted(r.traffic_type for r in records if r.traffic_type.startswith("exit-")) == \
        ["exit-0", "exit-1", "exit-2"]
    assert all(r.response_bytes == 2000 for r in records if r.traffic_type.startswith("exit-"))
    receiver.close()


def test_the_file_wrapper_is_handed_to_gunicorn_unwrapped(tmp_path):
    # gunicorn only uses sendfile() for its own FileWrapper: the middleware
    # must return that object itself and still measure on its close().
    from gunicorn.http.wsgi import FileWrapper

    from ipr_agent.sender import Sender

    receiver = Receiver()
    sender = Sender("127.0.0.1", receiver.port, 7, SECRET, 1, flush_interval=60)
    listener = socket.create_server(("127.0.0.1", 0))
    peer = socket.create_connection(listener.getsockname())
    conn, address = listener.accept()
    path = tmp_path / "f"
    path.write_bytes(b"x" * 12345)
    f = open(path, "rb")

    def app(environ, start_response):
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](f)

    environ = {"wsgi.file_wrapper": FileWrapper, "gunicorn.socket": conn, "REMOTE_ADDR": address[0],
               "REMOTE_PORT": str(address[1]), "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http"}
    mw = IprMiddleware(app, sender, traffic_type="files")
    result = mw(environ, lambda status, headers, exc_info=None: None)
    assert type(result) is FileWrapper
    result.close()
    assert f.closed
    sender.flush()
    receiver.wait_for(lambda r: r.records())
    (record,) = receiver.records()
    assert (record.traffic_type, record.response_bytes, record.status) == ("files", 12345, 200)
    assert record.flags & wire.F_NEW_CONNECTION and mw.errors == 0
    for s in (peer, conn, listener):
        s.close()
    sender.close()
    receiver.close()
