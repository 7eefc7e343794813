"""ipr's own /metrics: each gauge against a state the test builds, who may
read it, and the example alert rules against what the collector and the
web UI really expose."""
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from datetime import datetime, timezone as tz
from pathlib import Path

import numpy as np
import pytest
import yaml
from django.conf import settings as django_settings
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

from collector import spool
from ipr import __version__
from ipr.routing.load import RefreshError, refresh_router
from ipr.routing.models import DataSource, RouteSource, Router
from ipr.routing.reference import refresh_source
from ipr.routing.samples import bird_dump, demo_delegated
from ipr.traffic import ingest, metrics, rollup
from ipr.traffic.models import IngestedSegment
from ipr_agent import wire
from tests.collector_helpers import CollectorProcess, free_port, make_datagram
from tests import web_helpers
from tests.pipeline_helpers import database_url, synthetic_rows, wait_until

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples"
OPERATIONS = ROOT / "docs" / "operations.md"
TOKEN = "6f1d0c2b" * 8
# The start (a minute number) of the hour three hours ago: inside the window.
HOUR0 = (int(time.time()) // 3600 - 3) * 60


@pytest.fixture
def empty_archive(django_db_setup, django_db_blocker):
    """The archive tables are not Django models: no test's rollback or
    flush empties them."""
    with django_db_blocker.unblock():
        web_helpers.empty_archive()
    yield
    with django_db_blocker.unblock():
        web_helpers.empty_archive()


@pytest.fixture
def spool_dir(tmp_path, settings):
    settings.METRICS_TOKEN = None   # whatever this machine's environment says
    settings.SPOOL_DIR = tmp_path / "spool"
    spool.make_dirs(settings.SPOOL_DIR)
    return settings.SPOOL_DIR


def samples(text: str) -> dict:
    """{(sample name, sorted label pairs): value} of an exposition, which
    must parse as Prometheus text."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels):
    return samples(text).get((name, tuple(sorted(labels.items()))))


def names(text: str) -> set[str]:
    return {name for name, _ in samples(text)}


def clean_environment() -> dict:
    """This process's environment without the settings that change who may
    read /metrics, for the processes a test starts."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("IPR_METRICS_TOKEN", "ALLOWED_HOSTS"))}


def scrape(client, **extra) -> str:
    r = client.get("/metrics", **extra)
    assert r.status_code == 200, r.content
    assert r["Content-Type"].startswith("text/plain; version=")
    return r.content.decode()


# -- the spool ------------------------------------------------------------------

def segment(spool_dir: Path, name: str, rows: np.ndarray) -> Path:
    """A closed segment in incoming/, written as the collector writes one."""
    writer = spool.SegmentWriter(spool_dir, name, 0, 0)
    writer.append(rows, 0)
    return writer.close()


def age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


@pytest.mark.django_db
def test_the_spool_gauges_count_each_directory_and_the_oldest_segment_s_age(client, spool_dir):
    rows = synthetic_rows(20, 1, HOUR0, ["192.0.2.1", "192.0.2.2"], "198.18.0.1")
    for i in range(1, 5):
        segment(spool_dir, f"web1-10-w0-{i}000.seg", rows[:5 * i])
    # The ingest claims the two oldest, as a worker does; one worker died long ago.
    fresh, dead = ingest.claim(spool_dir, 2)
    age(fresh, 30)
    age(dead, django_settings.STALE_CLAIM_SECONDS + 60)
    waiting = sorted((spool_dir / "incoming").glob("*.seg"))
    age(waiting[0], 400)
    age(waiting[1], 100)
    writer = spool.SegmentWriter(spool_dir, "web1-10-w1-5000.seg", 1, 5000)
    writer.append(rows[:3], 5000)  # still open
    writer.file.close()
    age(writer.path, 2)
    (spool_dir / "incoming" / "web1-9-w0-1.seg.bad").write_bytes(b"not a segment")

    text = scrape(client)
    size = lambda paths: sum(p.stat().st_size for p in paths)  # noqa: E731
    assert value(text, "ipr_spool_readable") == 1
    assert value(text, "ipr_spool_segments", state="incoming") == 2   # the .bad file is not one
    assert value(text, "ipr_spool_segments", state="processing") == 2
    assert value(text, "ipr_spool_segments", state="open") == 1
    assert value(text, "ipr_spool_bytes", state="incoming") == size(waiting)
    assert value(text, "ipr_spool_bytes", state="processing") == size([fresh, dead])
    assert value(text, "ipr_spool_bytes", state="open") == writer.path.stat().st_size
    assert value(text, "ipr_spool_oldest_segment_age_seconds", state="incoming") == pytest.approx(400, abs=5)
    assert value(text, "ipr_spool_oldest_segment_age_seconds", state="processing") == pytest.approx(
        django_settings.STALE_CLAIM_SECONDS + 60, abs=5)
    assert value(text, "ipr_spool_oldest_segment_age_seconds", state="open") == pytest.approx(2, abs=5)
    assert value(text, "ipr_spool_bad_segments") == 1
    # A stale claim is one the next ingest takes back, and only that one.
    assert value(text, "ipr_spool_stale_claims") == 1
    assert ingest.recover(spool_dir) == [dead.name]
    text = scrape(client)
    assert value(text, "ipr_spool_stale_claims") == 0
    assert value(text, "ipr_spool_segments", state="incoming") == 3
    assert value(text, "ipr_spool_oldest_segment_age_seconds", state="processing") == pytest.approx(30, abs=5)


@pytest.mark.django_db
def test_an_empty_spool_is_all_zeros_and_a_missing_one_is_unreadable(client, spool_dir, settings):
    text = scrape(client)
    for state in ("open", "incoming", "processing"):
        assert value(text, "ipr_spool_segments", state=state) == 0
        assert value(text, "ipr_spool_oldest_segment_age_seconds", state=state) == 0
    settings.SPOOL_DIR = spool_dir.parent / "elsewhere"
    text = scrape(client)
    assert value(text, "ipr_spool_readable") == 0
    assert not {n for n in names(text) if n.startswith("ipr_spool_")} - {"ipr_spool_readable"}
    assert value(text, "ipr_database_up") == 1   # the rest is still there


# -- the archive ----------------------------------------------------------------

def ingest_three_hours(spool_dir: Path) -> None:
    """One segment with traffic in the hour before HOUR0, HOUR0 and the hour
    after, ingested."""
    clients = ["192.0.2.1", "198.51.100.7", "2001:db8::1"]
    rows = np.concatenate([synthetic_rows(30, seed, minute, clients, "198.18.0.1")
                           for seed, minute in ((1, HOUR0 - 50), (2, HOUR0 + 10), (3, HOUR0 + 65))])
    spool.make_dirs(spool_dir)
    segment(spool_dir, "web1-10-w0-1000.seg", rows)
    assert ingest.ingest(spool_dir).segments == 1


def archive_two_hours() -> None:
    """The archive task's run just after HOUR0 is closed: the next hour is not."""
    closed = (HOUR0 + 60 + django_settings.ARCHIVE_GRACE_MINUTES + 1) * 60
    assert rollup.archive_pending(now=datetime.fromtimestamp(closed, tz.utc)) == 2


@pytest.mark.django_db
def test_the_archive_gauges_follow_the_ingest_and_the_hourly_archive(client, spool_dir, tmp_path, empty_archive):
    text = scrape(client)
    assert value(text, "ipr_archive_pending_hours") == 0
    assert value(text, "ipr_rollup_pending_days") == 0
    for absent in ("ipr_ingest_last_timestamp_seconds", "ipr_archive_newest_hour_timestamp_seconds",
                   "ipr_archive_oldest_pending_hour_timestamp_seconds"):
        assert absent not in names(text)

    # A segment ingested yesterday, then one now: the newest counts.
    yesterday = time.time() - 86400
    IngestedSegment.objects.create(name="web1-9-w0-1.seg", rows=1, bytes=1)
    IngestedSegment.objects.update(at=datetime.fromtimestamp(yesterday, tz.utc))
    assert value(scrape(client), "ipr_ingest_last_timestamp_seconds") == pytest.approx(yesterday, abs=1e-3)
    ingest_three_hours(tmp_path / "ingested")
    text = scrape(client)
    assert value(text, "ipr_ingest_last_timestamp_seconds") == pytest.approx(time.time(), abs=30)
    assert value(text, "ipr_archive_pending_hours") == 3
    assert value(text, "ipr_archive_oldest_pending_hour_timestamp_seconds") == (HOUR0 - 60) * 60
    assert "ipr_archive_newest_hour_timestamp_seconds" not in names(text)

    archive_two_hours()
    text = scrape(client)
    assert value(text, "ipr_archive_newest_hour_timestamp_seconds") == HOUR0 * 60
    assert value(text, "ipr_archive_pending_hours") == 1
    assert value(text, "ipr_archive_oldest_pending_hour_timestamp_seconds") == (HOUR0 + 60) * 60
    # The archived hours' days, marked by their archive (two if midnight is between them).
    days = {(HOUR0 - 60) // 1440, HOUR0 // 1440}
    assert value(text, "ipr_rollup_pending_days") == len(days)


# -- routing ----------------------------------------------------------------------

def make_routing(tmp_path: Path) -> dict:
    """edge1: a table loaded from its source, then a refresh refused; edge2:
    no source, never refreshed; a country source loaded, an .mmdb source
    refused, a disabled source. Returns the loaded table and record count."""
    edge1 = Router.objects.create(name="edge1", asn=64500, refresh_minutes=30)
    dump = tmp_path / "edge1.txt"
    dump.write_text(bird_dump([("10.0.0.0/8", "64601 64700"), ("10.1.0.0/16", "64601 64701"),
                               ("2001:db8::/32", "64601 64702")]))
    RouteSource.objects.create(router=edge1, path=str(dump))
    table = refresh_router(edge1.pk)
    dump.write_text("")
    with pytest.raises(RefreshError):
        refresh_router(edge1.pk)
    Router.objects.create(name="edge2", asn=64501)
    (tmp_path / "delegated.txt").write_text(demo_delegated())
    rir = DataSource.objects.create(name="rirs", kind="rir", path=str(tmp_path / "delegated.txt"))
    records = refresh_source(rir.pk)
    mmdb = DataSource.objects.create(name="geo", kind="mmdb", path=str(tmp_path / "missing.mmdb"),
                                     refresh_minutes=60)
    with pytest.raises(RefreshError):
        refresh_source(mmdb.pk)
    DataSource.objects.create(name="old", kind="rir", path=str(tmp_path / "gone"), enabled=False)
    return {"table": table, "records": records}


@pytest.mark.django_db
def test_the_routing_gauges_show_each_router_and_data_source(client, spool_dir, tmp_path):
    made = make_routing(tmp_path)
    edge1 = Router.objects.get(name="edge1")
    rirs, geo = DataSource.objects.get(name="rirs"), DataSource.objects.get(name="geo")
    text = scrape(client)

    assert value(text, "ipr_routing_router_active_routes", router="edge1") == made["table"].routes == 3
    assert value(text, "ipr_routing_router_active_routes", router="edge2") == 0
    # The refused refresh kept the table: its activation is the last success.
    assert value(text, "ipr_routing_router_table_activated_timestamp_seconds", router="edge1") == \
        pytest.approx(made["table"].activated.timestamp(), abs=1e-3)
    assert value(text, "ipr_routing_router_last_refresh_timestamp_seconds", router="edge1") == \
        pytest.approx(edge1.refreshed_at.timestamp(), abs=1e-3)
    assert edge1.refreshed_at > made["table"].activated
    assert value(text, "ipr_routing_router_refresh_failed", router="edge1") == 1
    assert value(text, "ipr_routing_router_refresh_failed", router="edge2") == 0
    assert value(text, "ipr_routing_router_refresh_interval_seconds", router="edge1") == 1800
    for name in ("ipr_routing_router_table_activated_timestamp_seconds",
                 "ipr_routing_router_last_refresh_timestamp_seconds",
                 "ipr_routing_router_refresh_interval_seconds"):  # edge2: none to tell
        assert value(text, name, router="edge2") is None

    assert value(text, "ipr_routing_source_records", source="rirs", kind="rir") == made["records"] > 0
    assert value(text, "ipr_routing_source_records", source="geo", kind="mmdb") == 0
    assert value(text, "ipr_routing_source_refresh_failed", source="rirs", kind="rir") == 0
    assert value(text, "ipr_routing_source_refresh_failed", source="geo", kind="mmdb") == 1
    assert value(text, "ipr_routing_source_last_refresh_timestamp_seconds", source="rirs", kind="rir") == \
        pytest.approx(rirs.refreshed_at.timestamp(), abs=1e-3)
    assert value(text, "ipr_routing_source_last_refresh_timestamp_seconds", source="geo", kind="mmdb") == \
        pytest.approx(geo.refreshed_at.timestamp(), abs=1e-3)
    assert value(text, "ipr_routing_source_refresh_interval_seconds", source="rirs", kind="rir") == 86400
    assert value(text, "ipr_routing_source_refresh_interval_seconds", source="geo", kind="mmdb") == 3600
    assert not [k for k in samples(text) if ("source", "old") in k[1]], "a disabled source is left out"


# -- the rest, and the whole output -----------------------------------------------

@pytest.mark.django_db
def test_it_says_its_version_and_that_the_database_answers(client, spool_dir):
    text = scrape(client)
    assert value(text, "ipr_info", version=__version__) == 1
    assert value(text, "ipr_database_up") == 1


def test_with_the_database_down_it_still_answers_with_the_spool(tmp_path):
    spool.make_dirs(tmp_path / "spool")
    (tmp_path / "spool" / "incoming" / "web1-1-w0-1.seg").write_bytes(b"x" * 100)
    code = ("import django; django.setup(); from django.test import Client; "
            "r = Client(HTTP_HOST='127.0.0.1').get('/metrics'); print(r.status_code); print(r.content.decode())")
    env = {**clean_environment(), "DJANGO_SETTINGS_MODULE": "ipr.settings", "IPR_DATA_DIR": str(tmp_path),
           "IPR_SPOOL_DIR": str(tmp_path / "spool"),
           "DATABASE_URL": f"postgres://postgres@127.0.0.1:{free_port()}/nothing"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    status, _, text = out.stdout.partition("\n")
    assert status == "200"
    assert value(text, "ipr_database_up") == 0
    assert value(text, "ipr_spool_segments", state="incoming") == 1
    assert value(text, "ipr_info", version=__version__) == 1
    assert not {n for n in names(text) if n.startswith(("ipr_archive_", "ipr_routing_", "ipr_ingest_"))}


@contextmanager
def locked_by_another_session(table: str):
    """Another session holds ``table`` (ACCESS EXCLUSIVE, as a long migration
    would) for up to 10 s or until the block ends; yields a function that
    tells whether it still holds it."""
    import psycopg
    locked, done = threading.Event(), threading.Event()

    def hold():
        with psycopg.connect(database_url()) as other:
            other.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            locked.set()
            done.wait(10)
    holder = threading.Thread(target=hold)
    holder.start()
    assert locked.wait(10)
    try:
        yield holder.is_alive
    finally:
        done.set()
        holder.join()


@pytest.mark.django_db
def test_a_part_whose_queries_take_too_long_is_left_out_and_logged(client, spool_dir, monkeypatch, caplog):
    if connection.vendor != "postgresql":
        pytest.skip("the time limit is PostgreSQL's statement_timeout")
    monkeypatch.setattr(metrics, "QUERY_TIMEOUT_MS", 300)
    with locked_by_another_session("traffic_pending") as holding:
        text = scrape(client)
        assert holding()   # answered while the lock was held: it did not wait for it
    families = {f.name for f in text_string_to_metric_families(text)}
    assert value(text, "ipr_database_up") == 1
    assert "ipr_archive_pending_hours" not in families
    assert "ipr_routing_router_refresh_failed" in families   # the other part still answers
    assert "metrics: archive_metrics failed, its metrics are left out: canceling statement" in caplog.text


def test_it_works_on_the_embedded_default_sqlite(tmp_path):
    # SQLite keeps the archive's times as text: the same gauges must come out.
    env = {k: v for k, v in clean_environment().items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DJANGO_SETTINGS_MODULE="ipr.settings", IPR_DATA_DIR=str(tmp_path))
    migrate = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env,
                             capture_output=True, text=True)
    assert migrate.returncode == 0, migrate.stderr
    code = ("import django; django.setup(); from django.test import Client; "
            f"from tests import test_metrics as t; from pathlib import Path; t.HOUR0 = {HOUR0}; "
            f"t.ingest_three_hours(Path({str(tmp_path / 'ingested')!r})); t.archive_two_hours(); "
            "r = Client(HTTP_HOST='127.0.0.1').get('/metrics'); print(r.content.decode())")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert value(text, "ipr_database_up") == 1
    assert value(text, "ipr_archive_newest_hour_timestamp_seconds") == HOUR0 * 60
    assert value(text, "ipr_archive_oldest_pending_hour_timestamp_seconds") == (HOUR0 + 60) * 60
    assert value(text, "ipr_ingest_last_timestamp_seconds") == pytest.approx(time.time(), abs=60)


@pytest.mark.django_db
def test_every_metric_has_help_and_is_described_in_the_operations_guide(client, spool_dir, tmp_path,
                                                                      empty_archive):
    make_routing(tmp_path)
    ingest_three_hours(tmp_path / "ingested")
    archive_two_hours()
    families = list(text_string_to_metric_families(scrape(client)))
    guide = OPERATIONS.read_text()
    assert len(families) >= 20
    for family in families:
        name = family.name + ("_info" if family.type == "info" else "")
        assert name.startswith("ipr_") and family.documentation, name
        assert family.samples, f"{name}: no samples in a state that has them all"
        assert re.search(rf"`{name}[{{`]", guide), f"{name} is not described in docs/operations.md"


# -- who may read it --------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("address", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
def test_without_a_token_it_answers_this_host(client, spool_dir, settings, address):
    settings.METRICS_TOKEN = None
    assert client.get("/metrics", REMOTE_ADDR=address).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("address", ["192.0.2.10", "::ffff:192.0.2.10", "2001:db8::1", ""])
def test_without_a_token_it_refuses_other_addresses(client, spool_dir, settings, address):
    settings.METRICS_TOKEN = None
    r = client.get("/metrics", REMOTE_ADDR=address)
    assert r.status_code == 403
    assert r.content.decode() == "without IPR_METRICS_TOKEN, /metrics answers only to requests from this host\n"


@pytest.mark.django_db
@pytest.mark.parametrize("header, shown", [
    ("HTTP_X_FORWARDED_FOR", "X-Forwarded-For"), ("HTTP_X_REAL_IP", "X-Real-Ip"),
    ("HTTP_FORWARDED", "Forwarded"), ("HTTP_X_FORWARDED_PROTO", "X-Forwarded-Proto")])
def test_without_a_token_it_refuses_what_a_local_proxy_passes_on(client, spool_dir, settings, header, shown):
    settings.METRICS_TOKEN = None
    r = client.get("/metrics", REMOTE_ADDR="127.0.0.1", **{header: "203.0.113.5"})
    assert r.status_code == 403
    assert r.content.decode().count("\n") == 1 and f"(this request has {shown})" in r.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("authorization", [None, f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x", f"Basic {TOKEN}",
                                           "Bearer", TOKEN])
def test_with_a_token_every_request_needs_it(client, spool_dir, settings, authorization):
    settings.METRICS_TOKEN = TOKEN
    extra = {"HTTP_AUTHORIZATION": authorization} if authorization is not None else {}
    r = client.get("/metrics", REMOTE_ADDR="127.0.0.1", **extra)   # from this host too
    assert r.status_code == 401
    assert r["WWW-Authenticate"] == 'Bearer realm="ipr metrics"'
    assert r.content.decode().count("\n") == 1 and "IPR_METRICS_TOKEN" in r.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("scheme", ["Bearer", "bearer"])
def test_with_the_right_token_it_answers_from_anywhere_through_a_proxy(client, spool_dir, settings, scheme):
    settings.METRICS_TOKEN = TOKEN
    r = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_AUTHORIZATION=f"{scheme} {TOKEN}",
                   HTTP_X_FORWARDED_FOR="192.0.2.99")
    assert r.status_code == 200
    assert value(r.content.decode(), "ipr_database_up") == 1


@pytest.mark.django_db
def test_it_only_answers_get_and_head(client, spool_dir):
    assert client.head("/metrics").status_code == 200
    assert client.post("/metrics").status_code == 405


def token_setting(tmp_path, **env) -> tuple[int, str]:
    clean = clean_environment()
    clean.update(DJANGO_SETTINGS_MODULE="ipr.settings", IPR_DATA_DIR=str(tmp_path), **env)
    out = subprocess.run([sys.executable, "-c", "import django; django.setup(); from django.conf import "
                          "settings; print(settings.METRICS_TOKEN)"], cwd=ROOT, env=clean,
                         capture_output=True, text=True)
    return out.returncode, out.stdout.strip() if out.returncode == 0 else out.stderr


def test_the_token_setting_reads_a_file_and_refuses_a_weak_token(tmp_path):
    (tmp_path / "token").write_text(TOKEN + "\n")
    assert token_setting(tmp_path, IPR_METRICS_TOKEN_FILE=str(tmp_path / "token")) == (0, TOKEN)
    assert token_setting(tmp_path) == (0, "None")
    for bad in ("short", "a token with spaces in it", "x" * 15):
        code, err = token_setting(tmp_path, IPR_METRICS_TOKEN=bad)
        assert code != 0 and "ImproperlyConfigured: IPR_METRICS_TOKEN: expected at least 16" in err


class WebUI:
    """A real gunicorn serving ipr on 127.0.0.1."""

    def __init__(self, workdir: Path, **env):
        self.port = free_port()
        self.log = workdir / f"gunicorn-{self.port}.log"
        data = workdir / "web-data"
        data.mkdir(exist_ok=True)
        self.env = clean_environment()
        self.env.update(DJANGO_SETTINGS_MODULE="ipr.settings", DATABASE_URL=database_url(), IPR_DATA_DIR=str(data),
                        IPR_SPOOL_DIR=str(django_settings.SPOOL_DIR), **env)
        self.proc = None

    def __enter__(self):
        self.logf = open(self.log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "ipr.wsgi:application", "--bind", f"127.0.0.1:{self.port}",
             "--workers", "1"], cwd=ROOT, env=self.env, stdout=self.logf, stderr=subprocess.STDOUT,
            start_new_session=True)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"gunicorn exited:\n{self.log.read_text()}")
            try:
                return self.get("/healthz")[0]
            except OSError:
                return None
        wait_until(up, "gunicorn to answer", explain=lambda: self.log.read_text())
        return self

    def get(self, path: str, **headers) -> tuple[int, str]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)   # its own session: only what this test started
                self.proc.wait(30)
        self.logf.close()


