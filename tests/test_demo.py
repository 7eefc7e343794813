"""The README's first command: `manage.py demo` on the embedded default
(SQLite, tasks in process), from the collector to the archive, with a
backdated history whose charts have a shape."""
import json
import os
import re
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    data = tmp_path_factory.mktemp("demo")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "IPR_SPOOL_DIR")}
    env.update(IPR_DATA_DIR=str(data), DJANGO_SETTINGS_MODULE="ipr.settings")

    def manage(*args, check=True):
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=300)
        assert not check or done.returncode == 0, done.stdout + done.stderr
        return done

    manage("migrate", "--noinput", "-v0")
    out = manage("demo", "--synthetic", "300").stdout
    return {"out": out, "data": data, "manage": manage, "env": env}


def section(out: str, start: str, end: str) -> str:
    return out[out.index(start):out.index(end)]


def test_the_archive_holds_what_the_spool_held(demo):
    added, spooled = map(int, re.search(r"This run added (\d+) requests to the archive; the spool held (\d+)",
                                        demo["out"]).groups())
    assert added == spooled > 300 * 10


def test_the_tables_name_every_as_and_route_every_public_client(demo):
    out = demo["out"]
    origin = section(out, "By origin AS", "By neighbour AS")
    rows = re.findall(r"^   (AS\d+)(.*?)\s+\d+\.\d%", origin, re.M)
    assert len(rows) == 5 and all(name.strip() for _, name in rows), origin  # a name beside each number
    assert "unrouted" not in origin
    neighbours = section(out, "By neighbour AS", "By country")
    assert {"AS64601", "AS64602", "AS64603", "AS64604"} <= set(re.findall(r"AS\d+", neighbours))
    assert "ATLAS-TRANSIT" in neighbours and "NORDLYS" in neighbours
    assert re.search(r"^   DE Germany ", section(out, "By country", "By prefix"), re.M)


def test_the_sites_loopback_client_is_its_own_bucket_not_an_as_or_a_country(demo):
    out = demo["out"]
    requests = int(re.search(r"The site's own client 127\.0\.0\.1: 127\.0\.0\.0/8 \(loopback\), (\d+) requests",
                             out).group(1))
    assert requests >= 59  # the readiness probe and the 58 requests of the plan
    db = sqlite3.connect(demo["data"] / "ipr.sqlite3")
    rows = db.execute("SELECT DISTINCT origin_as, neighbor_as, country FROM traffic_prefix_hour "
                      "WHERE prefix = '127.0.0.0/8' UNION SELECT DISTINCT origin_as, neighbor_as, country "
                      "FROM traffic_current WHERE prefix = '127.0.0.0/8'").fetchall()
    assert rows == [(0, 0, "ZZ")]
    # The demo's table routes 127/8 from AS65127 (country IN): none of it went there.
    assert db.execute("SELECT count(*) FROM traffic_origin_hour WHERE asn = 65127").fetchone()[0] == 0


def test_spool_status_and_healthz_are_healthy_after_the_demo(demo):
    assert "Health (spool_status, /healthz): ok" in demo["out"]
    done = demo["manage"]("spool_status", check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] and report["spool"]["incoming"]["segments"] == 0
    code = ("import django; django.setup(); from django.test import Client; "
            "print(Client(HTTP_HOST='localhost').get('/healthz').status_code)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=demo["env"], capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "200", done.stdout + done.stderr


def test_its_last_line_runs_the_ui_with_the_virtualenvs_gunicorn_as_the_readme_does(demo):
    last = demo["out"].strip().splitlines()[-1]
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"`(gunicorn [^`]*ipr\.wsgi)`", readme).group(1)
    gunicorn = Path(sys.executable).parent / "gunicorn"  # the demo ran from the checkout's root
    shown = gunicorn.relative_to(ROOT) if gunicorn.is_relative_to(ROOT) else gunicorn
    assert f"{shown} {command[len('gunicorn '):]}" in last, last
    assert "manage.py createsuperuser" in last and "runserver" not in last


def test_the_history_has_a_daily_curve_several_routers_and_one_as_that_got_worse(demo):
    db = sqlite3.connect(demo["data"] / "ipr.sqlite3")
    now = datetime.now(timezone.utc)
    since = (now - timedelta(days=8, hours=1)).strftime("%Y-%m-%d %H:%M:%S")
    hourly = db.execute("SELECT hour, sum(requests) FROM traffic_total_hour WHERE hour >= ? GROUP BY hour",
                        [since]).fetchall()
    assert len(hourly) >= 8 * 24 - 2  # every hour of eight days has traffic
    by_hour_of_day = {}
    for stamp, requests in hourly:
        by_hour_of_day.setdefault(int(stamp[11:13]), []).append(requests)
    mean = {h: sum(v) / len(v) for h, v in by_hour_of_day.items()}
    assert mean[20] > 2 * mean[8]  # the evening peak and the morning trough
    carried = db.execute("SELECT count(DISTINCT router_id) FROM traffic_total_hour").fetchone()[0]
    assert carried >= 2
    countries = db.execute("SELECT count(DISTINCT country) FROM traffic_country_all_hour").fetchone()[0]
    assert countries >= 12
    # The worse AS: retransmits and RTT of its last hours against the same
    # hours a week before, over demo-edge's uplink, and not over the other.
    worse = int(re.search(r"AS(\d+) gets worse in the last \d+ hours over demo-edge's uplink", demo["out"]).group(1))
    edge = (now - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    routers = dict(db.execute("SELECT name, id FROM routing_router").fetchall())

    def rates(router, start, end):
        return db.execute(
            "SELECT sum(retrans_segs) * 1.0 / sum(data_segs), sum(rtt_sum_us) * 1.0 / sum(tcpinfo_records) "
            "FROM traffic_origin_hour WHERE asn = ? AND router_id = ? AND hour >= ? AND hour < ?",
            [worse, routers[router], start.strftime("%Y-%m-%d %H:%M:%S"),
             end.strftime("%Y-%m-%d %H:%M:%S")]).fetchone()

    week = timedelta(days=7)
    now_rate, now_rtt = rates("demo-edge", edge, edge + timedelta(hours=2))
    was_rate, was_rtt = rates("demo-edge", edge - week, edge - week + timedelta(hours=2))
    assert now_rate > 3 * was_rate and now_rtt > was_rtt + 70_000
    now_rate, now_rtt = rates("demo-edge-2", edge, edge + timedelta(hours=2))
    was_rate, was_rtt = rates("demo-edge-2", edge - week, edge - week + timedelta(hours=2))
    assert now_rate < 1.5 * was_rate and now_rtt < was_rtt + 20_000


def test_a_rerun_adds_no_history_minute_twice(demo):
    # Last in this module: it runs the demo again on the same archive.
    db = sqlite3.connect(demo["data"] / "ipr.sqlite3")
    until = (datetime.now(timezone.utc) - timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S")

    def older():
        return db.execute("SELECT sum(requests), count(*) FROM traffic_total_hour WHERE hour < ?",
                          [until]).fetchone()

    before = older()
    assert before[0] > 0
    out = demo["manage"]("demo", "--synthetic", "300").stdout
    assert "only the minutes that an earlier run's history did not cover" in out
    added, spooled = map(int, re.search(r"This run added (\d+) requests to the archive; the spool held (\d+)",
                                        out).groups())
    assert added == spooled
    assert older() == before   # a day ago and older: exactly what the first run archived
