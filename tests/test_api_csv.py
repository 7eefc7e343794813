"""Every table of the API as CSV: the same items and figures as its JSON,
a header row first; a clear 406 where an endpoint has no table."""
import csv
import io
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from ipr.api.renderers import HIST_COLUMNS
from ipr.routing.models import ASName
from ipr.traffic import ingest, rollup
from ipr.web import queries
from tests.test_api import api, empty_archive, get, user  # noqa: F401 (fixtures)
from tests.web_helpers import spool_rows, two_routers

pytestmark = pytest.mark.django_db

UTC = timezone.utc
NOW = datetime.now(UTC)
# A range that ended at the start of this hour: its bits/s do not change
# between two requests, as a range that ends now does.
TO = NOW.replace(minute=0, second=0, microsecond=0)
RANGE = {"from": (TO - timedelta(hours=30)).strftime("%Y-%m-%dT%H:%M"), "to": TO.strftime("%Y-%m-%dT%H:%M")}
MINUTES = [int((TO - timedelta(minutes=m)).timestamp()) // 60 for m in (5, 70, 400, 1300)]
# Public addresses (special-purpose ones belong to no AS): three routed
# through each router's transit, one that no route covers.
CLIENTS = ["11.1.2.3", "11.2.0.9", "11.1.200.1", "2a00:1000::7", "12.0.0.1"]
SERVERS = ["13.0.0.1", "13.0.1.1", "13.0.2.1"]
ROUTES = [("11.1.0.0/16", "64701"), ("11.0.0.0/8", "64700"), ("2a00:1000::/32", "64702")]


@pytest.fixture(autouse=True)
def fresh_types():
    # The query layer keeps the archive's traffic types for a few minutes:
    # an earlier test's archive must not answer for this one's.
    queries._types_cache.clear()


@pytest.fixture
def routers(tmp_path):
    return two_routers(tmp_path, ("13.0.0.0/24", "13.0.1.0/24"), ROUTES)


@pytest.fixture
def rows(routers):
    """2000 spool rows through the real ingest, their hours archived."""
    r = spool_rows(np.random.default_rng(11), 2000, MINUTES, CLIENTS, SERVERS)
    ingest.write(ingest.summarise(r))
    rollup.archive_pending(everything=True)
    return r

FIGURES = ["bytes", "wire_bytes", "bps", "requests", "data_segs", "retrans_segs", "retrans_rate",
           "rtt_samples", "rtt_mean_ms", "rtt_p50_ms", "rtt_p95_ms", "rtt_sum_us"]


def top_items(body):
    return body["rows"] + [r for r in (body["other"], body["total"]) if r is not None]


def series_items(body):
    return [{"time": t, "key": s["key"], "label": s["label"],
             **{f: s[f][i] for f in ("bytes", "bps", "requests", "retrans_rate", "rtt_p95_ms")}}
            for s in body["series"] for i, t in enumerate(body["times"])]


def flow_items(body):
    nodes = body["nodes"]
    return [{"source": nodes[x["source"]]["id"], "target_label": nodes[x["target"]]["label"], "bytes": x["bytes"]}
            for x in body["links"]]


def delivery_items(body):
    return ([{**r, "worst": "retrans_rate"} for r in body["worst_retrans"]] +
            [{**r, "worst": "rtt_p95_ms"} for r in body["worst_rtt"]] + [{**body["total"], "worst": None}])


def uplink_items(body):
    return ([{**r, "by": "neighbor_as"} for r in body["neighbors"]["rows"]] +
            [{**r, "by": "router"} for r in body["routers"]["rows"]] +
            [{**r, "by": "router_neighbor_as", "key": f"{r['router']} {r['neighbor_as']}"} for r in body["grid"]] +
            [{**body["total"], "by": "total"}])


# url, params, the items of its JSON answer, the columns checked against them
TABLES = [
    ("/api/totals/", RANGE, lambda b: [b], FIGURES),
    ("/api/series/", {**RANGE, "split": "router"}, series_items, ["time", "key", "label", "bytes", "bps", "requests",
                                                          "retrans_rate", "rtt_p95_ms"]),
    ("/api/top/origin_as/", {**RANGE, "limit": 2}, top_items, ["key", "label", "share"] + FIGURES),
    ("/api/top/prefix/", {**RANGE, "router": 1}, top_items, ["key", "label", "share"] + FIGURES),
    ("/api/top/as_path/", RANGE, top_items, ["key", "label", "share", "bytes", "requests"]),
    ("/api/flows/", RANGE, flow_items, ["source", "target_label", "bytes"]),
    ("/api/reports/top-asns/", {**RANGE, "limit": 2}, top_items,
     ["rank", "key", "label", "share", "cumulative"] + FIGURES),
    ("/api/reports/peering/", RANGE, lambda b: b["rows"], ["rank", "key", "label", "transit_share",
                                                         "transits_text", "bytes", "requests"]),
    ("/api/reports/countries/", RANGE, top_items, ["key", "label", "bytes", "previous_bytes", "change",
                                                              "top_asn", "top_asn_label", "top_asn_share"]),
    ("/api/reports/delivery/", {**RANGE, "min_share": 0}, delivery_items, ["worst", "key", "label"] + FIGURES),
    ("/api/reports/uplinks/", {**RANGE, "asn": "AS64701"}, uplink_items,
     ["by", "key", "label", "share", "retrans_vs_all", "p95_vs_all"] + FIGURES),
    ("/api/routers/", {}, lambda b: b, ["id", "name", "asn", "asn_text", "is_default", "active_routes"]),
    ("/api/traffic-types/", {}, lambda b: b, ["name", "label", "configured", "seen"]),
    ("/api/as-names/", {"search": "net", "limit": 3}, lambda b: b["results"], ["asn", "asn_text", "name"]),
]


def read_csv(response):
    assert response.status_code == 200, (response.status_code, response.content[:300])
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="ipr-')
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def same(text: str, value) -> bool:
    """A CSV cell holds the JSON value: the same number, string or null."""
    if value is None:
        return text == ""
    if isinstance(value, bool):
        return text == ("true" if value else "false")
    if isinstance(value, int):
        return int(text) == value
    if isinstance(value, float):
        return float(text) == value
    return text == str(value)


@pytest.mark.parametrize("url, params, items, columns", TABLES, ids=[t[0] + str(t[1]) for t in TABLES])
def test_every_table_downloads_as_csv_with_the_same_figures_as_its_json(api, rows, url, params, items, columns):
    ASName.objects.bulk_create([ASName(asn=64700 + i, name=f"NET-{i}") for i in range(5)])
    expected = items(get(api, url, **params))
    assert expected, "a table with no row checks nothing"
    table = read_csv(api.get(url, {**params, "format": "csv"}))
    assert len(table) == len(expected)
    for line, item in zip(table, expected):
        for column in columns:
            assert column in line, (column, list(line))
            if column in item:
                assert same(line[column], item[column]), (url, column, line[column], item[column])


def test_a_row_of_figures_spreads_its_rtt_histogram_over_a_column_per_bucket(api, rows):
    body = get(api, "/api/top/country/", **RANGE)
    table = read_csv(api.get("/api/top/country/", {**RANGE, "format": "csv"}))
    assert list(table[0])[-len(HIST_COLUMNS):] == HIST_COLUMNS
    assert HIST_COLUMNS[0] == "rtt_hist_le_1ms" and HIST_COLUMNS[-1] == "rtt_hist_gt_2000ms"
    for line, item in zip(table, top_items(body)):
        assert [int(line[c]) for c in HIST_COLUMNS] == item["rtt_hist"]
    assert table[-1]["label"] == "total" and table[-1]["key"] == ""


def test_the_accept_header_asks_for_csv_too(api, rows):
    table = read_csv(api.get("/api/totals/", RANGE, HTTP_ACCEPT="text/csv"))
    assert int(table[0]["bytes"]) == get(api, "/api/totals/", **RANGE)["bytes"] == int(rows["response_bytes"].sum())


def test_a_routers_served_networks_are_one_space_separated_cell(api, routers):
    table = read_csv(api.get("/api/routers/", {"format": "csv"}))
    assert [(r["name"], r["served_networks"]) for r in table] == [("a", "13.0.0.0/24"), ("b", "13.0.1.0/24")]


@pytest.mark.parametrize("url", ["/api/", "/api/asns/AS64701/", "/api/countries/FR/", "/api/schema/"])
def test_an_endpoint_with_no_table_says_it_has_no_csv(api, url):
    # A bad value of the format parameter, or an Accept header it cannot meet.
    for r, status in ((api.get(url, {"format": "csv"}), 400), (api.get(url, HTTP_ACCEPT="text/csv"), 406)):
        assert r.status_code == status, (url, r.status_code, r.content[:200])
        # (the schema answers its errors in its own YAML)
        assert b"this endpoint answers no table, so it has no CSV form" in r.content


def test_an_error_asked_as_csv_is_still_its_json_detail(api):
    r = api.get("/api/totals/", {"format": "csv", "range": "2w"})
    assert r.status_code == 400 and r["Content-Type"] == "application/json"
    assert r.json()["detail"].startswith("range: unknown range '2w'")
    r = api.get("/api/top/nothing/", {"format": "csv"})
    assert r.status_code == 404 and "no top-N by 'nothing'" in r.json()["detail"]


def test_an_unknown_format_is_a_400_naming_it(api):
    r = api.get("/api/totals/", {"format": "xml"})
    assert r.status_code == 400
    assert r.json()["detail"] == "format: no 'xml' form of this endpoint (it answers json, csv)"
    r = api.get("/api/routers/", {"format": ""})
    assert r.status_code == 400 and r.json()["detail"] == "format: give one of json, csv, or leave the parameter out"
    r = api.get("/api/totals/", HTTP_ACCEPT="application/xml")
    assert r.status_code == 406
    assert r.json()["detail"] == "no answer of this endpoint meets the Accept header (it answers json, csv)"


def test_options_asked_as_csv_describes_the_endpoint_in_json(api):
    r = api.options("/api/routers/?format=csv")
    assert r.status_code == 200 and r["Content-Type"] == "application/json"
    assert "text/csv" in r.json()["renders"]


def test_without_credentials_a_csv_is_refused_as_json_is():
    from rest_framework.test import APIClient
    r = APIClient().get("/api/totals/", {"format": "csv"})
    assert r.status_code == 401 and r.json()["detail"]
