"""The query layer's own rules: resolution thresholds, percentiles from the
RTT histogram, parsing of ASNs, countries and ranges."""
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from ipr.web import queries as q

NOW = datetime(2026, 6, 15, 12, 34, 56, tzinfo=timezone.utc)


@pytest.mark.parametrize("preset,resolution", [("1h", "minute"), ("6h", "minute"), ("24h", "hour"),
                                               ("7d", "hour"), ("30d", "hour"), ("90d", "day"), ("1y", "day")])
def test_a_preset_picks_its_resolution_and_ends_with_the_running_bucket(preset, resolution):
    rng = q.Range.last(preset, now=NOW)
    assert rng.resolution == resolution
    assert rng.start <= NOW < rng.end
    assert rng.end - NOW <= timedelta(seconds=rng.step)
    assert rng.start.timestamp() % rng.step == 0 and rng.end.timestamp() % rng.step == 0


def test_an_old_short_range_is_read_from_the_hourly_or_daily_tables(settings):
    settings.KEEP_CURRENT_HOURS = 48
    settings.KEEP_HOURLY_DAYS = 90
    three_days_ago = NOW - timedelta(days=3)
    assert q.Range.between(three_days_ago, three_days_ago + timedelta(hours=1), NOW).resolution == "hour"
    old = NOW - timedelta(days=200)
    assert q.Range.between(old, old + timedelta(hours=1), NOW).resolution == "day"


def test_an_explicit_range_is_widened_to_whole_buckets():
    rng = q.Range.between(datetime(2026, 1, 1, 10, 20, tzinfo=timezone.utc),
                          datetime(2026, 2, 20, 3, 0, tzinfo=timezone.utc), NOW)
    assert rng.resolution == "day"
    assert rng.start == datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert rng.end == datetime(2026, 2, 21, tzinfo=timezone.utc)


def test_a_date_alone_as_to_means_the_whole_day():
    rng = q.Range.from_params({"from": "2026-06-01", "to": "2026-06-02"}, now=NOW)
    assert rng.end - rng.start == timedelta(days=2)


def test_percentiles_are_interpolated_within_their_bucket():
    hist = [0] * 12
    hist[4] = 100            # all samples in (10 ms, 20 ms]
    assert q.percentile_ms(hist, 0.5) == pytest.approx(15.0)
    assert q.percentile_ms(hist, 0.95) == pytest.approx(19.5)
    hist = [50] + [0] * 10 + [50]  # half ≤ 1 ms, half beyond 2 s
    assert q.percentile_ms(hist, 0.25) == pytest.approx(0.5)
    assert q.percentile_ms(hist, 0.95) == 2000.0   # the open bucket's floor
    assert q.percentile_ms([0] * 12, 0.5) is None


def test_a_series_has_per_bucket_the_figures_of_each_bucket_s_sums():
    # Per bucket: nothing, no RTT samples, no segments, everything in the
    # open last RTT bucket, and random sums; a bucket still running.
    rnd = np.random.default_rng(5)
    m = rnd.integers(0, 10 ** 9, size=(9, len(q.SUMS)), dtype=np.int64)
    m[0] = 0
    m[1, q._SAMPLES] = 0
    m[1, q._HIST] = 0
    m[2, q._DATA] = m[2, q._RETRANS] = 0
    m[3, q._HIST] = 0
    m[3, q._HIST.stop - 1] = 7
    m[4, q._HIST] = 0
    m[4, q._HIST.start + 2] = 1
    elapsed = np.array([3600.0] * 8 + [61.0])
    got = q._series_of("k", "label", m, elapsed)
    for i in range(len(m)):
        want = q.figures(dict(zip(q.SUMS, m[i].tolist())), elapsed[i])
        for name in q._SERIES_FIELDS:
            assert got[name][i] == want[name], (i, name)
    assert got["rtt_p95_ms"][0] is None and got["retrans_rate"][2] is None and got["rtt_p50_ms"][3] == 2000.0


@pytest.mark.parametrize("text,asn", [("AS64500", 64500), ("as64500", 64500), ("64500", 64500),
                                      ("1.10", 65546), ("AS4294967295", 4294967295), ("0", 0)])
def test_asns_are_read_asplain_or_asdot(text, asn):
    assert q.parse_asn(text) == asn


@pytest.mark.parametrize("text", ["AS", "AS4294967296", "-1", "1.70000", "AS64500x"])
def test_a_bad_asn_is_refused(text):
    with pytest.raises(q.QueryError):
        q.parse_asn(text)


def test_32bit_asns_are_shown_in_asdot_too():
    assert q.asn_text(4200000001) == "AS4200000001 (AS64086.59905)"
    assert q.asn_text(64500) == "AS64500"


def test_countries_and_prefixes_are_canonical():
    assert q.parse_country("fr") == "FR"
    assert q.parse_country("--") == ""
    assert q.parse_prefix("192.0.2.7/24") == "192.0.2.0/24"
    with pytest.raises(q.QueryError):
        q.parse_country("France")


@pytest.mark.django_db
def test_the_overview_equals_the_separate_queries():
    from web_helpers import demo_facts, empty_archive, write_facts
    empty_archive()
    now = datetime.now(timezone.utc)
    write_facts(demo_facts(now, hours=48, per_hour=4, minutes=30, per_minute=1))
    for preset in ("1h", "24h", "7d"):
        rng = q.Range.last(preset, now=now)
        head = q.overview(rng)
        assert head["totals"]["bytes"] == q.totals(rng)["bytes"] > 0
        assert head["series"]["series"] == q.series(rng)["series"]
        assert head["by_router"]["series"] == q.series(rng, split="router")["series"]
        assert head["by_type"]["series"] == q.series(rng, split="traffic_type")["series"]
        assert head["routers"]["rows"] == q.top(rng, "router", limit=0)["rows"]
        assert head["types"]["total"] == q.top(rng, "traffic_type", limit=0)["total"]


