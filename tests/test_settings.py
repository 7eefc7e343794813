"""ipr/settings.py reads the environment and fails loudly on bad values.

Each case runs in a fresh interpreter, since settings are read once.
"""
import json
import os
import subprocess
import sys

import pytest

from tests.collector_helpers import ROOT

PRINT = ("import django, json; django.setup(); from django.conf import settings as s; "
         "print(json.dumps({'engine': s.DATABASES['default']['ENGINE'], "
         "'name': str(s.DATABASES['default']['NAME']), 'eager': s.CELERY_TASK_ALWAYS_EAGER, "
         "'broker': s.CELERY_BROKER_URL, 'debug': s.DEBUG, 'key': s.SECRET_KEY, "
         "'hosts': s.ALLOWED_HOSTS, 'spool': str(s.SPOOL_DIR)}))")


def settings_with(tmp_path, **env):
    clean = {k: v for k, v in os.environ.items()
             if k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "IPR_DEBUG", "ALLOWED_HOSTS")}
    clean.update(DJANGO_SETTINGS_MODULE="ipr.settings", IPR_DATA_DIR=str(tmp_path / "var"), **env)
    out = subprocess.run([sys.executable, "-c", PRINT], capture_output=True, text=True, cwd=ROOT, env=clean)
    return out.returncode, (json.loads(out.stdout) if out.returncode == 0 else out.stderr)


def test_with_no_settings_it_runs_on_sqlite_with_in_process_tasks(tmp_path):
    code, s = settings_with(tmp_path)
    assert code == 0, s
    assert s["engine"] == "django.db.backends.sqlite3"
    assert s["name"] == str(tmp_path / "var" / "ipr.sqlite3")
    assert s["eager"] is True and s["broker"] == "memory://"
    assert s["debug"] is False
    assert s["spool"] == str(tmp_path / "var" / "spool")
    # A secret key is made once and kept.
    code2, s2 = settings_with(tmp_path)
    assert len(s["key"]) >= 32 and s2["key"] == s["key"]
    assert oct((tmp_path / "var" / "secret_key").stat().st_mode & 0o777) == "0o600"


def test_database_url_switches_to_postgresql_and_redis_url_to_a_real_broker(tmp_path):
    code, s = settings_with(tmp_path, DATABASE_URL="postgres://postgres@127.0.0.1:5432/ipr",
                            REDIS_URL="redis://127.0.0.1:6379/3")
    assert code == 0, s
    assert s["engine"] == "django.db.backends.postgresql"
    assert s["name"] == "ipr"
    assert s["eager"] is False and s["broker"] == "redis://127.0.0.1:6379/3"


def test_secrets_can_come_from_files(tmp_path):
    (tmp_path / "key").write_text("k" * 40 + "\n")
    (tmp_path / "db").write_text("postgres://ipr:s3cret@db.example:5432/traffic\n")
    code, s = settings_with(tmp_path, SECRET_KEY_FILE=str(tmp_path / "key"),
                            DATABASE_URL_FILE=str(tmp_path / "db"))
    assert code == 0, s
    assert s["key"] == "k" * 40
    assert s["name"] == "traffic"


@pytest.mark.parametrize("env, message", [
    ({"IPR_DEBUG": "maybe"}, "IPR_DEBUG='maybe': expected one of"),
    ({"DATABASE_URL": "mysql://root@localhost/ipr"}, "ipr runs on PostgreSQL or SQLite"),
    ({"DATABASE_URL": "nonsense"}, "DATABASE_URL"),
    ({"REDIS_URL": "amqp://guest@localhost//"}, "REDIS_URL='amqp://guest@localhost//': expected redis://"),
    ({"SECRET_KEY": "short"}, "SECRET_KEY must be at least 32 characters"),
    ({"SECRET_KEY": "x" * 40, "SECRET_KEY_FILE": "/etc/passwd"}, "set SECRET_KEY or SECRET_KEY_FILE, not both"),
    ({"SECRET_KEY_FILE": "/nonexistent/key"}, "SECRET_KEY_FILE: cannot read /nonexistent/key"),
    ({"IPR_SPOOL_MAX_BACKLOG_SECONDS": "soon"}, "IPR_SPOOL_MAX_BACKLOG_SECONDS='soon': expected an integer"),
    ({"IPR_LOG_LEVEL": "LOUD"}, "IPR_LOG_LEVEL='LOUD'"),
    ({"IPR_LOGIN_FAILURES": "0"}, "IPR_LOGIN_FAILURES=0: expected 1..1000"),
    ({"IPR_LOGIN_COOLOFF_MINUTES": "soon"}, "IPR_LOGIN_COOLOFF_MINUTES='soon': expected an integer"),
    ({"IPR_TRUSTED_PROXIES": "10.0.0.1,proxy.example"}, "IPR_TRUSTED_PROXIES: 'proxy.example'"),
])
def test_a_bad_value_stops_start_up_with_a_message_naming_it(tmp_path, env, message):
    code, err = settings_with(tmp_path, **env)
    assert code != 0
    assert "ImproperlyConfigured" in err and message in err
