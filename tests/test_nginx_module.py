"""ngx_http_ipr_module in a real nginx (Debian's), on loopback.

The exact checks are those of the WSGI agent (test_wsgi_gunicorn.py): on
each connection, the records' bytes handed to TCP add up, request by
request, to what the client's own TCP_INFO says it received, and
response_bytes ($body_bytes_sent, as the WSGI agent counts) is the body the
client read.
"""
import os
from pathlib import Path

import pytest

from agent_helpers import Receiver
from nginx_helpers import Nginx
from test_wsgi_gunicorn import Client, check_connection, records_for

BASE = """
    ipr_collector 127.0.0.1:{port};
    ipr_key_file KEYFILE;
    ipr_sender_id 77;
    ipr_flush_interval 100ms;
    map $http_x_tag $ipr_type {{ default $http_x_tag; }}
"""
SERVER = """
        ipr on;
        ipr_traffic_type $ipr_type;
        location /off/ { ipr off; }
        location /proxy/ { proxy_pass http://127.0.0.1:UPSTREAM/; proxy_buffering on; }
"""
UPSTREAM = """
    server {{ listen 127.0.0.1:{port}; root {root}; ipr off; }}
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from agent_helpers import free_port
    receiver = Receiver()
    workdir = tmp_path_factory.mktemp("nginx")
    up = free_port()
    ng = Nginx(workdir, BASE.format(port=receiver.port) + UPSTREAM.format(port=up, root=workdir / "html"),
               SERVER.replace("UPSTREAM", str(up)))
    html = ng.dir / "html"
    (html / "small.txt").write_bytes(b"hello\n")
    (html / "big.bin").write_bytes(os.urandom(5_000_000))
    (html / "off").mkdir()
    (html / "off" / "x.txt").write_bytes(b"not measured\n")
    ng.start()
    yield ng, receiver
    ng.stop()
    receiver.close()


def test_it_reports_one_record_per_request_with_exact_bytes_on_keep_alive(site):
    ng, receiver = site
    client = Client(ng.port)
    for i, path in enumerate(["/small.txt", "/big.bin", "/missing", "/small.txt", "/big.bin", "/small.txt"]):
        client.get(path, f"ka-{i}")
    client.close()
    found = records_for(receiver, client.tags)
    assert all(len(found[t]) == 1 for t in client.tags)
    records = [found[t][0][1] for t in client.tags]
    assert [r.status for r in records] == client.statuses == [200, 200, 404, 200, 200, 200]
    # The body alone, as the client read it (the headers are in wire_bytes).
    assert [r.response_bytes for r in records] == client.bodies
    assert all(r.response_bytes < b - a for r, a, b in zip(records, client.rx, client.rx[1:]))
    assert all(r.traffic_type.startswith("ka-") for r in records)
    check_connection(client, records, ng.port)


def test_proxied_responses_are_measured_on_the_client_connection(site):
    ng, receiver = site
    client = Client(ng.port)
    for i, path in enumerate(["/proxy/small.txt", "/proxy/big.bin", "/proxy/missing", "/proxy/small.txt"]):
        client.get(path, f"proxy-{i}")
    client.close()
    found = records_for(receiver, client.tags)
    records = [found[t][0][1] for t in client.tags]
    assert all(len(found[t]) == 1 for t in client.tags)  # the upstream server has ipr off
    assert [r.status for r in records] == client.statuses == [200, 200, 404, 200]
    assert client.bodies[1] == 5_000_000
    assert [r.response_bytes for r in records] == client.bodies
    check_connection(client, records, ng.port)


def test_each_one_shot_request_is_a_new_connection_counted_whole(site):
    ng, receiver = site
    clients = []
    for i, path in enumerate(["/small.txt", "/big.bin", "/missing"]):
        client = Client(ng.port)
        client.get(path, f"close-{i}", close=True)
        client.close()
        clients.append(client)
    found = records_for(receiver, [c.tags[0] for c in clients])
    for client in clients:
        (entry,) = found[client.tags[0]]
        assert entry[1].status == client.statuses[0]
        check_connection(client, [entry[1]], ng.port, server_closed=True)


def test_a_location_with_ipr_off_sends_nothing(site):
    ng, receiver = site
    client = Client(ng.port)
    client.get("/off/x.txt", "off-0")
    client.get("/small.txt", "after-off")
    client.close()
    records_for(receiver, ["after-off"])
    assert not [r for r in receiver.records() if r.traffic_type == "off-0"]


def test_datagrams_are_signed_sequenced_and_from_one_instance_per_worker(site):
    ng, receiver = site
    grams = receiver.datagrams
    assert grams and all(d.header.key_id == 1 and d.header.sender_id == 77 for d in grams)
    assert len({d.header.instance_id for d in grams}) == 1  # one worker
    assert [d.header.sequence for d in grams] == list(range(1, len(grams) + 1))


def test_the_collector_down_never_affects_responses(tmp_path):
    from agent_helpers import free_port
    closed = free_port()  # nothing listens there: every send is refused
    ng = Nginx(tmp_path, BASE.format(port=closed).replace("100ms", "10ms"), SERVER.replace("UPSTREAM", "1")).start()
    try:
        client = Client(ng.port)
        import time
        for i in range(30):
            response, data = client.get("/missing", f"down-{i}")
            assert response.status == 404
            time.sleep(0.02)  # let the flush timer fire between requests
        client.close()
    finally:
        ng.stop()
    log = ng.error_log()
    assert "ipr: send() to collector 127.0.0.1:%d failed" % closed in log
    assert log.count("ipr: send() to collector") == 1  # rate-limited


@pytest.mark.parametrize("http, message", [
    ("ipr_collector 127.0.0.1:9477; ipr_key_file /nonexistent/key; ipr_sender_id 1;",
     'ipr_key_file "/nonexistent/key": cannot open'),
    ("ipr_collector 127.0.0.1; ipr_key_file KEYFILE; ipr_sender_id 1;",
     'ipr_collector "127.0.0.1": a port is required'),
    ("ipr_collector not-an-address:9477; ipr_key_file KEYFILE; ipr_sender_id 1;",
     'ipr_collector "not-an-address:9477"'),
    ("ipr_collector 127.0.0.1:9477; ipr_key_file KEYFILE; ipr_sender_id 1; ipr_batch 0;",
     "ipr_batch 0: must be 1..545 records"),
    ("ipr_collector 127.0.0.1:9477; ipr_key_file KEYFILE;",
     "ipr_collector is set but ipr_sender_id"),
    ("", '"ipr on" needs an ipr_collector in the http block'),
])
def test_a_bad_directive_stops_nginx_t_with_a_clear_message(tmp_path, http, message):
    out = Nginx(tmp_path, http, "        ipr on;").test_config()
    assert out.returncode == 1
    assert message in out.stderr, out.stderr


def test_a_key_file_without_a_valid_secret_is_refused(tmp_path):
    ng = Nginx(tmp_path, "ipr_collector 127.0.0.1:9477; ipr_key_file KEYFILE; ipr_sender_id 1;")
    ng.key.write_text("1:abcd\n")
    out = ng.test_config()
    assert out.returncode == 1 and "expected one line KEY_ID:SECRET_HEX" in out.stderr


class Load:
    """Two threads of one-shot requests, each tagged, until stopped."""

    def __init__(self, port: int):
        import threading
        self.port, self.served, self.attempted = port, [], []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(n,)) for n in range(2)]
        for t in self.threads:
            t.start()

    def run(self, n):
        import http.client
        i = 0
        while not self.stop.is_set() and i < 5000:
            tag = f"rl-{n}-{i:05d}"
            self.attempted.append(tag)
            i += 1
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("GET", "/page.txt", headers={"X-Tag": tag, "Connection": "close"})
                response = conn.getresponse()
                if response.status == 200 and len(response.read()) == 20000:
                    self.served.append(tag)
                conn.close()
            except OSError:
                pass  # refused or reset during a reload: not served

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(30)


def check_every_served_request_recorded_once(receiver, load):
    records_for(receiver, load.served)
    tags = [r.traffic_type for r in receiver.records() if r.traffic_type.startswith("rl-")]
    assert len(load.served) > 100
    assert len(tags) == len(set(tags))  # nothing counted twice
    assert set(load.served) <= set(tags) <= set(load.attempted)


def test_reloads_under_load_lose_no_record_and_leak_no_socket(tmp_path):
    import signal
    import time

    from nginx_helpers import connected_udp_sockets

    receiver = Receiver()
    ng = Nginx(tmp_path, BASE.format(port=receiver.port), SERVER.replace("UPSTREAM", "1"), workers=2)
    (ng.dir / "html" / "page.txt").write_bytes(b"x" * 20000)
    ng.start()
    load = Load(ng.port)
    try:
        for _ in range(3):
            time.sleep(0.5)
            ng.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        load.finish()
        time.sleep(1.5)  # old workers finish gracefully and flush
        assert connected_udp_sockets(receiver.port) == 2  # one per live worker, none leaked
        assert ng.error_log().count("signal 1 (SIGHUP) received") == 3
    finally:
        load.finish()
        ng.stop()
    check_every_served_request_recorded_once(receiver, load)
    assert len({d.header.instance_id for d in receiver.datagrams}) >= 2 * 4 - 1  # workers of 4 generations
    receiver.close()


def test_a_binary_upgrade_under_load_loses_no_record_and_leaks_no_socket(tmp_path):
    import os
    import signal
    import time

    from nginx_helpers import connected_udp_sockets

    receiver = Receiver()
    ng = Nginx(tmp_path, BASE.format(port=receiver.port), SERVER.replace("UPSTREAM", "1"), workers=2,
               daemon=True)
    (ng.dir / "html" / "page.txt").write_bytes(b"x" * 20000)
    ng.start()
    old_master = ng.master_pid()
    load = Load(ng.port)
    try:
        time.sleep(0.5)
        os.kill(old_master, signal.SIGUSR2)  # a new master from the (same) binary, beside the old
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (
                (ng.dir / "nginx.pid.oldbin").exists() and (ng.dir / "nginx.pid").exists()
                and ng.master_pid() != old_master):
            time.sleep(0.05)
        assert ng.master_pid() != old_master, ng.error_log()
        time.sleep(0.5)  # both generations serve
        os.kill(old_master, signal.SIGQUIT)  # the old master and its workers leave gracefully
        while Path(f"/proc/{old_master}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        load.finish()
        time.sleep(1.5)
        assert connected_udp_sockets(receiver.port) == 2  # the new workers' only
    finally:
        load.finish()
        ng.stop()
    check_every_served_request_recorded_once(receiver, load)
    assert len({d.header.instance_id for d in receiver.datagrams}) >= 4  # two generations of 2 workers
    receiver.close()