@pytest.mark.django_db
def test_the_flow_diagram_draws_the_largest_origins_triples_and_folds_the_rest_per_pair_and_router():
    from web_helpers import demo_facts, empty_archive, write_facts
    empty_archive()
    now = datetime.now(timezone.utc)
    write_facts(demo_facts(now, hours=72, per_hour=6, minutes=30, per_minute=1))
    for preset, limit in (("24h", 6), ("7d", 12), ("7d", 1000)):
        rng = q.Range.last(preset, now=now)
        # The reference: every triple, folded here.
        triples = sorted(((g["key"], g["bytes"]) for g in q.groups(rng, ["router", "neighbor_as", "origin_as"])),
                         key=lambda t: (-t[1], t[0]))
        # The largest triples of the largest origins; the rest folded.
        origins = [g["key"] for g in q.top(rng, "origin_as", limit=limit)["rows"]]
        kept = [t for t in triples if t[0][2] in origins][:limit]
        rest = [t for t in triples if t not in kept]
        pairs = {(r, nb) for (r, nb, _), _ in kept}
        want: dict = {}

        def add(a, b, n):
            want[(a, b)] = want.get((a, b), 0) + n
        for (r, nb, org), n in kept:
            add(f"router:{r}", f"neighbor:{nb}", n)
            add(f"neighbor:{nb}", f"origin:{org}", n)
        for (r, nb, org), n in rest:
            b = f"neighbor:{nb}" if (r, nb) in pairs else "neighbor:other"
            add(f"router:{r}", b, n)
            add(b, "origin:other", n)
        body = q.flows(rng, limit=limit)
        ids = [n["id"] for n in body["nodes"]]
        got = {(ids[link["source"]], ids[link["target"]]): link["bytes"] for link in body["links"]}
        assert got == {k: v for k, v in want.items() if v}
        assert body["total_bytes"] == sum(n for _, n in triples) > 0
        assert len(rest) > 0 or limit == 1000


@pytest.mark.parametrize("resolution,dims,table", [
    ("day", set(), "traffic_total_day"),
    ("day", {"router", "traffic_type"}, "traffic_total_day"),
    ("day", {"origin_as"}, "traffic_origin_all_day"),
    ("hour", {"neighbor_as"}, "traffic_neighbor_all_hour"),
    ("day", {"country"}, "traffic_country_all_day"),
    ("day", {"origin_as", "router"}, "traffic_origin_day"),
    ("hour", {"country", "traffic_type"}, "traffic_country_hour"),
    ("day", {"router", "neighbor_as", "origin_as"}, "traffic_flow_day"),
    ("day", {"origin_as", "neighbor_as"}, "traffic_flow_day"),
    ("day", {"origin_as", "country"}, "traffic_prefix_all_day"),
    ("day", {"router", "neighbor_as", "origin_as", "traffic_type"}, "traffic_prefix_day"),
    ("day", {"prefix"}, "traffic_prefix_all_day"),
    ("hour", {"prefix", "origin_as"}, "traffic_prefix_all_hour"),
    ("hour", {"prefix", "router"}, "traffic_prefix_hour"),
    ("day", {"as_path", "origin_as"}, "traffic_path_day"),
    ("minute", {"origin_as"}, "traffic_current"),
])
def test_a_query_reads_the_smallest_table_that_has_what_it_groups_or_filters_by(resolution, dims, table):
    from ipr.traffic import tables
    name, time_column, columns = q._pick(resolution, dims)
    assert name == table
    # Every dimension asked for is a column of that table.
    assert set(dims) <= set(columns)
    assert {columns[d] for d in dims} <= set(tables.key_columns(name))
    assert time_column == tables.TABLES[name][0]


def test_the_migration_that_adds_the_coarse_tables_fills_them_from_the_archive_there(transactional_db, monkeypatch):
    from django.core.management import call_command
    from django.db import connection

    from ipr.traffic import tables
    from web_helpers import demo_facts, empty_archive, write_facts
    empty_archive()
    call_command("migrate", "traffic", "0005", verbosity=0)
    try:
        # An archive from before: the split tables only.
        split = {n: v for n, v in tables.TABLES.items() if n not in tables.DERIVED}
        with monkeypatch.context() as m:
            m.setattr(tables, "TABLES", split)
            write_facts(demo_facts(datetime.now(timezone.utc), hours=30, per_hour=3, minutes=20, per_minute=1))
    finally:
        call_command("migrate", "traffic", verbosity=0)

    def by_key(name, keys):
        with connection.cursor() as cur:
            cur.execute(f"SELECT {', '.join(keys)}, sum(response_bytes), sum(rtt_h4), min(min_rtt_us) "
                        f"FROM {name} GROUP BY {', '.join(keys)}")
            return {tuple(str(v) for v in r[:len(keys)]): tuple(r[len(keys):]) for r in cur.fetchall()}
    for name, source in tables.DERIVED.items():
        keys = tables.key_columns(name)
        got = by_key(name, keys)
        assert got and got == by_key(source, keys), name
