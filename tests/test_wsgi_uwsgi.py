"""The WSGI middleware under a real uWSGI (HTTP/1.1 socket, keep-alive),
with the same exact checks as under gunicorn (see test_wsgi_gunicorn.py)."""
import pytest

from agent_helpers import Receiver, Uwsgi
from test_wsgi_gunicorn import Client, check_connection, records_for


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    receiver = Receiver()
    s = Uwsgi(tmp_path_factory.mktemp("uwsgi"), receiver.port).start()
    yield s, receiver
    s.stop()
    receiver.close()


def test_keep_alive_deltas_under_uwsgi_add_up_to_what_the_client_received(server):
    # uWSGI reports REMOTE_ADDR 0.0.0.0 on keep-alive requests: the agent
    # must still see one connection, not a new one per request.
    s, receiver = server
    client = Client(s.port)
    # uWSGI keeps a connection open only after a response with a length.
    for i, path in enumerate(["/bytes/100", "/bytes/3000000", "/write/70000", "/bytes/5000000", "/bytes/10"]):
        client.get(path, f"uwsgi-ka-{i}")
    client.close()
    found = records_for(receiver, client.tags)
    records = [found[t][0][1] for t in client.tags]
    assert all(len(found[t]) == 1 for t in client.tags)
    assert [r.response_bytes for r in records] == client.bodies
    assert [r.status for r in records] == client.statuses == [200] * 5
    check_connection(client, records, s.port)


def test_the_uwsgi_worker_sends_as_its_own_instance_not_the_masters(server):
    import json
    s, receiver = server
    client = Client(s.port)
    _response, data = client.get("/info", "uwsgi-info")
    client.close()
    info = json.loads(data)
    assert info["pid"] != info["import_pid"]
    assert info["instance"] != info["import_instance"]
    found = records_for(receiver, ["uwsgi-info"])
    assert found["uwsgi-info"][0][0].instance_id == info["instance"]
