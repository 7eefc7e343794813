"""Sums too big for their column saturate on the whole path from the spool
to the archive: never wrapped, never negative."""
import numpy as np
import pytest
from django.db import connection

from ipr.traffic import ingest
from tests.test_ingest import HOUR0, empty_archive, make_rows, routed, write_segment  # noqa: F401 (fixtures)

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
