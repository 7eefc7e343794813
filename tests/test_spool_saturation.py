"""Sums too big for their column saturate on the whole path from the spool
to the archive: never wrapped, never negative."""
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from django.db import connection

from ipr.traffic import ingest, rollup, tables
from tests.test_ingest import (HOUR0, archive_all, empty_archive, make_rows, routed,  # noqa: F401 (fixtures)
                               write_segment)

pytestmark = pytest.mark.django_db

BIGINT_MAX = 2**63 - 1


def test_ingest_saturates_sums_beyond_bigint_instead_of_wrapping(routed, tmp_path):  # noqa: F811
    row = make_rows(1, minutes=(HOUR0,))
    rows = np.concatenate([row, row, row])
    rows["response_bytes"] = [2**64 - 1, 2**64 - 1, 5]  # the spool's maximum: a saturated u64 sum
    rows["wire_bytes"] = [2**62, 2**62, 0]               # 2**63 together: one more than bigint holds
    rows["requests"] = [7, 8, 9]
    write_segment(tmp_path, rows[:2], "h-1-w0-1.seg")
    write_segment(tmp_path, rows[2:], "h-1-w1-2.seg")
    assert ingest.ingest(tmp_path).rows == 3
    with connection.cursor() as cur:
        cur.execute("SELECT count(*), min(response_bytes), max(response_bytes), max(wire_bytes), sum(requests) "
                    "FROM traffic_current")
        count, least, most, wire_bytes, requests = cur.fetchone()
    assert count == 1
    assert (least, most, wire_bytes, requests) == (BIGINT_MAX, BIGINT_MAX, BIGINT_MAX, 24)


def test_ingest_sums_are_exact_up_to_bigint_and_saturate_beyond():
    ids = np.array([0, 0, 1, 1, 2, 3, 3])
    values = np.array([2**62, 2**62 - 1, 2**40, 3, 2**64 - 1, 2**62, 2**62], np.uint64)
    (sums,) = ingest._sum_by(ids, 4, [values])
    assert sums.tolist() == [BIGINT_MAX, 2**40 + 3, BIGINT_MAX, BIGINT_MAX]


def test_the_archive_rollup_and_spans_saturate_sums_of_rows_at_the_maximum(routed, tmp_path):  # noqa: F811
    # Two segments ingested one at a time: two window rows of one key, each
    # holding a saturated sum, whose sum the archive must saturate too.
    row = make_rows(1, minutes=(HOUR0 + 5,))
    row["response_bytes"] = 2**64 - 1      # BIGINT_MAX once ingested
    row["wire_bytes"] = 2**62              # 2**63 for the two rows
    row["requests"] = 7
    for n in (1, 2):
        write_segment(tmp_path, row, f"h-1-w0-{n}.seg")
        assert ingest.ingest(tmp_path).rows == 1
    with connection.cursor() as cur:
        cur.execute("SELECT count(*), min(response_bytes) FROM traffic_current")
        assert cur.fetchone() == (2, BIGINT_MAX)
    archive_all()
    day = datetime.fromtimestamp(HOUR0 * 60, timezone.utc).date()
    rollup.compute_span(day - timedelta(days=2), day)                            # no traffic: empty
    rollup.compute_span(day - timedelta(days=1), day + timedelta(days=1))        # from that span
    rollup.compute_span(day, day + timedelta(days=1))                            # from its days
    # One row of the key in each table (in each of the two spans that hold the day).
    groups = {name: "" for name in tables.TABLES if name != "traffic_current"}
    groups.update({name: " GROUP BY first_day, end_day" for name in tables.SPANS})
    for name, group in groups.items():
        with connection.cursor() as cur:
            cur.execute(f"SELECT count(*), min(response_bytes), min(wire_bytes), min(requests) FROM {name}{group}")
            got = cur.fetchall()
        assert got == [(1, BIGINT_MAX, BIGINT_MAX, 14)] * (2 if group else 1), name


@pytest.mark.parametrize("values", [
    [BIGINT_MAX, BIGINT_MAX], [2**62, 2**62], [2**62, 2**62 - 1], [2**63 - 2**32, 2**32 - 1], [2**32 - 1] * 3,
    [5, 2**53 + 1, 2**40], [BIGINT_MAX, 0], [],
])
def test_a_saturated_sum_is_exact_below_the_maximum_and_the_maximum_beyond(values):
    pg = connection.vendor == "postgresql"
    with connection.cursor() as cur:
        cur.execute("CREATE TEMP TABLE summed (v bigint)")
        for v in values:
            cur.execute("INSERT INTO summed VALUES (%s)", [v])
        cur.execute(f"SELECT {tables.saturated_sum('v', pg)} FROM summed")
        (got,) = cur.fetchone()
        cur.execute("DROP TABLE summed")
    assert got == (min(sum(values), BIGINT_MAX) if values else None)
