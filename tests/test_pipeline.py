"""The whole path with every process real: HTTP clients → gunicorn with the
WSGI agent, or nginx with the module → the collector → spool segments → a
Celery worker that took ``ipr.ingest`` (and the hourly archive) from Redis →
the PostgreSQL archive.

The reference is what the clients saw (requests, body bytes, and their own
sockets' tcpi_bytes_received) and what the spool held. The worker runs in
its own process on the test database, so the tests commit what it must see
(``transaction=True``) and empty the archive tables, which are not Django
models, themselves.
"""
from __future__ import annotations

import os
import time
from types import SimpleNamespace

import numpy as np
import pytest
from django.db import connection

from agent_helpers import SECRET as AGENT_SECRET, Gunicorn
from collector_helpers import CollectorProcess, key
from ipr.routing.load import refresh_router
from ipr.routing.models import DataSource, Router, ServedNetwork
from ipr.routing.reference import refresh_source
from ipr.routing.samples import bird_dump
from ipr.traffic import ingest, rollup, tables
from ipr.traffic.models import IngestedSegment
from pipeline_helpers import (CeleryWorker, Connection, TcpProxy, add_sums, client_counts,
                              database_address, database_url, read_spool, segment_names, spool_sums,
                              synthetic_rows, table_sums, wait_until, write_segment)

pytestmark = pytest.mark.django_db(transaction=True)

CURRENT_AND_HOURLY = ["traffic_current", "traffic_prefix_hour", "traffic_origin_hour",
                      "traffic_neighbor_hour", "traffic_country_hour"]


@pytest.fixture(autouse=True)
def broker_and_postgresql():
    if not os.environ.get("REDIS_URL"):
        pytest.skip("REDIS_URL is not set: the Celery worker needs Redis as its broker "
                    "(`make test` sets it)")
    if connection.vendor != "postgresql":
        pytest.skip("the worker process must share the test database: DATABASE_URL must be PostgreSQL")
    from cron.celery import app
    assert not app.conf.task_always_eager, "with REDIS_URL set, tasks must go through the broker"


@pytest.fixture(autouse=True)
def empty_archive(django_db_blocker):
    def empty():
        with django_db_blocker.unblock(), connection.cursor() as cur:
            for name in tables.TABLES:
                cur.execute(f"DELETE FROM {name}")
    empty()
    yield
    empty()  # the test database's flush does not reach these tables


@pytest.fixture
def started():
    """Start processes; stop them all, last started first, whatever happens."""
    running = []

    def start(proc):
        running.append(proc)
        return proc.start()
    yield start
    errors = []
    for proc in reversed(running):
        try:
            proc.stop()
        except Exception as exc:
            errors.append(exc)
            if isinstance(proc, CollectorProcess):
                proc.kill()
    if errors:
        raise errors[0]


@pytest.fixture
def loopback(tmp_path):
    """Routes and a country for the loopback clients. ``edge`` serves
    127.0.0.0/8; ``other``, the default router, would take the traffic if the
    served network were not matched, and has its own 127.0.0.0/8 route. The
    client 127.0.0.1 lies under a default route and beside a more specific
    127.1.0.0/16, so only a longest-prefix match gives 127.0.0.0/8."""
    edge = Router.objects.create(name="edge", asn=64500)
    other = Router.objects.create(name="other", asn=64500, is_default=True)
    ServedNetwork.objects.create(router=edge, network="127.0.0.0/8")
    ServedNetwork.objects.create(router=other, network="198.18.0.0/24")

    def load(router, neighbor, origin):
        dump = tmp_path / f"{router.name}-{neighbor}-{origin}.txt"
        dump.write_text(bird_dump([("0.0.0.0/0", f"{neighbor} 64999"),
                                   ("127.0.0.0/8", f"{neighbor} {origin}"),
                                   ("127.1.0.0/16", f"{neighbor} 64901")]))
        return refresh_router(router.pk, [str(dump)])

    load(edge, 64601, 64700)
    load(other, 64602, 64799)
    # 127.0.0.0/8 as the RIRs' files would list it if it were allocated
    # (its real entry, ZZ, is skipped as no country).
    rir = tmp_path / "delegated-test.txt"
    rir.write_text("2|ripencc|1700000000|1|19830705|20260101|+0000\n"
                   "ripencc|NL|ipv4|127.0.0.0|16777216|20100101|allocated\n")
    refresh_source(DataSource.objects.create(name="test-rir", kind="rir", path=str(rir)).pk)
    return SimpleNamespace(edge=edge, other=other, load=load)