@pytest.mark.django_db
def test_under_gunicorn_a_proxied_request_is_refused_and_a_token_file_is_required(tmp_path, spool_dir):
    with WebUI(tmp_path) as web:
        status, text = web.get("/metrics")
        assert status == 200 and value(text, "ipr_spool_readable") == 1
        assert web.get("/metrics", **{"X-Forwarded-For": "198.51.100.1"})[0] == 403
    (tmp_path / "token").write_text(TOKEN + "\n")
    with WebUI(tmp_path, IPR_METRICS_TOKEN_FILE=str(tmp_path / "token")) as web:
        assert web.get("/metrics")[0] == 401
        assert web.get("/metrics", Authorization=f"Bearer {TOKEN[::-1]}")[0] == 401
        status, text = web.get("/metrics", Authorization=f"Bearer {TOKEN}", **{"X-Forwarded-For": "198.51.100.1"})
        assert status == 200 and value(text, "ipr_database_up") == 1


# -- the example alert rules and scrape configuration -----------------------------

# PromQL's words that are not metrics: operators, modifiers and the
# aggregations (which may be followed by "by (...)" rather than "(").
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
            "offset", "bool", "sum", "min", "max", "avg", "count", "group", "stddev", "stdvar", "topk",
            "bottomk", "quantile", "count_values"}


