"""The Django side: health on the configured database (PostgreSQL under
`make test`), the newcomer path on SQLite, and Celery on a real Redis."""
import ipaddress
import os
import re
import subprocess
import sys
import time
import uuid

import pytest
import redis
from django.db import connection
from django.db.models import F

from collector import spool
from tests.collector_helpers import ROOT


@pytest.fixture
def spool_dir(tmp_path, settings):
    settings.SPOOL_DIR = tmp_path / "spool"
    spool.make_dirs(settings.SPOOL_DIR)
    return settings.SPOOL_DIR


@pytest.mark.django_db
def test_healthz_is_200_when_the_database_answers_and_the_spool_is_drained(client, spool_dir):
    r = client.get("/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["ok"] is True
    assert body["database"] == connection.vendor
    assert body["spool"]["incoming"] == {"segments": 0, "bytes": 0, "oldest_age": None}


def test_the_test_suite_runs_on_postgresql_when_make_test_says_so():
    # `make test` sets DATABASE_URL to this machine's PostgreSQL.
    if os.environ.get("DATABASE_URL", "").startswith("postgres"):
        assert connection.vendor == "postgresql"
    else:
        pytest.skip("DATABASE_URL is not PostgreSQL (run through `make test`)")


@pytest.mark.django_db
def test_healthz_is_503_and_says_why_when_segments_wait_too_long(client, spool_dir, settings):
    settings.SPOOL_MAX_BACKLOG_SECONDS = 60
    old = spool_dir / "incoming" / "old.seg"
    old.write_bytes(b"x")
    os.utime(old, (time.time() - 600, time.time() - 600))
    r = client.get("/healthz")
    assert r.status_code == 503
    assert "oldest incoming segment waits for 600 s" in r.json()["problems"][0]
    assert r.json()["spool"]["incoming"]["segments"] == 1


def test_the_newcomer_path_migrates_and_checks_on_sqlite_with_no_settings(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["IPR_DATA_DIR"] = str(tmp_path)
    run = lambda *args: subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,  # noqa: E731
                                       capture_output=True, text=True)
    assert run("migrate", "--noinput").returncode == 0
    assert (tmp_path / "ipr.sqlite3").stat().st_size > 0
    spool.make_dirs(tmp_path / "spool")
    out = run("spool_status")
    assert out.returncode == 0, out.stderr
    assert '"database": "sqlite"' in out.stdout
    # And the task runs in process: no broker needed.
    code = ("import django; django.setup(); from cron.tasks import check_spool; "
            "from django.conf import settings; assert settings.CELERY_TASK_ALWAYS_EAGER; "
            "r = check_spool.delay(); print('result', r.get())")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={**env, "DJANGO_SETTINGS_MODULE": "ipr.settings"})
    assert out.returncode == 0, out.stderr
    assert "result True" in out.stdout


def test_a_celery_worker_on_redis_runs_the_tasks(tmp_path):
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.skip("REDIS_URL is not set (run through `make test`)")
    queue = f"test-{uuid.uuid4().hex[:8]}"
    spool.make_dirs(tmp_path / "spool")
    env = {**os.environ, "IPR_DATA_DIR": str(tmp_path), "DATABASE_URL": "sqlite:///" + str(tmp_path / "db")}
    log = open(tmp_path / "worker.log", "wb")
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "cron", "worker", "--pool=solo",
                               "-Q", queue, "--loglevel=INFO", "--without-mingle", "--without-gossip"],
                              cwd=ROOT, env=env, stdout=log, stderr=log)
    try:
        send = ("import django; django.setup(); from cron.tasks import check_spool; "
                f"check_spool.apply_async(queue={queue!r})")
        subprocess.run([sys.executable, "-c", send], cwd=ROOT, check=True,
                       env={**env, "DJANGO_SETTINGS_MODULE": "ipr.settings"})
        deadline = time.monotonic() + 60
        text = ""
        while time.monotonic() < deadline:
            text = (tmp_path / "worker.log").read_text()
            if "ipr.check_spool" in text and "succeeded" in text:
                break
            time.sleep(0.3)
        # It ran here and found ipr healthy (it logs only a change of health).
        assert re.search(r"ipr\.check_spool\[[0-9a-f-]+\] succeeded in \S+s: True", text), text
        assert redis.Redis.from_url(url).ping()
    finally:
        worker.terminate()
        worker.wait(30)