def collector_for_agents(workdir, **settings):
    """A collector that accepts the agent's key (tests/agent_helpers.py)."""
    return CollectorProcess(workdir, keys=[key(id=7, secret=AGENT_SECRET, sender_ids=[4242])], flush_interval=0.1, **settings)


def ingested_names() -> set[str]:
    return set(IngestedSegment.objects.values_list("name", flat=True))


def attributions() -> set[tuple]:
    with connection.cursor() as cur:
        cur.execute("SELECT DISTINCT router_id, prefix::text, origin_as, neighbor_as, country "
                    "FROM traffic_current")
        return set(cur.fetchall())


# -- 1. end to end ------------------------------------------------------------

KEEP_ALIVE = [
    [("/bytes/1000", "web", 200), ("/bytes/3000000", "video", 200), ("/chunked/300001", "web", 200),
     ("/missing", "web", 404), ("/file/200000", "video", 200), ("/bytes/10", "web", 200)],
    [("/write/10001", "api", 200), ("/bytes/70000", "api", 200), ("/missing", "api", 404)],
]
ONE_SHOT = [("/bytes/100", "web", 200), ("/bytes/2000000", "video", 200), ("/missing", "api", 404),
            ("/chunked/5000", "api", 200)]


def test_what_the_clients_received_reaches_every_table_with_its_router_prefix_and_country(
        loopback, tmp_path, started):
    collector = started(collector_for_agents(tmp_path / "collector", processes=2))
    worker = started(CeleryWorker(tmp_path, database_url=database_url(), spool_dir=collector.spool_dir))
    site = started(Gunicorn(tmp_path, collector.port))

    fetched = []
    for plan in KEEP_ALIVE:
        conn = Connection(site.port)
        for path, traffic_type, status in plan:
            assert conn.get(path, traffic_type).status == status
        conn.close()
        fetched += conn.fetched
    for path, traffic_type, status in ONE_SHOT:
        conn = Connection(site.port)
        assert conn.get(path, traffic_type, close=True).status == status
        conn.close()
        fetched += conn.fetched

    assert site.stop() == 0       # its workers send what they still hold as they exit
    assert collector.stop() == 0  # takes what is queued, then closes every segment
    assert not segment_names(collector.spool_dir, "open")
    segments = read_spool(collector.spool_dir)
    assert segments
    want = spool_sums(np.concatenate(list(segments.values())))

    worker.run_ingest()
    assert not read_spool(collector.spool_dir)
    assert ingested_names() == set(segments)

    # Per traffic type, exactly what the clients counted on their side.
    clients = client_counts(fetched)
    archive = table_sums("traffic_current", "traffic_type")
    assert set(archive) - {"default"} == set(clients)  # "default": gunicorn's readiness probe
    for traffic_type, seen in clients.items():
        got = archive[traffic_type]
        assert got["requests"] == got["records"] == seen["requests"], traffic_type
        assert got["connections"] == seen["connections"], traffic_type
        for status in ("status_1xx", "status_2xx", "status_3xx", "status_4xx", "status_5xx"):
            assert got[status] == seen.get(status, 0), (traffic_type, status)
        assert got["response_bytes"] == seen["response_bytes"], traffic_type
        assert got["bytes_records"] == seen["requests"], traffic_type  # every record had its bytes
        assert got["wire_bytes"] - got["retrans_bytes"] == seen["sent_bytes"], traffic_type
    assert clients["video"]["sent_bytes"] > 5_200_000

    # The edge router (by served network, not the default), its 127.0.0.0/8
    # route and its AS path, and the test RIR file's country.
    assert attributions() == {(loopback.edge.pk, "127.0.0.0/8", 64700, 64601, "NL")}
    assert set(table_sums("traffic_origin_hour", "asn")) == {"64700"}
    assert set(table_sums("traffic_neighbor_hour", "asn")) == {"64601"}
    assert set(table_sums("traffic_country_hour", "country")) == {"NL"}

    with connection.cursor() as cur:
        cur.execute("SELECT DISTINCT (hour AT TIME ZONE 'UTC')::date FROM traffic_prefix_hour")
        for (day,) in cur.fetchall():
            rollup.rollup_day(day)
    for name in tables.TABLES:
        assert table_sums(name) == want, name
    for name in CURRENT_AND_HOURLY:
        assert table_sums(name, "traffic_type") == archive, name


