"""A refused input changes nothing: mutated dumps, reference files and spool
segments through the real load paths, on PostgreSQL.

Route dumps go through ``refresh_router``, reference files through
``refresh_source``, spool segments through ``ingest``. Each either takes
the input or refuses it with its documented error, and a refusal leaves the
active state as it was. Derandomized, like every short fuzz run."""
import os
import time

import numpy as np
import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import harness
from mutations import mutated

pytestmark = pytest.mark.django_db

ROUTE_SEEDS = harness.bird_seeds()[:6] + harness.frr_text_seeds()[:4] + harness.frr_json_seeds()[:3] \
    + harness.mrt_seeds()[:4]
GOOD_TABLE = harness.bird_seeds()[0]


def few(n):
    return settings(max_examples=n, derandomize=True, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


def scratch_file(tmp_path_factory, name, data):
    path = tmp_path_factory.mktemp("fuzz") / name
    path.write_bytes(data)
    return str(path)


@few(60)
@given(data=mutated(ROUTE_SEEDS, 8192))
def test_a_refused_route_dump_leaves_the_active_table_as_it_was(data, tmp_path_factory):
    from ipr.routing.load import RefreshError, refresh_router
    from ipr.routing.models import Route, Router

    router = Router.objects.create(name=f"r{Router.objects.count()}", asn=64500)
    good = refresh_router(router.pk, [scratch_file(tmp_path_factory, "good", GOOD_TABLE)])
    rows = sorted(Route.objects.filter(table_id=good.pk).values_list("prefix", "best", "attrs_id"))
    bad = scratch_file(tmp_path_factory, "dump", data)
    try:
        refresh_router(router.pk, [bad])
    except RefreshError as exc:
        router.refresh_from_db()
        assert router.active_table_id == good.pk
        assert bad in router.refresh_error or "no routes" in router.refresh_error or "shrink" in str(exc)
        assert sorted(Route.objects.filter(table_id=good.pk).values_list("prefix", "best", "attrs_id")) == rows


REFERENCE_SEEDS = {"rir": harness.rir_seeds()[:3], "asnames": harness.asnames_seeds()}


@pytest.mark.parametrize("kind", sorted(REFERENCE_SEEDS))
def test_a_refused_reference_file_leaves_the_previous_rows(kind, tmp_path_factory):
    from ipr.routing.load import RefreshError
    from ipr.routing.models import ASName, CountryPrefix, DataSource
    from ipr.routing.reference import refresh_source

    def state(source):
        if kind == "asnames":
            return sorted(ASName.objects.filter(source=source).values_list("asn", "name", "country"))
        return sorted(CountryPrefix.objects.filter(source=source).values_list("prefix", "country"))

    @few(60)
    @given(data=mutated(REFERENCE_SEEDS[kind], 8192))
    def run(data):
        path = scratch_file(tmp_path_factory, "file", REFERENCE_SEEDS[kind][0])
        source = DataSource.objects.create(name=f"s{DataSource.objects.count()}", kind=kind, path=path)
        refresh_source(source.pk)
        before = state(source)
        with open(path, "wb") as f:
            f.write(data)
        try:
            refresh_source(source.pk)
        except RefreshError as exc:
            source.refresh_from_db()
            assert source.refresh_error == str(exc) and state(source) == before

    run()


@pytest.fixture
def empty_archive(django_db_blocker):
    from ipr.traffic import tables
    with django_db_blocker.unblock(), connection.cursor() as cur:
        for name in tables.TABLES:
            cur.execute(f"DELETE FROM {name}")


def good_rows(n, minute):
    from collector import spool
    from ipr.routing.lookup import address_bytes

    rows = np.zeros(n, spool.ROW)
    rows["minute"] = minute
    rows["client"] = address_bytes("10.1.2.3")
    rows["server"] = address_bytes("198.18.0.1")
    rows["traffic_type"] = b"web"
    rows["records"] = rows["requests"] = 1
    rows["min_rtt_us"] = spool.NO_MIN_RTT
    return rows


@few(20)
@given(data=mutated(harness.spool_seeds(), 4096), index=st.integers(0, 2))
def test_a_bad_spool_segment_is_set_aside_and_the_others_are_ingested(data, index, tmp_path_factory,
                                                                      empty_archive):
    from collector import spool
    from ipr.traffic import ingest
    from ipr.traffic.models import IngestedSegment

    spool_dir = tmp_path_factory.mktemp("spool")
    spool.make_dirs(spool_dir)
    minute = (int(time.time()) // 3600 - 3) * 60
    stamp = time.time_ns()
    names = [f"h-{stamp}-w0-{i}.seg" for i in range(3)]
    for i, name in enumerate(names):
        if i == index:
            (spool_dir / "incoming" / name).write_bytes(data)
            continue
        writer = spool.SegmentWriter(spool_dir, name, 0, 0)
        writer.append(good_rows(2, minute), 0)
        writer.close()
    try:
        spool.scan_segment(data, names[index])
        refused = False
    except spool.SpoolError:
        refused = True
    result = ingest.ingest(spool_dir)
    done = set(IngestedSegment.objects.values_list("name", flat=True))
    for i, name in enumerate(names):
        if i != index:
            assert name in done, f"{name} not ingested"
    if refused:
        assert result.bad == 1 and os.path.exists(spool_dir / "incoming" / (names[index] + ".bad"))
    else:
        assert result.bad == 0