def rules() -> list[dict]:
    doc = yaml.safe_load((EXAMPLES / "ipr-alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def selectors(expr: str) -> list[tuple[str, dict[str, list[str]]]]:
    """The metrics an expression reads, each with its label matchers
    (label: the values it may match)."""
    found = []
    expr = re.sub(r"\[[^\]]*\]", "", expr)   # range durations: [10m]
    for m in re.finditer(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?(\s*\()?", expr):
        name, matchers, call = m.groups()
        grouping = re.search(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*$", expr[:m.start()])
        if call or name in KEYWORDS or grouping:
            continue   # a function, a keyword or a label in a grouping
        labels = {}
        for label, _op, values in re.findall(r'(\w+)\s*(=~|=)\s*"([^"]*)"', matchers or ""):
            labels[label] = values.split("|")
        found.append((name, labels))
    return found


@pytest.mark.django_db(transaction=True)
def test_every_alert_reads_metrics_and_labels_that_the_collector_or_the_web_ui_expose(tmp_path, settings,
                                                                                     empty_archive):
    # The web UI: a real gunicorn, on a state where every gauge has a sample.
    settings.SPOOL_DIR = tmp_path / "spool"
    spool.make_dirs(settings.SPOOL_DIR)
    make_routing(tmp_path)
    ingest_three_hours(tmp_path / "ingested")
    archive_two_hours()
    with WebUI(tmp_path) as web:
        status, web_text = web.get("/metrics")
    assert status == 200, web_text
    # The collector: a real one that accepted, lost and rejected datagrams, and reloaded well and badly.
    with CollectorProcess(tmp_path / "collector") as collector:
        record = wire.Record(client="203.0.113.9", server="192.0.2.1", traffic_type="api", status=200,
                             response_bytes=1000, requests=1)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for seq in (1, 3):   # 2 is lost
                s.sendto(make_datagram([record], seq), collector.address())
            s.sendto(b"GET / HTTP/1.0\r\n\r\n", collector.address())
        collector.wait_metric("ipr_collector_sender_lost_datagrams_total{sender=\"1\"}", 1)
        collector.signal(signal.SIGHUP)
        collector.wait_metric('ipr_collector_reloads_total{result="ok"}', 1)
        collector.key_file.write_text("{not json")
        collector.signal(signal.SIGHUP)
        collector.wait_metric('ipr_collector_reloads_total{result="failed"}', 1)
        collector_text = urllib.request.urlopen(
            f"http://127.0.0.1:{collector.metrics_port}/metrics", timeout=10).read().decode()

    exposed: dict[str, dict[str, set[str]]] = {"up": {}}   # "up": Prometheus's own, per target
    for text in (web_text, collector_text):
        for name, labels in samples(text):
            for label, v in labels:
                exposed.setdefault(name, {}).setdefault(label, set()).add(v)
            exposed.setdefault(name, {})
    used = set()
    for rule in rules():
        for name, labels in selectors(rule["expr"]):
            used.add(name)
            assert name in exposed, f"{rule['alert']}: {name} is exposed by neither endpoint"
            for label, values in labels.items():
                if name == "up":
                    continue
                missing = set(values) - exposed[name].get(label, set())
                assert not missing, f"{rule['alert']}: {name} has no {label} {sorted(missing)}"
    # The parse found the metrics: a rule per group of the brief at least.
    assert {"ipr_collector_datagrams_rejected_total", "ipr_collector_socket_drops_total",
            "ipr_collector_spool_errors_total", "ipr_spool_oldest_segment_age_seconds",
            "ipr_spool_stale_claims", "ipr_routing_router_refresh_failed",
            "ipr_routing_source_refresh_failed", "ipr_routing_router_table_activated_timestamp_seconds",
            "ipr_archive_oldest_pending_hour_timestamp_seconds", "ipr_database_up", "up"} <= used


def test_every_alert_says_what_it_is_and_what_to_look_at():
    seen = set()
    guide = OPERATIONS.read_text()
    for rule in rules():
        assert rule["alert"].startswith("Ipr") and rule["alert"] not in seen
        seen.add(rule["alert"])
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and len(rule["annotations"]["description"]) > 80
        assert f"`{rule['alert']}`" in guide, f"{rule['alert']} is not described in docs/operations.md"


def test_the_scrape_configuration_has_both_endpoints():
    doc = yaml.safe_load((EXAMPLES / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in doc["scrape_configs"]}
    assert jobs["ipr-collector"]["static_configs"][0]["targets"] == ["127.0.0.1:9478"]
    web = jobs["ipr-web"]
    assert web["static_configs"][0]["targets"] == ["127.0.0.1:8000"] and web["metrics_path"] == "/metrics"
    assert web["authorization"]["type"] == "Bearer" and web["authorization"]["credentials_file"]
    # The alerts name these jobs.
    up = next(rule for rule in rules() if "up{" in rule["expr"])
    assert set(re.search(r'job=~"([^"]*)"', up["expr"]).group(1).split("|")) == set(jobs)


PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (Debian: prometheus)")


@needs_promtool
def test_promtool_accepts_the_rules_and_the_scrape_configuration(tmp_path):
    out = subprocess.run([PROMTOOL, "check", "rules", str(EXAMPLES / "ipr-alerts.yml")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    (tmp_path / "token").write_text(TOKEN)
    config = (EXAMPLES / "prometheus.yml").read_text()
    config = config.replace("/etc/prometheus/ipr-alerts.yml", str(EXAMPLES / "ipr-alerts.yml"))
    config = config.replace("/etc/prometheus/ipr-quality-alerts.yml", str(EXAMPLES / "ipr-quality-alerts.yml"))
    config = config.replace("/etc/prometheus/ipr-metrics-token", str(tmp_path / "token"))
    (tmp_path / "prometheus.yml").write_text(config)
    out = subprocess.run([PROMTOOL, "check", "config", str(tmp_path / "prometheus.yml")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


C = 'job="ipr-collector", instance="127.0.0.1:9478"'
W = 'job="ipr-web", instance="127.0.0.1:8000"'
# Per alert: the series that make it fire by the evaluation time (minutes),
# and the same series when all is well.
ALERT_CASES = {
    "IprCollectorForgedDatagrams": (
        {f'ipr_collector_datagrams_rejected_total{{{C}, reason="bad_tag"}}': ("0 0 0 5 5 5 5", "0x6")}, 5),
    "IprCollectorSenderMisconfigured": (
        {f'ipr_collector_datagrams_rejected_total{{{C}, reason="unknown_key"}}': ("0+1x30", "0x30")}, 25),
    "IprCollectorMalformedDatagrams": (
        {f'ipr_collector_datagrams_rejected_total{{{C}, reason="garbage"}}': ("0+1x30", "0x30")}, 25),
    "IprCollectorStaleDatagrams": (
        {f'ipr_collector_datagrams_rejected_total{{{C}, reason="stale"}}': ("0+5x30", "0x30"),
         f'ipr_collector_datagrams_received_total{{{C}}}': ("0+100x30", "0+100x30")}, 25),
    "IprCollectorSocketDrops": ({f"ipr_collector_socket_drops_total{{{C}}}": ("0 0 0 10 20 30", "0x5")}, 5),
    "IprCollectorSpoolWriteErrors": ({f"ipr_collector_spool_errors_total{{{C}}}": ("0 0 1 1 1", "0x4")}, 4),
    "IprCollectorReloadFailed": (
        {f'ipr_collector_reloads_total{{{C}, result="failed"}}': ("0 0 1 1", "0x3"),
         f'ipr_collector_reloads_total{{{C}, result="ok"}}': ("0 0 1 1", "0 0 1 1")}, 3),
    "IprSenderLosingDatagrams": (
        {f'ipr_collector_sender_lost_datagrams_total{{{C}, sender="7"}}': ("0+5x40", "0x40"),
         f'ipr_collector_sender_datagrams_total{{{C}, sender="7"}}': ("0+100x40", "0+100x40")}, 35),
    "IprCollectorSpoolGrowing": (
        {f'ipr_collector_spool_segments{{{C}, state="incoming"}}': ("10+1x40", "5x40")}, 35),
    "IprIngestLag": ({f'ipr_spool_oldest_segment_age_seconds{{{W}, state="incoming"}}': ("400x10", "60x10")}, 6),
    "IprSpoolStaleClaims": ({f"ipr_spool_stale_claims{{{W}}}": ("1x10", "0x10")}, 6),
    "IprSpoolBadSegments": ({f"ipr_spool_bad_segments{{{W}}}": ("1x3", "0x3")}, 1),
    "IprSpoolUnreadable": ({f"ipr_spool_readable{{{W}}}": ("0x15", "1x15")}, 12),
    "IprDatabaseDown": ({f"ipr_database_up{{{W}}}": ("0x5", "1x5")}, 3),
    # promtool's clock starts at 0 (1970): the hour is 20000 s before it.
    "IprArchiveLag": ({f"ipr_archive_oldest_pending_hour_timestamp_seconds{{{W}}}": ("-20000x30", "0x30")}, 20),
    "IprRollupBehind": ({f"ipr_rollup_pending_days{{{W}}}": ("3x150", "2x150")}, 130),
    "IprRouterRefreshFailed": ({f'ipr_routing_router_refresh_failed{{{W}, router="edge1"}}': ("1x3", "0x3")}, 1),
    "IprRouterTableOld": (
        {f'ipr_routing_router_table_activated_timestamp_seconds{{{W}, router="edge1"}}': ("-20000x5", "0x5"),
         f'ipr_routing_router_refresh_interval_seconds{{{W}, router="edge1"}}': ("900x5", "900x5")}, 2),
    "IprRouterWithoutTable": ({f'ipr_routing_router_active_routes{{{W}, router="edge1"}}': ("0x40", "1000x40")}, 35),
    "IprDataSourceRefreshFailed": (
        {f'ipr_routing_source_refresh_failed{{{W}, source="rirs", kind="rir"}}': ("1x3", "0x3")}, 1),
    "IprDataSourceNotRefreshed": (
        {f'ipr_routing_source_last_refresh_timestamp_seconds{{{W}, source="rirs", kind="rir"}}':
            ("-400000x5", "0x5"),
         f'ipr_routing_source_refresh_interval_seconds{{{W}, source="rirs", kind="rir"}}': ("86400x5", "86400x5")}, 2),
    "IprTargetDown": ({'up{job="ipr-web", instance="127.0.0.1:8000"}': ("0x5", "1x5")}, 3),
}


@needs_promtool
def test_each_alert_fires_on_its_condition_and_not_when_all_is_well(tmp_path):
    assert set(ALERT_CASES) == {rule["alert"] for rule in rules()}, "every alert needs a case here"
    tests = []
    for alert, (series, minutes) in ALERT_CASES.items():
        for bad, firing in ((0, [{"labels": f'{{alertname="{alert}"}}', "value": 1}]), (1, [])):
            tests.append({
                "name": f"{alert} {'fires' if firing else 'is quiet'}", "interval": "1m",
                "input_series": [{"series": s, "values": v[bad]} for s, v in series.items()],
                "promql_expr_test": [{"expr": 'count by (alertname) (ALERTS{alertstate="firing"})',
                                      "eval_time": f"{minutes}m", "exp_samples": firing}]})
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(
        {"rule_files": [str(EXAMPLES / "ipr-alerts.yml")], "evaluation_interval": "1m", "tests": tests}))
    out = subprocess.run([PROMTOOL, "test", "rules", str(tmp_path / "tests.yml")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.django_db
def test_the_check_spool_task_logs_a_change_of_health_once_not_every_run(spool_dir, settings, caplog, monkeypatch):
    from cron.tasks import check_spool
    from ipr.traffic import health

    monkeypatch.setattr(health, "_last_ok", None)   # a fresh worker process
    caplog.set_level(logging.DEBUG)

    def runs(n):
        caplog.clear()
        results = {check_spool() for _ in range(n)}
        return results, [(r.levelname, r.getMessage()) for r in caplog.records
                         if r.name.startswith("ipr") and r.levelno >= logging.INFO]

    assert runs(3) == ({True}, [])
    settings.SPOOL_DIR = spool_dir / "missing"
    results, logged = runs(3)
    assert results == {False}
    assert [level for level, _ in logged] == ["ERROR"]
    assert logged[0][1].startswith("unhealthy: spool ") and "missing" in logged[0][1]
    settings.SPOOL_DIR = spool_dir
    assert runs(3) == ({True}, [("WARNING", "healthy again")])