def test_what_the_clients_of_nginx_received_reaches_every_table(loopback, tmp_path, started):
    from nginx_helpers import Nginx

    collector = started(CollectorProcess(tmp_path / "collector", keys=[key(id=1, secret=AGENT_SECRET, sender_ids=[9])],
                                         flush_interval=0.1, processes=2))
    worker = started(CeleryWorker(tmp_path, database_url=database_url(), spool_dir=collector.spool_dir))
    up = started(Nginx(tmp_path / "upstream", "", "ipr off;"))
    site = Nginx(tmp_path / "nginx", f"""
    ipr_collector 127.0.0.1:{collector.port};
    ipr_key_file KEYFILE;
    ipr_sender_id 9;
    ipr_flush_interval 100ms;
    map $http_x_tag $ipr_type {{ default $http_x_tag; }}
""", f"""
        ipr on;
        ipr_traffic_type $ipr_type;
        location /proxy/ {{ proxy_pass http://127.0.0.1:{up.port}/; }}
""")
    for ng, files in ((site, {"small.txt": 700, "big.bin": 3_000_000}), (up, {"mid.bin": 250_000})):
        for name, size in files.items():
            (ng.dir / "html" / name).write_bytes(os.urandom(size))
    started(site)

    fetched = []
    for plan in ([("/small.txt", "web", 200), ("/big.bin", "video", 200), ("/missing", "web", 404),
                  ("/proxy/mid.bin", "api", 200), ("/small.txt", "web", 200)],
                 [("/proxy/mid.bin", "api", 200), ("/proxy/missing", "api", 404)]):
        conn = Connection(site.port)
        for path, traffic_type, status in plan:
            assert conn.get(path, traffic_type).status == status
        conn.close()
        fetched += conn.fetched
    for path, traffic_type, status in [("/big.bin", "video", 200), ("/small.txt", "web", 200)]:
        conn = Connection(site.port)
        assert conn.get(path, traffic_type, close=True).status == status
        conn.close()
        fetched += conn.fetched

    assert site.stop() == 0       # its worker flushes what it holds as it exits
    assert collector.stop() == 0
    segments = read_spool(collector.spool_dir)
    want = spool_sums(np.concatenate(list(segments.values())))
    worker.run_ingest()
    assert ingested_names() == set(segments)

    clients = client_counts(fetched)
    archive = table_sums("traffic_current", "traffic_type")
    assert set(archive) - {""} == set(clients)  # "": the readiness probe, with no X-Tag
    for traffic_type, seen in clients.items():
        got = archive[traffic_type]
        assert got["requests"] == seen["requests"], traffic_type
        assert got["connections"] == seen["connections"], traffic_type
        assert got["status_2xx"] + got["status_4xx"] == seen["requests"], traffic_type
        assert got["status_4xx"] == seen.get("status_4xx", 0), traffic_type
        # The bytes handed to TCP (headers and body) are what the client's
        # socket received; response_bytes is the body it read, as the WSGI agent counts.
        assert got["wire_bytes"] - got["retrans_bytes"] == seen["sent_bytes"], traffic_type
        assert got["response_bytes"] == seen["response_bytes"], traffic_type
        assert got["tcpinfo_records"] == seen["requests"], traffic_type  # TCP_INFO read for each
    assert attributions() == {(loopback.edge.pk, "127.0.0.0/8", 64700, 64601, "NL")}
    for name in CURRENT_AND_HOURLY:
        assert table_sums(name) == want, name


# -- 2. the database down for a while -----------------------------------------

def visit(port: int, traffic_type: str) -> list:
    """A keep-alive connection with three requests and a one-shot request."""
    conn = Connection(port)
    for path in ("/bytes/5000", "/missing", "/bytes/120000"):
        conn.get(path, traffic_type)
    conn.close()
    once = Connection(port)
    once.get("/bytes/700", traffic_type, close=True)
    once.close()
    return conn.fetched + once.fetched


def requests_in_incoming(spool_dir, traffic_type: str) -> int:
    return sum(int(rows["requests"][rows["traffic_type"] == traffic_type.encode()].sum())
               for rows in read_spool(spool_dir, ("incoming",)).values())


