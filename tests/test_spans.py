"""Spans: the coarse daily tables summed over the whole days of the long
ranges. Each span equals the days it sums, key by key; every page figure
is the same read through a span as read day by day; a span goes as soon as
any hour or day in it changes, and comes back only once the days before
today are final."""
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import pytest
from django.db import connection

from ipr.traffic import rollup, tables
from ipr.traffic.models import Pending, Span, SpanChange
from ipr.web import queries as q, reports
from web_helpers import demo_facts, empty_archive, write_facts

pytestmark = pytest.mark.django_db
UTC = timezone.utc
# Mid-morning: the presets' first hours and today's hours are edges of the spans.
NOW = datetime.now(UTC).replace(hour=9, minute=41, second=0, microsecond=0)
TODAY = NOW.replace(hour=0, minute=0)


@pytest.fixture
def archive():
    empty_archive()
    Span.objects.all().delete()
    Pending.objects.all().delete()
    facts = demo_facts(NOW, seed=5, hours=24 * 100, per_hour=2, minutes=60, per_minute=1)
    write_facts(facts)
    return facts


def spans() -> set[tuple[int, int]]:
    """The stored spans as (days ago of the first day, of the end)."""
    return {((TODAY - f).days, (TODAY - e).days) for f, e in Span.objects.values_list("first_day", "end_day")}


def test_a_span_is_the_sum_of_its_days_key_by_key(archive):
    assert rollup.refresh_spans(NOW) == len(tables.SPAN_DAYS)
    assert spans() == {(n, 0) for n in tables.SPAN_DAYS}
    with connection.cursor() as cur:
        for name, daily in tables.SPANS.items():
            keys = tables.TABLES[daily][1]
            shown = ", ".join(f"{k}::text" if k == "prefix" and connection.vendor == "postgresql" else k
                              for k in keys)
            for days in tables.SPAN_DAYS:
                first = q._time_param(TODAY - timedelta(days=days))
                end = q._time_param(TODAY)
                cur.execute(f"SELECT {shown}, {', '.join(f'sum({m})' for m in tables.SUMS)} FROM {daily} "
                            f"WHERE day >= %s AND day < %s GROUP BY {', '.join(keys)}", [first, end])
                expected = {r[:len(keys)]: r[len(keys):] for r in cur.fetchall()}
                cur.execute(f"SELECT {shown}, {', '.join(tables.SUMS)} FROM {name} "
                            f"WHERE first_day = %s AND end_day = %s", [first, end])
                got = {r[:len(keys)]: r[len(keys):] for r in cur.fetchall()}
                assert got == expected and got, (name, days)
    # The facts' own sums, for one span and one table: the same bytes.
    per_origin = defaultdict(int)
    for f in archive:
        if TODAY - timedelta(days=29) <= f.minute < TODAY:
            per_origin[f.origin_as] += f.sums["response_bytes"]
    with connection.cursor() as cur:
        cur.execute("SELECT asn, response_bytes FROM traffic_origin_all_span WHERE first_day = %s AND end_day = %s",
                    [q._time_param(TODAY - timedelta(days=29)), q._time_param(TODAY)])
        assert dict(cur.fetchall()) == dict(per_origin)


def span_rows() -> dict:
    """Every span table's rows, by span and key."""
    out = {}
    with connection.cursor() as cur:
        for name, daily in tables.SPANS.items():
            keys = ", ".join(f"{k}::text" if k == "prefix" and connection.vendor == "postgresql" else k
                             for k in tables.TABLES[daily][1])
            cur.execute(f"SELECT first_day, end_day, {keys}, {', '.join(tables.MEASURES)} FROM {name}")
            for r in cur.fetchall():
                key = (name,) + r[:-len(tables.MEASURES)]
                assert key not in out, key
                out[key] = r[-len(tables.MEASURES):]
    return out