def test_every_beat_entry_expires_within_its_period():
    from cron.schedule import SCHEDULE
    assert SCHEDULE
    for name, entry in SCHEDULE.items():
        schedule = entry["schedule"]
        if hasattr(schedule, "total_seconds"):
            period = schedule.total_seconds()
        else:  # a crontab at one minute of one hour: once a day
            assert len(schedule.hour) == 1 and len(schedule.minute) == 1, name
            period = 86400
        assert entry["options"]["expires"] <= period, name


# -- login throttling -------------------------------------------------------------------

LOGINS = ["/accounts/login/", "/admin/login/", "/api/auth/login/"]


def _login(client, url, password, username="alice", **extra):
    return client.post(url, {"username": username, "password": password}, **extra)


def _logged_in(client) -> bool:
    return "_auth_user_id" in client.session


@pytest.fixture
def alice(django_user_model):
    django_user_model.objects.create_user("alice", password="right-password-1", is_staff=True)
    django_user_model.objects.create_user("bob", password="right-password-2", is_staff=True)


@pytest.mark.django_db
@pytest.mark.parametrize("url", LOGINS)
def test_wrong_passwords_lock_that_user_out_from_that_address_even_with_the_right_one(client, alice, settings,
                                                                                       url):
    from django.test import Client
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _login(client, url, "wrong").status_code == 200  # the form again, with its error
    assert _login(client, url, "wrong").status_code == 429
    r = _login(client, url, "right-password-1")
    assert r.status_code == 429 and not _logged_in(client)
    assert "Too many failed logins" in r.content.decode()
    # Another user from that address, and that user from another address, are not locked out.
    assert _login(client, url, "right-password-2", username="bob").status_code == 302
    other = Client(REMOTE_ADDR="192.0.2.9")
    assert _login(other, url, "right-password-1").status_code == 302 and _logged_in(other)


@pytest.mark.django_db
def test_the_lock_ends_after_the_cool_off_and_a_success_clears_the_count(client, alice, settings):
    from axes.models import AccessAttempt
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _login(client, "/accounts/login/", "wrong")
    assert _login(client, "/accounts/login/", "right-password-1").status_code == 429
    # The cool-off has passed when the last failure is that long ago.
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - settings.AXES_COOLOFF_TIME)
    assert _login(client, "/accounts/login/", "right-password-1").status_code == 302
    assert not AccessAttempt.objects.exists()


@pytest.mark.django_db
def test_a_forwarded_address_counts_only_from_a_trusted_proxy(client, alice, settings):
    # Not trusted (the default): the header is the client's own writing,
    # so changing it dodges nothing.
    settings.TRUSTED_PROXIES = []
    for i in range(settings.AXES_FAILURE_LIMIT):
        _login(client, "/accounts/login/", "wrong", HTTP_X_FORWARDED_FOR=f"198.51.100.{i}")
    assert _login(client, "/accounts/login/", "right-password-1",
                  HTTP_X_FORWARDED_FOR="198.51.100.200").status_code == 429
    # Behind a trusted proxy, the address it forwards is the client's: one
    # client locked out, not everybody behind the proxy.
    settings.TRUSTED_PROXIES = [ipaddress.ip_network("10.0.0.0/8")]
    proxy = {"REMOTE_ADDR": "10.1.2.3"}
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _login(client, "/accounts/login/", "wrong", HTTP_X_FORWARDED_FOR="203.0.113.7, 10.9.9.9", **proxy)
    assert _login(client, "/accounts/login/", "right-password-1",
                  HTTP_X_FORWARDED_FOR="203.0.113.7", **proxy).status_code == 429
    # A client's own X-Forwarded-For, left of what the proxy appended, changes nothing.
    assert _login(client, "/accounts/login/", "right-password-1",
                  HTTP_X_FORWARDED_FOR="192.0.2.1, 203.0.113.7", **proxy).status_code == 429
    assert _login(client, "/accounts/login/", "right-password-1",
                  HTTP_X_FORWARDED_FOR="203.0.113.8", **proxy).status_code == 302