def test_segments_wait_out_a_database_outage_and_are_then_ingested_exactly_once(
        loopback, tmp_path, started):
    proxy = started(TcpProxy(database_address()))
    collector = collector_for_agents(tmp_path / "collector", segment_seconds=1.0)
    spool_dir = collector.spool_dir
    worker = started(CeleryWorker(tmp_path, database_url=database_url(("127.0.0.1", proxy.port)),
                                  spool_dir=spool_dir))

    # Before the outage the worker ingests through the proxy.
    before = synthetic_rows(200, seed=1, minute=int(time.time() // 60),
                            clients=["127.0.0.1", "127.0.0.9"], server="127.0.0.1")
    first_name = write_segment(spool_dir, before, "before").name
    worker.run_ingest()
    assert ingested_names() == {first_name}

    proxy.stop()  # the database goes away; the worker's open connection is cut
    started(collector)
    site = started(Gunicorn(tmp_path, collector.port))
    fetched = visit(site.port, "outage-1")
    wait_until(lambda: requests_in_incoming(spool_dir, "outage-1") == 4, "outage-1 in closed segments")
    waiting = segment_names(spool_dir, "incoming")

    for attempt in (1, 2):
        line = worker.outcome(worker.ingest())
        assert " raised " in line and "OperationalError" in line, line
        # Claimed, then left where they were: nothing is lost, nothing written.
        assert segment_names(spool_dir, "processing")
        assert waiting <= segment_names(spool_dir, "incoming") | segment_names(spool_dir, "processing")
        assert ingested_names() == {first_name}
        # A failed claim is only taken back once it is stale; recover() now
        # is what the next ingest does after STALE_CLAIM_SECONDS.
        ingest.recover(spool_dir, older_than=0)
        assert not segment_names(spool_dir, "processing")
        assert waiting <= segment_names(spool_dir, "incoming")
        if attempt == 1:
            # Still down: the collector keeps writing and the spool grows.
            fetched += visit(site.port, "outage-2")
            wait_until(lambda: requests_in_incoming(spool_dir, "outage-2") == 4,
                       "outage-2 in closed segments")
            assert segment_names(spool_dir, "incoming") > waiting
            waiting = segment_names(spool_dir, "incoming")

    assert site.stop() == 0
    assert collector.stop() == 0
    segments = read_spool(spool_dir)
    assert set(segments) >= waiting
    want = add_sums(spool_sums(before), spool_sums(np.concatenate(list(segments.values()))))

    proxy.start()  # the database is back
    worker.run_ingest()
    assert not read_spool(spool_dir)
    assert ingested_names() == {first_name} | set(segments)
    for name in CURRENT_AND_HOURLY:
        assert table_sums(name) == want, name
    archive = table_sums("traffic_current", "traffic_type")
    for traffic_type, seen in client_counts(fetched).items():
        assert archive[traffic_type]["requests"] == seen["requests"] == 4
        assert archive[traffic_type]["response_bytes"] == seen["response_bytes"]


# -- 3. a routing table swapped between two ingests ---------------------------

def test_a_table_swapped_between_two_ingests_applies_only_to_what_is_ingested_after_it(
        loopback, tmp_path, started):
    spool_dir = tmp_path / "spool"
    # One long-lived worker for both ingests: its lookup engine, built for
    # the first, must notice the swap.
    worker = started(CeleryWorker(tmp_path, database_url=database_url(), spool_dir=spool_dir))
    # Both segments have the same minute, type, clients and server: only the
    # table differs between them.
    shape = dict(minute=int(time.time() // 60), clients=["127.0.0.1", "127.0.0.2", "127.200.0.1"],
                 server="127.0.0.1")
    first, second = synthetic_rows(300, seed=11, **shape), synthetic_rows(300, seed=12, **shape)
    a, b = spool_sums(first), spool_sums(second)

    write_segment(spool_dir, first, "first")
    worker.run_ingest()
    assert table_sums("traffic_origin_hour", "asn") == {"64700": a}

    version_b = loopback.load(loopback.edge, 64602, 64800)
    assert Router.objects.get(pk=loopback.edge.pk).active_table_id == version_b.pk
    write_segment(spool_dir, second, "second")
    worker.run_ingest()

    assert attributions() == {(loopback.edge.pk, "127.0.0.0/8", 64700, 64601, "NL"),
                              (loopback.edge.pk, "127.0.0.0/8", 64800, 64602, "NL")}
    assert table_sums("traffic_current", "origin_as") == {"64700": a, "64800": b}
    assert table_sums("traffic_prefix_hour", "neighbor_as") == {"64601": a, "64602": b}
    assert table_sums("traffic_origin_hour", "asn") == {"64700": a, "64800": b}
    assert table_sums("traffic_neighbor_hour", "asn") == {"64601": a, "64602": b}
    assert table_sums("traffic_country_hour", "country") == {"NL": add_sums(a, b)}