def test_a_span_computed_from_the_day_before_s_is_the_same_as_from_its_days(archive):
    # Yesterday's spans, then today's from them: the day added, the one dropped.
    assert rollup.refresh_spans(NOW - timedelta(days=1)) == len(tables.SPAN_DAYS)
    assert rollup.refresh_spans(NOW) == len(tables.SPAN_DAYS)
    assert spans() == {(n, 0) for n in tables.SPAN_DAYS} | {(n + 1, 1) for n in tables.SPAN_DAYS}
    moved = {k: v for k, v in span_rows().items() if k[2] == TODAY}
    for first, end in list(Span.objects.values_list("first_day", "end_day")):
        rollup._delete_span(first, end)
    rollup.refresh_spans(NOW)
    summed = span_rows()
    assert moved == summed and len(summed) > 1000
    # Keys whose traffic was all in the day dropped are gone, not left at zero.
    assert all(v[tables.SUMS.index("records")] > 0 for v in summed.values())


@pytest.mark.django_db(transaction=True)
def test_a_span_whose_day_changes_while_it_is_computed_is_not_kept(archive, monkeypatch):
    import threading
    from django.db import transaction
    compute = rollup.compute_span
    changed = TODAY - timedelta(days=40)

    def compute_then_change(first, end):
        written = compute(first, end)
        if first <= changed.date():
            # Another worker adds late traffic to a day of it, and commits,
            # before this span is committed: it cannot see the span to drop it.
            def mark():
                with transaction.atomic():
                    rollup.mark("day", {rollup._stamp(changed)})
                    Pending.objects.filter(level="day").delete()   # and rolled up, quickly
                connection.close()
            worker = threading.Thread(target=mark)
            worker.start()
            worker.join()
        return written

    monkeypatch.setattr(rollup, "compute_span", compute_then_change)
    assert rollup.refresh_spans(NOW) == 2
    assert spans() == {(6, 0), (29, 0)}
    monkeypatch.setattr(rollup, "compute_span", compute)
    assert rollup.refresh_spans(NOW) == 2
    assert spans() == {(n, 0) for n in tables.SPAN_DAYS}


def page_figures(rng: q.Range) -> dict:
    """What the pages read that a span can serve, under several filters."""
    out = {}
    big_origin = q.top(rng, "origin_as", limit=1)["rows"][0]["key"]
    for filters in (q.Filters(), q.Filters(origin_as=big_origin), q.Filters(country="FR"),
                    q.Filters(neighbor_as=64600), q.Filters(router=1), q.Filters(traffic_type="web"),
                    q.Filters(router=2, origin_as=big_origin)):
        for by in ("origin_as", "neighbor_as", "country", "prefix", "router", "traffic_type", "as_path"):
            if by == "as_path" and filters.country is not None:
                continue
            out[(filters, "top", by)] = q.top(rng, by, filters, limit=5)
        out[(filters, "coverage")] = q.coverage(rng, filters=filters)
        out[(filters, "flows")] = q.flows(rng, filters, limit=4)
        out[(filters, "groups")] = q.groups(rng, ["origin_as", "neighbor_as"], filters)
        out[(filters, "overview")] = q.overview(rng, filters)
        if filters.neighbor_as is None:
            out[(filters, "peering")] = reports.peering_candidates(rng, filters, limit=5,
                                                                   now_range=q.Range.last("24h", now=NOW))
    return out


def without_tables(value):
    """The figures without the names of the tables read."""
    if isinstance(value, dict):
        return {k: without_tables(v) for k, v in value.items() if k != "table"}
    if isinstance(value, list):
        return [without_tables(v) for v in value]
    return value


@pytest.mark.parametrize("make", [
    lambda: q.Range.last("7d", now=NOW),
    lambda: q.Range.last("30d", now=NOW),
    lambda: q.Range.last("90d", now=NOW),
    lambda: q.Range.last("1y", now=NOW),
    # explicit: a span's days and more, at hourly and at daily resolution
    lambda: q.Range.between(NOW - timedelta(days=9, hours=5), NOW, now=NOW),
    lambda: q.Range.between(TODAY - timedelta(days=95), TODAY + timedelta(days=1), now=NOW),
], ids=["7d", "30d", "90d", "1y", "explicit-hourly", "explicit-daily"])
def test_every_figure_is_the_same_read_through_a_span_as_day_by_day(archive, make):
    rollup.refresh_spans(NOW)
    through_span = make()
    assert through_span.span is not None
    assert "traffic_origin_all_span" in q.top(through_span, "origin_as")["table"]
    assert "traffic_origin_span" in q.top(through_span, "origin_as", q.Filters(router=1))["table"]
    # a country's flows (router, neighbour, origin) from the split prefix table's span
    assert "traffic_prefix_span" in q._source(through_span, q.Filters(country="FR"),
                                              {"router", "neighbor_as", "origin_as"})[4]
    with_span = page_figures(through_span)
    for first, end in list(Span.objects.values_list("first_day", "end_day")):
        rollup._delete_span(first, end)
    day_by_day = make()
    assert day_by_day.span is None
    assert "_span" not in q.top(day_by_day, "origin_as")["table"]
    assert without_tables(page_figures(day_by_day)) == without_tables(with_span)


