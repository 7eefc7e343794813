"""From spool segments to the archive: every table conserves what the spool
held, and a crash, a rerun or a late segment neither loses nor double counts."""
import ipaddress
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.db import connection

from collector import spool
from ipr.routing.load import refresh_router
from ipr.routing.lookup import address_bytes
from ipr.routing.models import Router, ServedNetwork
from ipr.routing.samples import bird_dump
from ipr.traffic import ingest, rollup, tables
from ipr.traffic.models import IngestedSegment, Pending

# The routes here resolve clients in 10/8, 192.0.2/24, 2001:db8::/32...
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("routed_stand_ins")]


@pytest.fixture(autouse=True)
def empty_archive(django_db_blocker):
    # The archive tables are not Django models, so a test database flush
    # does not empty them.
    with django_db_blocker.unblock(), connection.cursor() as cur:
        for name in tables.TABLES:
            cur.execute(f"DELETE FROM {name}")

ROOT = Path(__file__).resolve().parents[1]
# A minute number: the start of the hour three hours ago, inside the window.
HOUR0 = (int(time.time()) // 3600 - 3) * 60


def make_rows(n, seed=1, clients=None, servers=None, minutes=(HOUR0, HOUR0 + 59, HOUR0 + 61)):
    rng = np.random.default_rng(seed)
    rows = np.zeros(n, spool.ROW)
    clients = clients or ["10.1.2.3", "10.2.0.9", "10.1.200.1", "192.0.2.5", "2001:db8::7", "2001:db9::1"]
    servers = servers or ["198.18.0.1", "198.18.1.1", "203.0.113.9"]
    rows["minute"] = rng.choice(minutes, n)
    rows["client"] = np.array([address_bytes(c) for c in clients], dtype="V16")[rng.integers(0, len(clients), n)]
    rows["server"] = np.array([address_bytes(s) for s in servers], dtype="V16")[rng.integers(0, len(servers), n)]
    rows["traffic_type"] = np.array([b"web", b"video"])[rng.integers(0, 2, n)]
    for field in ("records", "connections", "tcpinfo_records", "segs_records", "bytes_records"):
        rows[field] = rng.integers(1, 50, n)
    rows["requests"] = rows["records"]
    rows["status"] = rng.integers(0, 10, (n, 6))
    for field in ("response_bytes", "wire_bytes", "retrans_bytes", "data_segs", "retrans_segs",
                  "rtt_sum_us", "duration_sum_us"):
        rows[field] = rng.integers(0, 10**9, n)
    rows["rtt_hist"] = rng.integers(0, 20, (n, spool.RTT_BUCKETS))
    rows["min_rtt_us"] = np.where(rng.random(n) < 0.1, spool.NO_MIN_RTT, rng.integers(100, 90_000, n))
    return rows


def write_segment(spool_dir, rows, name):
    """A closed segment named ``name`` in incoming/ (pipeline_helpers' own names it)."""
    spool.make_dirs(spool_dir)
    writer = spool.SegmentWriter(spool_dir, name, 0, 0)
    writer.append(rows, 0)
    return writer.close()


@pytest.fixture
def routed(tmp_path):
    a = Router.objects.create(name="a", asn=64500, is_default=True)
    b = Router.objects.create(name="b", asn=64500)
    ServedNetwork.objects.create(router=a, network="198.18.0.0/24")
    ServedNetwork.objects.create(router=b, network="198.18.1.0/24")
    for router, transit in ((a, 64601), (b, 64602)):
        dump = tmp_path / f"{router.name}.txt"
        dump.write_text(bird_dump([("10.1.0.0/16", f"{transit} 64701"), ("10.0.0.0/8", f"{transit} 64700"),
                                   ("2001:db8::/32", f"{transit} 64702")]))
        refresh_router(router.pk, [str(dump)])
    return a, b


def archive_all():
    """The hourly archive and the daily rollups, of every pending hour and day."""
    rollup.archive_pending(everything=True)
    rollup.rollup_pending()


def totals(name):
    with connection.cursor() as cur:
        cur.execute(f"SELECT {', '.join(f'sum({m})' for m in tables.SUMS)}, min(min_rtt_us) FROM {name}")
        return [int(v) if v is not None else None for v in cur.fetchone()]


def expected(rows):
    mins = rows["min_rtt_us"][rows["min_rtt_us"] != spool.NO_MIN_RTT]
    return [int(c.astype(np.int64).sum()) for c in ingest._columns(rows)] + [int(mins.min()) if len(mins) else None]


def grouped(name, key):
    with connection.cursor() as cur:
        cur.execute(f"SELECT {key}, sum(wire_bytes), sum(requests) FROM {name} GROUP BY {key} ORDER BY 1")
        return {str(k).strip(): (int(w), int(r)) for k, w, r in cur.fetchall()}


def fail_at(monkeypatch, name, call, error):
    """Make ingest.<name> raise ``error`` at its ``call``-th call (from 1);
    returns the names of the threads that made each call."""
    real, threads = getattr(ingest, name), []

    def wrapper(*args, **kwargs):
        threads.append(threading.current_thread().name)
        if len(threads) == call:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(ingest, name, wrapper)
    return threads


def test_every_table_holds_exactly_what_the_spool_held(routed, tmp_path):
    rows = make_rows(5000)
    write_segment(tmp_path, rows[:3000], "h-1-w0-1.seg")
    write_segment(tmp_path, rows[3000:], "h-1-w1-2.seg")
    result = ingest.ingest(tmp_path)
    assert (result.segments, result.rows, result.skipped) == (2, 5000, 0)
    assert not list(tmp_path.glob("*/*.seg"))
    archive_all()
    want = expected(rows)
    for name in tables.TABLES:
        assert totals(name) == want, name


def test_rows_go_to_the_router_route_origin_neighbour_and_country_they_belong_to(routed):
    a, b = routed
    rows = make_rows(3000, seed=2)
    ingest.write(ingest.summarise(rows))
    archive_all()
    # An independent answer per row, from the test's own reading of the tables.
    def origin(client):
        ip = ipaddress.ip_address(client)
        for net, asn in (("10.1.0.0/16", 64701), ("10.0.0.0/8", 64700), ("2001:db8::/32", 64702)):
            if ip in ipaddress.ip_network(net):
                return asn
        return 0

    def router(server):
        return {"198.18.0.1": a.pk, "198.18.1.1": b.pk}.get(server, a.pk)  # a is the default router

    texts = {address_bytes(t): t for t in ["10.1.2.3", "10.2.0.9", "10.1.200.1", "192.0.2.5", "2001:db8::7",
                                  "2001:db9::1", "198.18.0.1", "198.18.1.1", "203.0.113.9"]}
    want_origin, want_neighbor = {}, {}
    for r in rows:
        c, s = texts[bytes(r["client"])], texts[bytes(r["server"])]
        o = origin(c)
        want_origin[str(o)] = want_origin.get(str(o), 0) + int(r["wire_bytes"])
        n = 0 if o == 0 else (64601 if router(s) == a.pk else 64602)
        want_neighbor[str(n)] = want_neighbor.get(str(n), 0) + int(r["wire_bytes"])
    assert {k: w for k, (w, _) in grouped("traffic_origin_hour", "asn").items()} == want_origin
    assert {k: w for k, (w, _) in grouped("traffic_neighbor_hour", "asn").items()} == want_neighbor
    prefixes = set(grouped("traffic_prefix_hour", "prefix"))
    # Unrouted clients are kept, by family: 192.0.2.5 and 2001:db9::1.
    assert prefixes == {"10.1.0.0/16", "10.0.0.0/8", "2001:db8::/32", "0.0.0.0/0", "::/0"}


def test_a_crash_before_the_commit_loses_nothing_when_the_segment_is_claimed_again(routed, tmp_path,
                                                                                   monkeypatch):
    rows = make_rows(2000, seed=3)
    write_segment(tmp_path, rows, "h-1-w0-1.seg")
    real_write = ingest.write

    def crash(batches, **kwargs):
        real_write(dict(list(batches.items())[:2]), **kwargs)  # some tables written...
        raise KeyboardInterrupt("worker killed")     # ...then the worker dies

    monkeypatch.setattr(ingest, "write", crash)
    with pytest.raises(KeyboardInterrupt):
        ingest.ingest(tmp_path)
    assert list((tmp_path / "processing").glob("*.seg")) and IngestedSegment.objects.count() == 0
    assert totals("traffic_current")[0] is None  # rolled back
    assert not Pending.objects.exists()
    monkeypatch.setattr(ingest, "write", real_write)
    assert ingest.ingest(tmp_path).segments == 0  # a fresh claim is not stale yet
    ingest.recover(tmp_path, older_than=0)
    assert ingest.ingest(tmp_path).segments == 1
    assert totals("traffic_current") == expected(rows)


def test_a_segment_ingested_before_is_not_counted_twice(routed, tmp_path):
    rows = make_rows(1000, seed=4)
    path = write_segment(tmp_path, rows, "h-1-w0-1.seg")
    data = path.read_bytes()
    ingest.ingest(tmp_path)
    # The worker died after its commit, before it removed the file: it comes back.
    (tmp_path / "incoming" / "h-1-w0-1.seg").write_bytes(data)
    result = ingest.ingest(tmp_path)
    assert (result.segments, result.skipped) == (0, 1)
    assert not list(tmp_path.glob("*/*.seg"))
    archive_all()
    assert totals("traffic_origin_hour") == expected(rows)


def test_two_workers_never_claim_the_same_segment(tmp_path):
    for i in range(10):
        write_segment(tmp_path, make_rows(5, seed=i), f"h-1-w0-{i}.seg")
    first = ingest.claim(tmp_path, 6)
    second = ingest.claim(tmp_path, 6)
    assert len(first) == 6 and len(second) == 4
    assert not {p.name for p in first} & {p.name for p in second}


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_at_any_moment_loses_and_doubles_nothing(routed, tmp_path):
    rows = make_rows(200_000, seed=5)
    write_segment(tmp_path, rows, "h-1-w0-1.seg")
    env = {**os.environ, "IPR_SPOOL_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "ipr.settings"}
    if connection.vendor == "postgresql":
        env["DATABASE_URL"] = "postgres://postgres@127.0.0.1:5432/" + connection.settings_dict["NAME"]
    else:
        env["DATABASE_URL"] = "sqlite:///" + connection.settings_dict["NAME"]
    worker = subprocess.Popen([sys.executable, "manage.py", "ingest"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)  # mid-segment, or done: either way the totals must be exact
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    ingest.recover(tmp_path, older_than=0)
    ingest.ingest(tmp_path)
    assert not list(tmp_path.glob("*/*.seg"))
    assert totals("traffic_current") == expected(rows)
    assert IngestedSegment.objects.count() == 1


def test_the_daily_rollup_can_run_again_and_retention_drops_old_rows(routed, tmp_path, settings):
    rows = make_rows(500, seed=6)
    ingest.write(ingest.summarise(rows))
    rollup.archive_pending(everything=True)
    day = ingest.datetime.utcfromtimestamp(HOUR0 * 60).date()
    first = rollup.rollup_day(day)
    assert rollup.rollup_day(day) == first > 0
    in_day = rows["minute"] // 1440 == HOUR0 // 1440
    assert totals("traffic_country_day")[:3] == expected(rows[in_day])[:3]
    settings.KEEP_CURRENT_HOURS = 1
    now = ingest.datetime.fromtimestamp((HOUR0 + 180) * 60, ingest.tz.utc)
    rollup.retention(now)
    assert totals("traffic_current")[0] is None  # older than an hour: gone
    assert totals("traffic_prefix_hour") == expected(rows)  # 90 days: kept


def sums_by_hour(name):
    with connection.cursor() as cur:
        cur.execute(f"SELECT {'hour'}, sum(requests), sum(wire_bytes) FROM {name} GROUP BY 1 ORDER BY 1")
        return [(str(h)[:16], int(r), int(w)) for h, r, w in cur.fetchall()]


def by_key(name, columns):
    """Every measure of ``name`` summed per ``columns`` (time first)."""
    with connection.cursor() as cur:
        cur.execute(f"SELECT {', '.join(columns)}, {', '.join(f'sum({m})' for m in tables.SUMS)}, "
                    f"min(min_rtt_us) FROM {name} GROUP BY {', '.join(columns)}")
        return {tuple(str(v).strip() for v in r[:len(columns)]): tuple(int(v) if v is not None else None
                                                                     for v in r[len(columns):])
                for r in cur.fetchall()}


def test_each_coarse_table_is_its_source_summed_over_what_it_leaves_out(routed, tmp_path):
    # Two hours in the window and one older than it (added straight to the
    # hourly tables, whose coarse twins are then computed again).
    rows = make_rows(4000, seed=30)
    old_hour = HOUR0 - 3 * 1440
    late = make_rows(600, seed=31, minutes=(old_hour + 5, old_hour + 70))
    write_segment(tmp_path, rows, "h-1-w0-1.seg")
    write_segment(tmp_path, late, "h-1-w0-2.seg")
    ingest.ingest(tmp_path)
    archive_all()
    assert set(tables.DERIVED) == {n for n in tables.TABLES if n != "traffic_current" and
                                   n not in tables.ROLLUPS and n not in tables.HOURLY_SOURCES}
    for name, source in tables.DERIVED.items():
        keys = tables.key_columns(name)
        coarse = by_key(name, keys)
        assert len(coarse) > 1, name
        assert coarse == by_key(source, keys), name
    assert totals("traffic_origin_all_hour") == expected(np.concatenate([rows, late]))


def test_the_hourly_archive_waits_for_the_hour_to_close_and_can_run_again(routed):
    rows = make_rows(2000, seed=7)
    ingest.write(ingest.summarise(rows))
    assert totals("traffic_prefix_hour")[0] is None  # the window has it; the hours are pending
    assert Pending.objects.filter(level="hour").count() == 2
    # An hour is archived once it is closed (and its grace has passed), not before.
    end_of_first = ingest.datetime.fromtimestamp((HOUR0 + 60) * 60, ingest.tz.utc)
    assert rollup.archive_pending(now=end_of_first) == 0
    later = end_of_first + timedelta(minutes=settings_grace() + 1)
    assert rollup.archive_pending(now=later) == 1
    assert totals("traffic_prefix_hour") == expected(rows[rows["minute"] < HOUR0 + 60])
    archive_all()
    first = {name: totals(name) for name in tables.HOURLY}
    # Running it again changes nothing: each run replaces the hour.
    rollup.archive_hour(ingest.datetime.fromtimestamp(HOUR0 * 60, ingest.tz.utc))
    rollup.archive_hour(ingest.datetime.fromtimestamp((HOUR0 + 60) * 60, ingest.tz.utc))
    assert {name: totals(name) for name in tables.HOURLY} == first
    for name in tables.HOURLY:
        assert first[name] == expected(rows), name


def settings_grace():
    from django.conf import settings
    return settings.ARCHIVE_GRACE_MINUTES


def test_a_late_segment_makes_its_hour_archived_again_with_everything(routed, tmp_path):
    early, late = make_rows(1500, seed=8), make_rows(700, seed=9)
    write_segment(tmp_path, early, "h-1-w0-1.seg")
    ingest.ingest(tmp_path)
    archive_all()
    assert totals("traffic_country_hour") == expected(early)
    assert not Pending.objects.exists()
    write_segment(tmp_path, late, "h-1-w1-2.seg")  # the same hours, from another collector process
    ingest.ingest(tmp_path)
    assert Pending.objects.filter(level="hour").count() == 2
    archive_all()
    both = np.concatenate([early, late])
    for name in tables.TABLES:
        assert totals(name) == expected(both), name
    assert sums_by_hour("traffic_origin_hour") == sums_by_hour("traffic_prefix_hour")


def test_traffic_older_than_the_window_is_added_to_the_hourly_tables_directly(routed, tmp_path, settings):
    # A collector that was cut off for days: its segments are older than the window keeps.
    old_hour = HOUR0 - 3 * 1440
    rows = make_rows(1200, seed=10, minutes=(old_hour, old_hour + 30, old_hour + 75))
    write_segment(tmp_path, rows, "h-1-w0-1.seg")
    ingest.ingest(tmp_path)
    assert totals("traffic_current")[0] is None
    assert not Pending.objects.filter(level="hour").exists()
    for name in tables.HOURLY:
        assert totals(name) == expected(rows), name
    # Another late segment of those hours adds to them.
    more = make_rows(300, seed=11, minutes=(old_hour + 10,))
    write_segment(tmp_path, more, "h-1-w0-2.seg")
    ingest.ingest(tmp_path)
    both = np.concatenate([rows, more])
    assert totals("traffic_prefix_hour") == expected(both)
    rollup.rollup_pending()
    assert totals("traffic_origin_day") == expected(both)


def test_an_hour_still_pending_when_it_leaves_the_window_is_archived_before_traffic_is_added_to_it(
        routed, tmp_path, settings):
    first = make_rows(800, seed=12, minutes=(HOUR0 + 5,))
    ingest.write(ingest.summarise(first))  # pending: the archive task has not run
    assert Pending.objects.filter(level="hour").count() == 1
    settings.KEEP_CURRENT_HOURS = 2  # now the hour is older than the window holds whole
    second = make_rows(500, seed=13, minutes=(HOUR0 + 6,))
    ingest.write(ingest.summarise(second))
    assert not Pending.objects.filter(level="hour").exists()
    assert totals("traffic_prefix_hour") == expected(np.concatenate([first, second]))
    assert totals("traffic_current") == expected(first)


def test_every_route_s_as_path_is_kept_per_origin_and_neighbour(routed):
    a, b = routed
    rows = make_rows(2000, seed=14)
    ingest.write(ingest.summarise(rows))
    archive_all()
    with connection.cursor() as cur:
        cur.execute("SELECT router_id, origin_as, neighbor_as, as_path FROM traffic_path_hour "
                    "GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4")
        got = {(r, o, n, p) for r, o, n, p in cur.fetchall()}
    want = {(router.pk, origin, transit, f"{transit} {origin}")
            for router, transit in ((a, 64601), (b, 64602)) for origin in (64700, 64701, 64702)}
    want |= {(router.pk, 0, 0, "") for router in (a, b)}  # the unrouted clients
    assert got == want
    assert totals("traffic_path_day") == expected(rows)


def test_a_batch_with_a_segment_ingested_before_adds_only_the_new_one(routed, tmp_path):
    old, new = make_rows(400, seed=15), make_rows(600, seed=16)
    path = write_segment(tmp_path, old, "h-1-w0-1.seg")
    data = path.read_bytes()
    ingest.ingest(tmp_path)
    (tmp_path / "incoming" / "h-1-w0-1.seg").write_bytes(data)  # back after its commit
    write_segment(tmp_path, new, "h-1-w0-2.seg")
    result = ingest.ingest(tmp_path)
    assert (result.segments, result.skipped, result.batches) == (1, 1, 1)
    assert totals("traffic_current") == expected(np.concatenate([old, new]))


def test_the_archive_command_computes_an_hour_again_and_refuses_one_the_window_lost(routed):
    from django.core.management import CommandError, call_command

    rows = make_rows(900, seed=17)
    ingest.write(ingest.summarise(rows))
    hour = ingest.datetime.fromtimestamp(HOUR0 * 60, ingest.tz.utc)
    call_command("archive", hour.strftime("%Y-%m-%dT%H"), stdout=open(os.devnull, "w"))
    assert totals("traffic_neighbor_hour") == expected(rows[rows["minute"] < HOUR0 + 60])
    assert Pending.objects.filter(level="hour").count() == 1  # the other hour still waits
    with pytest.raises(CommandError, match="older than the window"):
        call_command("archive", (hour - timedelta(days=5)).strftime("%Y-%m-%dT%H"))


def test_the_hourly_archive_is_exact_for_sums_beyond_a_float_s_precision(routed):
    rows = make_rows(300, seed=18, minutes=(HOUR0 + 1,))
    rows["wire_bytes"][:3] = 2 ** 61 + 1  # three rows whose sum needs 63 bits, exactly
    ingest.write(ingest.summarise(rows))
    archive_all()
    for name in tables.TABLES:
        if name != "traffic_current":
            assert totals(name) == expected(rows), name


def test_a_segment_that_does_not_parse_is_set_aside_and_the_others_are_ingested(routed, tmp_path, caplog):
    rows = make_rows(500, seed=19)
    write_segment(tmp_path, rows, "h-1-w0-1.seg")
    (tmp_path / "incoming" / "h-1-w0-0.seg").write_bytes(b"IPRSPOOL" + b"\x07" * 40)  # not a segment
    result = ingest.ingest(tmp_path)
    assert (result.segments, result.bad) == (1, 1)
    assert [p.name for p in (tmp_path / "incoming").iterdir()] == ["h-1-w0-0.seg.bad"]
    assert "h-1-w0-0.seg" in caplog.text and "set aside" in caplog.text
    assert totals("traffic_current") == expected(rows)
    assert ingest.ingest(tmp_path).segments == 0  # the bad one is not claimed again


@pytest.mark.django_db(transaction=True)
def test_batches_stored_by_a_thread_while_the_next_is_summed_lose_nothing_when_it_fails(routed, tmp_path,
                                                                                        monkeypatch):
    segments = [make_rows(400, seed=30 + i) for i in range(4)]
    for i, rows in enumerate(segments):
        write_segment(tmp_path, rows, f"h-1-w0-{i}.seg")
    real = ingest.write
    calls = fail_at(monkeypatch, "write", 3, RuntimeError("the database went away"))
    with pytest.raises(RuntimeError, match="went away"):
        ingest.ingest(tmp_path, batch_rows=400)  # a batch per segment
    if connection.vendor == "postgresql":
        assert set(calls) == {"ipr-ingest-writer"}  # stored by the writer thread
    assert IngestedSegment.objects.count() == 2
    assert totals("traffic_current") == expected(np.concatenate(segments[:2]))
    ingest.recover(tmp_path, older_than=0)  # what the next run does once the claims are stale
    monkeypatch.setattr(ingest, "write", real)
    result = ingest.ingest(tmp_path, batch_rows=400)
    assert (result.segments, result.skipped) == (2, 0)
    assert not list(tmp_path.glob("*/*.seg"))
    assert totals("traffic_current") == expected(np.concatenate(segments))


def test_the_window_is_partitioned_by_hour_and_a_day_partition_made_before_still_takes_its_rows(routed):
    if connection.vendor != "postgresql":
        pytest.skip("partitions are PostgreSQL's")
    rows = make_rows(600, seed=12)
    ingest.write(ingest.summarise(rows))
    with connection.cursor() as cur:
        cur.execute("SELECT tableoid::regclass::text, min(minute), max(minute), count(*) FROM traffic_current "
                    "GROUP BY 1 ORDER BY 2")
        held = cur.fetchall()
    first = ingest.datetime.fromtimestamp(HOUR0 * 60, ingest.tz.utc)
    second = first + timedelta(hours=1)
    assert [h[0] for h in held] == [f"traffic_current_h{first:%Y%m%d%H}", f"traffic_current_h{second:%Y%m%d%H}"]
    for name, low, high, _ in held:
        assert low.replace(minute=0) == high.replace(minute=0)  # one hour per partition
    # A window partitioned by day (an archive from before the window was by
    # hour): the day's rows still go to that day's partition, and no
    # overlapping hour is made.
    # (The day after the test's own hours, which may span a midnight.)
    day = (second + timedelta(days=1)).replace(hour=0)
    with connection.cursor() as cur:
        # (Hours of that day that other tests made, ahead: this test's rows are before it.)
        for part, low, high in tables.partitions(cur, "traffic_current"):
            if low < day + timedelta(days=1) and high > day:
                cur.execute(f"DROP TABLE {part}")
        cur.execute(f"CREATE TABLE traffic_current_d{day:%Y%m%d} PARTITION OF traffic_current "
                    f"FOR VALUES FROM ('{day:%Y-%m-%d}+00') TO ('{day + timedelta(days=1):%Y-%m-%d}+00')")
    later = int(day.timestamp() // 60) + 90
    late = make_rows(300, seed=13, minutes=(later, later + 120))
    ingest.write(ingest.summarise(late))
    with connection.cursor() as cur:
        cur.execute("SELECT tableoid::regclass::text, sum(requests) FROM traffic_current "
                    "WHERE minute >= %s GROUP BY 1", [day])
        assert cur.fetchall() == [(f"traffic_current_d{day:%Y%m%d}", int(late["requests"].sum()))]
    assert totals("traffic_current") == expected(np.concatenate([rows, late]))
    # Retention drops the hours (and the day) whole.
    rollup.archive_pending(everything=True)
    with connection.cursor() as cur:
        before = {p for p, _, _ in tables.partitions(cur, "traffic_current")}
        rollup.retention(day + timedelta(days=1, hours=ingest.settings.KEEP_CURRENT_HOURS))
        after = {p for p, _, _ in tables.partitions(cur, "traffic_current")}
    assert {h[0] for h in held} | {f"traffic_current_d{day:%Y%m%d}"} <= before - after
    assert totals("traffic_prefix_hour") == expected(np.concatenate([rows, late]))


@pytest.mark.parametrize("distinct", [1, 3, ingest.FEW, ingest.FEW + 1, 40])
def test_text_keys_map_to_ids_of_their_distinct_values(distinct):
    rng = np.random.default_rng(distinct)
    names = np.array([f"type-{i}".encode() for i in range(distinct)], dtype="S16")
    values = names[rng.integers(0, distinct, 5000)]
    values[:distinct] = names  # every one present
    for few in (True, False):
        got, ids = ingest._ids(values, few=few)
        assert sorted(got) == sorted(names.tolist())
        assert (np.array(got, dtype="S16")[ids] == values).all()


def window_rows():
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM traffic_current")
        return cur.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_a_batch_stored_in_parts_while_the_next_part_is_summed_is_exact_and_all_or_nothing(
        routed, tmp_path, monkeypatch):
    segments = [make_rows(3000, seed=40 + i) for i in range(3)]
    for i, rows in enumerate(segments):
        write_segment(tmp_path, rows, f"p-1-w0-{i}.seg")
    monkeypatch.setattr(ingest, "PART_ROWS", 500)  # up to 6 parts a segment (fewer: 8 routes)
    parts = list(ingest.summarise_parts(segments[0]))
    second = len(list(ingest.summarise_parts(segments[1])))
    assert 2 <= len(parts) <= 6 and second >= 2
    # The parts share no window key: a route's rows are all in one part.
    seen = set()
    for part in parts:
        p = part["traffic_current"]
        keys = set(zip(*(p.keys[c].tolist() for c in ("minute", "router_id", "traffic_type", "prefix"))))
        prefixes = p.dims["prefix"]  # texts (SQLite) or a binary COPY column (PostgreSQL)
        name = (prefixes.__getitem__ if isinstance(prefixes, list) else
                lambda i: prefixes[1][i, :prefixes[0][i]].tobytes())
        routes = {(r, name(i)) for r, i in zip(p.keys["router_id"].tolist(), p.keys["prefix"].tolist())}
        assert not routes & seen
        seen |= routes
        assert len(keys) == len(p)
    # A part that fails to be stored (the second part of the second batch),
    # then summing that fails half way through that batch: either way the
    # parts stored so far are rolled back, and nothing of the batch is kept.
    for name, call, error in (("write", len(parts) + 2, RuntimeError("the database went away")),
                              ("_summarised", 2, ValueError("a bad part"))):
        real = getattr(ingest, name)
        fail_at(monkeypatch, name, call, error)
        with pytest.raises(type(error), match=str(error)):
            ingest.ingest(tmp_path, batch_rows=3000)
        assert IngestedSegment.objects.count() == 1
        assert totals("traffic_current") == expected(segments[0])
        monkeypatch.setattr(ingest, name, real)
        ingest.recover(tmp_path, older_than=0)
    result = ingest.ingest(tmp_path, batch_rows=3000)
    assert (result.segments, result.skipped) == (2, 0)
    assert not list(tmp_path.glob("*/*.seg"))
    all_rows = np.concatenate(segments)
    assert totals("traffic_current") == expected(all_rows)
    # As many rows as each segment summed whole would make: parts never split a key.
    assert window_rows() == sum(len(ingest.summarise(rows)["traffic_current"]) for rows in segments)
    archive_all()
    for name in tables.HOURLY:
        assert totals(name) == expected(all_rows), name


def test_coarse_tables_of_a_range_starting_within_a_day_get_the_partition_of_the_next_month(routed, tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("partitions are PostgreSQL's")
    write_segment(tmp_path, make_rows(500, seed=40), "h-1-w0-40.seg")
    ingest.ingest(tmp_path)
    archive_all()
    # The source rows moved to 02:00 on the first of a month no partition
    # exists for, and a range from noon of the day before.
    first = "2031-03-01 02:00:00+00"
    start, end = "2031-02-28 12:00:00+00:00", "2031-03-01 06:00:00+00:00"
    names = [n for n, source in tables.DERIVED.items() if tables.TABLES[n][0] == "hour"]
    with connection.cursor() as cur:
        for name in names:
            cur.execute(f"DROP TABLE IF EXISTS {name}_m203103")
        for source in {tables.DERIVED[n] for n in names}:
            tables.ensure_partitions(source, {first})
            cur.execute(f"DELETE FROM {source} WHERE hour >= %s::timestamptz", [start])
            columns = tables.key_columns(source) + tables.MEASURES
            shifted = ", ".join("%s::timestamptz" if c == "hour" else c for c in columns)
            cur.execute(f"INSERT INTO {source} ({', '.join(columns)}) SELECT {shifted} FROM {source} "
                        f"WHERE hour < %s::timestamptz", [first, start])
    rollup.derive("hour", start, end)
    for name in names:
        keys = tables.key_columns(name)
        moved = {k: v for k, v in by_key(tables.DERIVED[name], keys).items() if k[0].startswith("2031-03-01")}
        assert moved, name
        assert {k: v for k, v in by_key(name, keys).items() if k[0].startswith("2031-03-01")} == moved, name


def _age(path, seconds):
    t = time.time() - seconds
    os.utime(path, (t, t))


CLAIMER = """
import os, sys, time, django
django.setup()
from pathlib import Path
from ipr.traffic import ingest
print(ingest.claim(Path(sys.argv[1]), 1)[0].name, flush=True)
time.sleep(300)
"""


def claimed_by_another_process(spool_dir):
    """A worker process that has claimed one segment and is still running."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "ipr.settings", "PYTHONPATH": str(ROOT)}
    worker = subprocess.Popen([sys.executable, "-c", CLAIMER, str(spool_dir)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, text=True)
    name = worker.stdout.readline().strip()
    assert name, "the worker claimed nothing"
    return worker, name


def test_a_claim_whose_worker_was_killed_is_taken_back_at_once(tmp_path):
    write_segment(tmp_path, make_rows(5), "h-1-w0-1.seg")
    worker, name = claimed_by_another_process(tmp_path)
    try:
        assert ingest.recover(tmp_path) == []  # its worker runs: the claim stays
        assert (tmp_path / "processing" / name).exists()
        worker.kill()
        # Dead but not yet reaped by its parent (a zombie), as a killed
        # Celery child is for a moment.
        os.waitid(os.P_PID, worker.pid, os.WEXITED | os.WNOWAIT)
        assert ingest.recover(tmp_path) == [name]
    finally:
        worker.kill()
        worker.wait()
    assert (tmp_path / "incoming" / name).exists()
    assert not list((tmp_path / "processing").iterdir())  # its note went with it
    # Taken again and ingested: the next run removes the note left behind.
    write_segment(tmp_path, make_rows(5, seed=2), "h-1-w0-2.seg")
    first, second = ingest.claim(tmp_path, 2)
    first.unlink()
    ingest.recover(tmp_path)
    assert sorted(p.name for p in (tmp_path / "processing").iterdir()) == [second.name, second.name + ".claim"]


def test_a_claim_of_a_live_or_unknown_worker_is_taken_back_after_the_setting_s_delay(tmp_path, settings):
    settings.STALE_CLAIM_SECONDS = 100
    for i in (1, 2):
        write_segment(tmp_path, make_rows(5, seed=i), f"h-1-w0-{i}.seg")
    mine, elsewhere = ingest.claim(tmp_path, 2)
    (tmp_path / "processing" / (elsewhere.name + ".claim")).write_text("another-host 1 1\n")
    for path in (mine, elsewhere):
        _age(path, 90)
    assert ingest.recover(tmp_path) == []
    for path in (mine, elsewhere):
        _age(path, 110)
    assert sorted(ingest.recover(tmp_path)) == sorted([mine.name, elsewhere.name])


def test_a_claim_older_than_the_setting_makes_health_healthz_spool_status_and_metrics_unhealthy(
        tmp_path, settings, client):
    settings.SPOOL_DIR = tmp_path
    settings.STALE_CLAIM_SECONDS = 100
    write_segment(tmp_path, make_rows(5), "h-1-w0-1.seg")
    (path,) = ingest.claim(tmp_path, 1)
    _age(path, 50)
    assert client.get("/healthz").status_code == 200
    _age(path, 200)
    r = client.get("/healthz")
    assert r.status_code == 503
    assert "1 segment(s) claimed more than 100 s ago" in r.json()["problems"][0]
    out = subprocess.run([sys.executable, "manage.py", "spool_status"], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "IPR_SPOOL_DIR": str(tmp_path), "IPR_STALE_CLAIM_SECONDS": "100",
                              **database_env()})
    assert out.returncode == 1 and "claimed more than 100 s ago" in out.stdout, out.stderr
    metrics = client.get("/metrics").content.decode()
    assert "\nipr_spool_stale_claims 1.0\n" in metrics


def database_env():
    if connection.vendor == "postgresql":
        # The test database, which the subprocess finds by name.
        return {"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/" + connection.settings_dict["NAME"]}
    return {"DATABASE_URL": "sqlite:///" + connection.settings_dict["NAME"]}


def test_healthz_shows_anonymous_callers_through_a_proxy_only_the_status(tmp_path, settings, client,
                                                                        django_user_model):
    settings.SPOOL_DIR = tmp_path / "missing"
    r = client.get("/healthz", HTTP_X_FORWARDED_FOR="198.51.100.7")
    assert r.status_code == 503 and r.json() == {"ok": False}
    r = client.get("/healthz", REMOTE_ADDR="198.51.100.7")
    assert r.status_code == 503 and r.json() == {"ok": False}
    staff = django_user_model.objects.create_user("ops", password="x", is_staff=True)
    client.force_login(staff)
    r = client.get("/healthz", HTTP_X_FORWARDED_FOR="198.51.100.7")
    assert r.status_code == 503 and str(settings.SPOOL_DIR) in r.json()["problems"][0]
    assert r.json()["database"] == connection.vendor


def test_healthz_logs_a_change_of_health_once_not_every_poll(tmp_path, settings, client, caplog):
    spool.make_dirs(tmp_path)
    settings.SPOOL_DIR = tmp_path
    assert client.get("/healthz").status_code == 200
    caplog.clear()
    settings.SPOOL_DIR = tmp_path / "missing"
    for _ in range(3):
        assert client.get("/healthz").status_code == 503
    errors = [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
    assert [(r.name, r.levelname) for r in errors] == [("ipr.health", "ERROR")]
    assert "missing" in errors[0].getMessage()
    settings.SPOOL_DIR = tmp_path
    for _ in range(2):
        assert client.get("/healthz").status_code == 200
    errors = [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
    assert [(r.name, r.levelname) for r in errors] == [("ipr.health", "ERROR"), ("ipr.health", "WARNING")]


def test_the_archive_summarizes_the_brin_time_indexes_of_what_it_wrote(routed, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("BRIN indexes: PostgreSQL")
    stamp = ingest.datetime.fromtimestamp(HOUR0 * 60, ingest.tz.utc).strftime("%Y-%m-%d %H:%M:%S+00:00")
    # A partition of several page ranges (an index's first range is summarized
    # when it is made; the later ones only by a VACUUM or by summarize).
    with connection.cursor() as cur:
        cur.execute("TRUNCATE traffic_total_hour")
        tables.ensure_partitions("traffic_total_hour", {stamp})
        cur.execute("INSERT INTO traffic_total_hour (hour, router_id, traffic_type, requests) "
                    "SELECT %s, i, 'web', 1 FROM generate_series(1, 30000) i", [stamp])
    assert tables.summarize(["traffic_total_hour"], [stamp]) > 0
    assert tables.summarize(["traffic_total_hour"], [stamp]) == 0
    # The archive summarizes each hour it writes, in every hourly table, and
    # the rollup each day.
    calls = []
    monkeypatch.setattr(tables, "summarize", lambda names, stamps=None: calls.append((list(names), stamps)) or 0)
    rows = make_rows(2000, seed=5)
    ingest.write(ingest.summarise(rows))
    archive_all()
    hours = {ingest.datetime.fromtimestamp(m * 60, ingest.tz.utc).strftime("%Y-%m-%d %H:00:00")
             for m in (rows["minute"] // 60 * 60).tolist()}
    assert {s[:19] for names, stamps in calls if names == tables.HOURLY for s in stamps} == hours
    assert {s[:10] for names, stamps in calls if names == rollup.DAILY for s in stamps} == {h[:10] for h in hours}


@pytest.mark.django_db(transaction=True)
def test_summarize_skips_a_table_that_a_vacuum_holds_and_waits_for_nothing(routed):
    if connection.vendor != "postgresql":
        pytest.skip("BRIN indexes: PostgreSQL")
    import psycopg
    stamp = ingest.datetime.fromtimestamp(HOUR0 * 60, ingest.tz.utc).strftime("%Y-%m-%d %H:%M:%S+00:00")
    tables.ensure_partitions("traffic_total_hour", {stamp})
    with connection.cursor() as cur:
        cur.execute("INSERT INTO traffic_total_hour (hour, router_id, traffic_type, requests) "
                    "SELECT %s, i, 'web', 1 FROM generate_series(1, 30000) i", [stamp])
        hour = ingest.datetime.fromisoformat(stamp)
        part = next(p for p, low, high in tables.partitions(cur, "traffic_total_hour") if low <= hour < high)
    # Another session holds the lock a VACUUM takes (and a summary needs).
    with psycopg.connect(**connection.get_connection_params()) as vacuum:
        vacuum.execute(f"LOCK TABLE {part} IN SHARE UPDATE EXCLUSIVE MODE")
        assert tables.summarize(["traffic_total_hour"], [stamp]) == 0
    assert tables.summarize(["traffic_total_hour"], [stamp]) > 0   # the lock released: summarized
    with connection.cursor() as cur:
        cur.execute("SHOW lock_timeout")
        assert cur.fetchone()[0] == "0"   # the session's setting is left as it was