def test_a_range_without_a_whole_span_in_it_reads_its_tables(archive):
    rollup.refresh_spans(NOW)
    assert q.Range.last("24h", now=NOW).span is None
    # It ends before the spans do.
    assert q.Range.between(TODAY - timedelta(days=60), TODAY - timedelta(days=1), now=NOW).span is None
    rng = q.Range.last("90d", now=NOW)
    assert rng.span == (TODAY - timedelta(days=89), TODAY)


def test_a_change_to_any_hour_or_day_of_a_span_drops_it_until_the_rollup_computes_it_again(archive):
    rollup.refresh_spans(NOW)
    with_spans = without_tables(page_figures(q.Range.last("1y", now=NOW)))
    rollup.mark("day", {rollup._stamp(TODAY - timedelta(days=50))})
    assert spans() == {(6, 0), (29, 0)}
    hour = TODAY - timedelta(days=3) + timedelta(hours=5)
    rollup.mark("hour", {rollup._stamp(hour)})
    assert spans() == set()
    assert rollup.refresh_spans(NOW) == 0   # not while a day before today is pending
    assert not SpanChange.objects.exists()   # the log of the marks seen is cleared all the same
    # The hour archived again (as it was: the window of these facts no
    # longer holds it, so here its mark is simply taken), which marks its day.
    Pending.objects.filter(level="hour").delete()
    rollup.mark("day", {rollup._stamp(hour.replace(hour=0))})
    # Today's hours and day are in no span.
    rollup.mark("hour", {rollup._stamp(NOW.replace(minute=0))})
    rollup.archive_pending(NOW, everything=True)
    rollup.rollup_pending(NOW)
    assert spans() == {(n, 0) for n in tables.SPAN_DAYS}
    assert without_tables(page_figures(q.Range.last("1y", now=NOW))) == with_spans


def test_late_traffic_in_a_span_s_day_shows_on_the_pages_at_once(archive):
    from web_helpers import Fact, random_sums
    import random
    rollup.refresh_spans(NOW)
    rng = q.Range.last("30d", now=NOW)
    before = q.top(rng, "origin_as", limit=3)
    late = Fact(TODAY - timedelta(days=10, hours=-4), 1, "web", "198.18.1.0/24", 65002, 64600, "DE",
                "64600 65002", random_sums(random.Random(3)), 900)
    # As the ingest adds traffic older than the window: straight to the hour, then marked.
    write_facts([late], minute_window=False)
    rollup.mark("day", {rollup._stamp(late.minute.replace(hour=0, minute=0))})
    rng = q.Range.last("30d", now=NOW)
    after = q.top(rng, "origin_as", limit=3)
    assert after["total"]["bytes"] == before["total"]["bytes"] + late.sums["response_bytes"]
    assert sum(r["bytes"] for r in after["rows"]) + after["other"]["bytes"] == after["total"]["bytes"]
    # The spans that hold its day are gone; the week's, after it, serves.
    assert rng.span == (TODAY - timedelta(days=6), TODAY)


def test_spans_older_than_the_day_before_are_dropped(archive):
    rollup.refresh_spans(NOW - timedelta(days=2))
    rollup.refresh_spans(NOW - timedelta(days=1))
    assert {e for _, e in spans()} == {1, 2}
    rollup.refresh_spans(NOW)
    assert {e for _, e in spans()} == {0, 1}


def test_spans_are_only_as_long_as_the_daily_tables_keep(archive, settings):
    settings.KEEP_DAILY_DAYS = 90
    rollup.refresh_spans(NOW)
    assert spans() == {(6, 0), (29, 0), (89, 0)}
