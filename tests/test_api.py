"""The REST API over a real archive: rows go in through the ingest, and
every figure the API gives is checked against sums the test computes on its
own, from the rows it wrote and from the archive tables with plain SQL."""
import ipaddress
import re
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from collector import spool
from ipr.agents.models import TrafficType
from ipr.api import urls as api_urls
from ipr.routing.lookup import address_bytes
from ipr.routing.models import ASName
from ipr.traffic import ingest, rollup, tables
from ipr.web import queries

# The routes here resolve clients in 10/8, 192.0.2/24, 2001:db8::/32...
from tests.web_helpers import spool_rows, two_routers

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("routed_stand_ins")]

UTC = timezone.utc
NOW_MINUTE = int(datetime.now(UTC).timestamp()) // 60
# Minutes the rows are in: two in the last hour, the others hours ago, all
# within the last 24 hours (the default range).
MINUTES = [NOW_MINUTE - 2, NOW_MINUTE - 20, NOW_MINUTE - 130, NOW_MINUTE - 400, NOW_MINUTE - 1300]
CLIENTS = ["10.1.2.3", "10.2.0.9", "10.1.200.1", "192.0.2.5", "2001:db8::7", "2001:db9::1"]
SERVERS = ["198.18.0.1", "198.18.1.1", "203.0.113.9"]
# The routes each router has: (prefix, AS path). Router a reaches them
# through AS64601, router b through AS64602.
ROUTES = [("10.1.0.0/16", "64701"), ("10.0.0.0/8", "64700"), ("2001:db8::/32", "64702")]


@pytest.fixture(autouse=True)
def empty_archive(django_db_blocker):
    # The archive tables are not models: a test's rollback does not empty them.
    with django_db_blocker.unblock(), connection.cursor() as cur:
        for name in tables.TABLES:
            cur.execute(f"DELETE FROM {name}")


@pytest.fixture
def routers(tmp_path):
    return two_routers(tmp_path, ("198.18.0.0/24", "198.18.1.0/24"), ROUTES)


@pytest.fixture
def rows(routers):
    """4000 spool rows, ingested into the archive as the collector's would be."""
    r = spool_rows(np.random.default_rng(7), 4000, MINUTES, CLIENTS, SERVERS)
    ingest.write(ingest.summarise(r))
    # The hourly tables of the hours still open come from the per-minute
    # window once the hour closes; here, at once.
    rollup.archive_pending(everything=True)
    return r


@pytest.fixture
def user():
    return User.objects.create_user("ops", password="a-long-password")


@pytest.fixture
def api(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def get(api, url, **params):
    r = api.get(url, params)
    assert r.status_code == 200, (r.status_code, r.content[:500])
    return r.json()


def sql_groups(column, where="", params=(), table="traffic_prefix_hour", time_column="hour",
               since=None):
    """{key: (response bytes, requests)} straight from an archive table."""
    since = since or (datetime.now(UTC) - timedelta(hours=25))
    stamp = since if connection.vendor == "postgresql" else since.strftime("%Y-%m-%d %H:%M:%S+00:00")
    key = f"{column}::text" if column == "prefix" and connection.vendor == "postgresql" else column
    with connection.cursor() as cur:
        cur.execute(f"SELECT {key}, sum(response_bytes), sum(requests) FROM {table} "
                    f"WHERE {time_column} >= %s {where} GROUP BY {key}", [stamp, *params])
        return {(k.strip() if isinstance(k, str) else int(k)): (int(b), int(q)) for k, b, q in cur.fetchall()}


def rows_sum(r, field, mask=None):
    return int(r[field][mask].sum()) if mask is not None else int(r[field].sum())


# -- authentication ------------------------------------------------------------------

ENDPOINTS = ["/api/", "/api/totals/", "/api/series/", "/api/top/origin_as/", "/api/flows/", "/api/asns/AS64701/",
             "/api/countries/FR/", "/api/reports/top-asns/", "/api/reports/peering/", "/api/reports/countries/",
             "/api/reports/delivery/", "/api/reports/uplinks/", "/api/routers/", "/api/traffic-types/",
             "/api/as-names/", "/api/schema/", "/api/docs/"]


@pytest.mark.parametrize("url", ENDPOINTS)
def test_a_request_without_credentials_is_refused(url):
    r = APIClient().get(url)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == 'Token'


def test_a_wrong_token_is_refused(api):
    api.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    assert api.get("/api/totals/").status_code == 401


def test_an_inactive_users_token_is_refused(api, user):
    user.is_active = False
    user.save()
    assert api.get("/api/totals/").status_code == 401


def test_a_token_or_a_logged_in_session_is_allowed(api, user, client):
    assert api.get("/api/totals/").status_code == 200
    client.force_login(user)
    assert client.get("/api/totals/").status_code == 200
    page = client.get("/api/totals/", HTTP_ACCEPT="text/html")
    assert page.status_code == 200 and b"Django REST framework" in page.content


def test_the_token_command_prints_a_working_token_and_rotates_it(user, capsys):
    call_command("api_token", "ops")
    first = capsys.readouterr().out.strip()
    assert Token.objects.get(user=user).key == first
    call_command("api_token", "ops")
    assert capsys.readouterr().out.strip() == first  # the same token until rotated
    call_command("api_token", "ops", "--rotate")
    second = capsys.readouterr().out.strip()
    assert second != first
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {first}")
    assert client.get("/api/totals/").status_code == 401
    client.credentials(HTTP_AUTHORIZATION=f"Token {second}")
    assert client.get("/api/totals/").status_code == 200


def test_the_token_command_makes_an_api_only_user_when_asked():
    call_command("api_token", "grafana", "--create-user")
    user = User.objects.get(username="grafana")
    assert not user.has_usable_password() and Token.objects.filter(user=user).exists()
    with pytest.raises(Exception, match="no user 'nobody'"):
        call_command("api_token", "nobody")


# -- figures -------------------------------------------------------------------------

def test_totals_equal_the_rows_that_went_into_the_archive(api, rows):
    body = get(api, "/api/totals/")
    assert body["bytes"] == rows_sum(rows, "response_bytes")
    assert body["wire_bytes"] == rows_sum(rows, "wire_bytes")
    assert body["requests"] == rows_sum(rows, "requests")
    assert body["data_segs"] == rows_sum(rows, "data_segs")
    assert body["retrans_segs"] == rows_sum(rows, "retrans_segs")
    assert body["retrans_rate"] == pytest.approx(rows_sum(rows, "retrans_segs") / rows_sum(rows, "data_segs"))
    assert body["rtt_hist"] == [int(x) for x in rows["rtt_hist"].sum(axis=0)]
    assert body["rtt_mean_ms"] == pytest.approx(rows_sum(rows, "rtt_sum_us") / rows_sum(rows, "tcpinfo_records")
                                                / 1000)
    assert body["range"]["preset"] == "24h" and body["range"]["resolution"] == "hour"


def test_the_last_hour_reads_the_per_minute_window(api, rows):
    recent = rows["minute"] >= NOW_MINUTE - 59
    body = get(api, "/api/totals/", range="1h")
    assert body["range"]["resolution"] == "minute"
    assert body["bytes"] == rows_sum(rows, "response_bytes", recent)
    assert 0 < body["bytes"] < rows_sum(rows, "response_bytes")


def test_an_explicit_range_holds_only_its_rows(api, rows):
    start = datetime.fromtimestamp((NOW_MINUTE - 500) * 60, UTC).replace(minute=0)
    end = datetime.fromtimestamp((NOW_MINUTE - 100) * 60, UTC).replace(minute=0)
    inside = (rows["minute"] >= start.timestamp() // 60) & (rows["minute"] < end.timestamp() // 60)
    body = get(api, "/api/totals/", **{"from": start.isoformat(), "to": end.isoformat()})
    assert body["bytes"] == rows_sum(rows, "response_bytes", inside)
    assert body["range"]["preset"] is None


@pytest.mark.parametrize("by, column, table, time_column", [
    ("origin_as", "asn", "traffic_origin_hour", "hour"),
    ("neighbor_as", "neighbor_as", "traffic_prefix_hour", "hour"),
    ("prefix", "prefix", "traffic_prefix_hour", "hour"),
    ("country", "country", "traffic_prefix_hour", "hour"),
    ("router", "router_id", "traffic_prefix_hour", "hour"),
    ("traffic_type", "traffic_type", "traffic_current", "minute"),
])
def test_a_top_n_equals_the_archives_own_sums_and_adds_up_to_the_total(api, rows, by, column, table,
                                                                       time_column):
    want = sql_groups(column, table=table, time_column=time_column)
    body = get(api, f"/api/top/{by}/", limit=1000)
    got = {row["key"]: (row["bytes"], row["requests"]) for row in body["rows"]}
    assert got == want
    assert body["count"] == len(want) and body["other"] is None
    assert body["total"]["bytes"] == rows_sum(rows, "response_bytes")
    assert [row["bytes"] for row in body["rows"]] == sorted((b for b, _ in want.values()), reverse=True)


def test_origin_ases_are_the_routes_origins_and_unrouted_traffic_is_as0(api, rows):
    got = {row["key"]: row["bytes"] for row in get(api, "/api/top/origin_as/")["rows"]}
    clients = {address_bytes(c): c for c in CLIENTS}
    want = {}
    for r in rows:
        ip = ipaddress.ip_address(clients[bytes(r["client"])])
        origin = next((int(o) for p, o in ROUTES if ip in ipaddress.ip_network(p)), 0)
        want[origin] = want.get(origin, 0) + int(r["response_bytes"])
    assert got == want
    assert set(got) == {0, 64700, 64701, 64702}


def test_a_short_top_n_has_an_other_row_that_makes_up_the_total(api, rows):
    body = get(api, "/api/top/prefix/", limit=2)
    assert len(body["rows"]) == 2 and body["count"] > 2
    assert sum(r["bytes"] for r in body["rows"]) + body["other"]["bytes"] == body["total"]["bytes"]
    assert sum(r["requests"] for r in body["rows"]) + body["other"]["requests"] == rows_sum(rows, "requests")


def test_filters_by_router_and_traffic_type_keep_only_their_rows(api, rows, routers):
    a, b = routers
    body = get(api, "/api/totals/", router=b.pk, type="video")
    mask = (rows["server"] == np.void(address_bytes("198.18.1.1"))) & (rows["traffic_type"] == b"video")
    assert body["bytes"] == rows_sum(rows, "response_bytes", mask) > 0
    assert body["filters"]["router"] == b.pk and body["filters"]["traffic_type"] == "video"


def test_filters_by_origin_neighbour_and_prefix_match_the_archive(api, rows, routers):
    a, b = routers
    want = sql_groups("router_id", "AND origin_as = %s AND neighbor_as = %s", [64701, 64602])
    body = get(api, "/api/top/router/", asn="AS64701", neighbor="64602")
    assert {r["key"]: (r["bytes"], r["requests"]) for r in body["rows"]} == want == {b.pk: want[b.pk]}
    cast = "::cidr" if connection.vendor == "postgresql" else ""
    want = sql_groups("origin_as", f"AND prefix = %s{cast}", ["2001:db8::/32"])
    body = get(api, "/api/top/origin_as/", prefix="2001:db8::/32")
    assert {r["key"]: (r["bytes"], r["requests"]) for r in body["rows"]} == want
    assert list(want) == [64702]


def test_a_series_adds_up_to_the_total_per_bucket_and_over_the_range(api, rows, routers):
    body = get(api, "/api/series/", split="router")
    assert body["resolution"] == "hour" and len(body["times"]) == len(body["series"][0]["bytes"])
    per_router = {s["key"]: sum(s["bytes"]) for s in body["series"]}
    assert per_router == {k: v[0] for k, v in sql_groups("router_id").items()}
    plain = get(api, "/api/series/")
    assert len(plain["series"]) == 1
    for i in range(len(plain["times"])):
        assert plain["series"][0]["bytes"][i] == sum(s["bytes"][i] for s in body["series"])
    # Each row's hour holds that row's bytes.
    hours = {datetime.fromisoformat(t.replace("Z", "+00:00")): i for i, t in enumerate(plain["times"])}
    for minute in MINUTES:
        hour = datetime.fromtimestamp(minute // 60 * 3600, UTC)
        assert plain["series"][0]["bytes"][hours[hour]] >= rows_sum(rows, "response_bytes",
                                                                     rows["minute"] == minute)


def test_an_asns_page_splits_its_traffic_by_router_type_neighbour_prefix_country_and_path(api, rows, routers):
    a, b = routers
    ASName.objects.create(asn=64701, name="EXAMPLE-NET")
    body = get(api, "/api/asns/AS64701/")
    assert (body["asn"], body["name"], body["label"]) == (64701, "EXAMPLE-NET", "AS64701 EXAMPLE-NET")
    only = "AND origin_as = %s"
    assert body["totals"]["bytes"] == sum(v[0] for v in sql_groups("origin_as", only, [64701]).values())
    for part, column in (("by_router", "router_id"), ("by_traffic_type", "traffic_type"),
                         ("by_neighbor_as", "neighbor_as"), ("by_prefix", "prefix"), ("by_country", "country")):
        want = sql_groups(column, only, [64701])
        assert {r["key"]: (r["bytes"], r["requests"]) for r in body[part]["rows"]} == want, part
    assert {r["key"] for r in body["by_neighbor_as"]["rows"]} == {64601, 64602}
    assert {r["key"] for r in body["by_prefix"]["rows"]} == {"10.1.0.0/16"}
    assert sum(sum(s["bytes"]) for s in body["series"]["series"]) == body["totals"]["bytes"]
    # AS paths, from the path tables.
    assert body["paths"]["available"] is True
    paths = {r["key"]: r["bytes"] for r in body["paths"]["rows"]}
    want = sql_groups("as_path", only, [64701], table="traffic_path_hour")
    assert paths == {k: v[0] for k, v in want.items()}
    assert set(paths) == {"64601 64701", "64602 64701"}


def test_an_asn_in_asdot_is_the_same_asn(api, rows):
    assert get(api, "/api/asns/0.64701/")["asn"] == 64701
    assert api.get("/api/asns/AS64701x/").status_code == 404


def test_a_countrys_page_reads_its_countrys_rows(api, rows):
    body = get(api, "/api/countries/--/")
    # No country data is loaded: every row is of unknown country.
    assert body["country"] == "" and body["totals"]["bytes"] == rows_sum(rows, "response_bytes")
    assert {r["key"]: r["bytes"] for r in body["by_origin_as"]["rows"]} == {
        k: v[0] for k, v in sql_groups("asn", table="traffic_origin_hour").items()}
    assert get(api, "/api/countries/FR/")["totals"]["bytes"] == 0


def test_the_top_asns_report_ranks_with_cumulative_shares_and_coverage(api, rows):
    body = get(api, "/api/reports/top-asns/")
    volumes = sorted((v[0] for v in sql_groups("asn", table="traffic_origin_hour").values()), reverse=True)
    assert [r["bytes"] for r in body["rows"]] == volumes
    assert [r["rank"] for r in body["rows"]] == [1, 2, 3, 4]
    assert body["rows"][-1]["cumulative"] == pytest.approx(1.0)
    assert body["coverage"]["count"] == 4 and body["coverage"]["total_bytes"] == sum(volumes)
    half = next(i for i in range(1, 5) if sum(volumes[:i]) >= 0.5 * sum(volumes))
    assert body["coverage"]["levels"][0] == {"share": 0.5, "groups": half}
    neighbours = get(api, "/api/reports/top-asns/", by="neighbor_as")
    assert {r["key"] for r in neighbours["rows"]} == {0, 64601, 64602}


def test_peering_candidates_are_the_origins_reached_through_a_transit(api, rows):
    body = get(api, "/api/reports/peering/")
    want = {o: sum(v[0] for v in sql_groups("neighbor_as", "AND origin_as = %s AND neighbor_as <> %s",
                                             [o, o]).values())
            for o in (64700, 64701, 64702)}
    assert {r["key"]: r["bytes"] for r in body["rows"]} == want  # AS0 (unrouted) is no candidate
    assert [r["rank"] for r in body["rows"]] == [1, 2, 3]
    assert all(r["transit_share"] == 1.0 for r in body["rows"])  # every route goes through a transit
    assert {t["asn"] for t in body["rows"][0]["transits_now"]} == {64601, 64602}
    assert body["total_bytes"] == rows_sum(rows, "response_bytes")
    assert body["transit_bytes"] == sum(want.values())


def test_the_countries_report_reads_a_months_daily_rollups(api, rows):
    now = datetime.now(UTC)
    for day in {datetime.fromtimestamp(int(m) * 60, UTC).date() for m in MINUTES}:
        rollup.rollup_day(day)
    in_month = np.array([datetime.fromtimestamp(int(m) * 60, UTC).month == now.month for m in rows["minute"]])
    body = get(api, "/api/reports/countries/", month=f"{now:%Y-%m}")
    assert body["range"]["resolution"] == "day"
    assert body["total"]["bytes"] == rows_sum(rows, "response_bytes", in_month)
    assert [r["key"] for r in body["rows"]] == [""]
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    origins = sql_groups("asn", table="traffic_origin_day", time_column="day", since=month_start)
    assert body["rows"][0]["top_asn"] == max(origins, key=lambda k: origins[k][0])
    r = api.get("/api/reports/countries/", {"month": "2026-13"})
    assert r.status_code == 400 and "is not a month" in r.json()["detail"]


def test_the_delivery_report_puts_the_worst_retransmit_rate_first(api, rows):
    body = get(api, "/api/reports/delivery/", min_share="0")
    rates = {}
    with connection.cursor() as cur:
        since = datetime.now(UTC) - timedelta(hours=25)
        cur.execute("SELECT asn, sum(retrans_segs), sum(data_segs) FROM traffic_origin_hour WHERE hour >= %s "
                    "GROUP BY asn", [since if connection.vendor == "postgresql"
                                     else since.strftime("%Y-%m-%d %H:%M:%S+00:00")])
        for asn, retrans, segs in cur.fetchall():
            rates[int(asn)] = int(retrans) / int(segs)
    assert [r["key"] for r in body["worst_retrans"]] == sorted(rates, key=lambda a: -rates[a])
    assert [r["retrans_rate"] for r in body["worst_retrans"]] == pytest.approx(sorted(rates.values(), reverse=True))
    assert body["eligible"] == 4 and body["threshold"]["min_share"] == 0
    r = api.get("/api/reports/delivery/", {"min_share": "2"})
    assert r.status_code == 400 and "min_share" in r.json()["detail"]


def test_the_uplink_comparison_splits_one_destination_by_neighbour_and_router(api, rows, routers):
    a, b = routers
    body = get(api, "/api/reports/uplinks/", asn="AS64701")
    only = "AND origin_as = %s"
    assert {r["key"]: r["bytes"] for r in body["neighbors"]["rows"]} == {
        k: v[0] for k, v in sql_groups("neighbor_as", only, [64701]).items()}
    assert {r["key"]: r["bytes"] for r in body["routers"]["rows"]} == {
        k: v[0] for k, v in sql_groups("router_id", only, [64701]).items()}
    assert sorted(tuple(g["key"]) for g in body["grid"]) == [(a.pk, 64601), (b.pk, 64602)]
    assert body["total"]["bytes"] == sum(v[0] for v in sql_groups("origin_as", only, [64701]).values())
    assert body["target"]["origin_as"] == 64701
    for params in ({}, {"asn": "64701", "country": "FR"}):
        r = api.get("/api/reports/uplinks/", params)
        assert r.status_code == 400 and "asn or as country" in r.json()["detail"]


def test_flows_go_from_routers_through_neighbours_to_origins(api, rows):
    body = get(api, "/api/flows/", limit=200)
    assert body["total_bytes"] == rows_sum(rows, "response_bytes")
    nodes = body["nodes"]
    out_of_routers = sum(link["bytes"] for link in body["links"] if nodes[link["source"]]["kind"] == "router")
    assert out_of_routers == body["total_bytes"]


# -- parameters ----------------------------------------------------------------------

@pytest.mark.parametrize("url, params, why", [
    ("/api/totals/", {"range": "2w"}, "unknown range '2w'"),
    ("/api/totals/", {"from": "yesterday"}, "is not a date or time"),
    ("/api/totals/", {"from": "2026-03-02", "to": "2026-03-01"}, "ends before it starts"),
    ("/api/totals/", {"to": "2026-03-01"}, "give from as well"),
    ("/api/totals/", {"asn": "ASX"}, "is not an AS number"),
    ("/api/totals/", {"asn": "4294967296"}, "is not an AS number"),
    ("/api/totals/", {"country": "FRA"}, "is not a country code"),
    ("/api/totals/", {"prefix": "10.0.0.0/33"}, "is not a prefix"),
    ("/api/totals/", {"router": "a"}, "is not a router id"),
    ("/api/totals/", {"router": "-1"}, "is not a router id"),
    ("/api/totals/", {"router": str(2**64)}, "is not a router id"),
    ("/api/as-names/", {"limit": ""}, "limit: '' is not a whole number"),
    ("/api/totals/", {"range": ""}, "range: give a value, or leave the parameter out"),
    ("/api/totals/", {"range": "7days", "from": "2026-03-01"}, "unknown range '7days'"),
    ("/api/series/", {"split": ""}, "split: give a value"),
    ("/api/totals/", {"type": "x" * 17}, "at most 16 printable ASCII characters"),
    ("/api/totals/", {"type": "vidéo"}, "at most 16 printable ASCII characters"),
    ("/api/as-names/", {"offset": "null"}, "offset: 'null' is not a whole number"),
    ("/api/as-names/", {"offset": str(2**63)}, "offset: 9223372036854775808 is not in 0..9223372036854775807"),
    ("/api/as-names/", {"limit": "0"}, "limit: 0 is not in 1..1000"),
    ("/api/totals/", {"rnage": "7d"}, "unknown parameter(s): rnage"),
    ("/api/top/prefix/", {"limit": "0"}, "limit: 0 is not in 1..1000"),
    ("/api/top/prefix/", {"limit": "ten"}, "'ten' is not an integer"),
    ("/api/top/prefix/", {"order": "size"}, "order: 'size' is not one of"),
    ("/api/series/", {"split": "colour"}, "split: 'colour' is not one of"),
    ("/api/asns/64500/", {"asn": "64501"}, "unknown parameter(s): asn"),
    ("/api/top/as_path/", {"country": "FR"}, "AS paths cannot be filtered by country"),
    ("/api/as-names/", {"asn": "nope"}, "is not an AS number"),
    ("/api/as-names/", {"search": "EYE\x00BALL"}, "an AS name has no NUL character"),
])
def test_a_bad_parameter_is_a_400_that_says_why(api, url, params, why):
    r = api.get(url, params)
    assert r.status_code == 400, r.content
    assert why in r.json()["detail"]


def test_a_repeated_parameter_is_refused(api):
    r = api.get("/api/totals/?router=1&router=2")
    assert r.status_code == 400 and "more than once" in r.json()["detail"]


def test_an_unknown_dimension_is_404(api):
    r = api.get("/api/top/colour/")
    assert r.status_code == 404 and "expected one of" in r.json()["detail"]


# -- metadata ------------------------------------------------------------------------

def test_routers_list_their_served_networks_and_active_table(api, routers):
    body = get(api, "/api/routers/")
    assert [(r["name"], r["asn_text"], r["served_networks"], r["is_default"]) for r in body] == [
        ("a", "AS64500", ["198.18.0.0/24"], True), ("b", "AS64500", ["198.18.1.0/24"], False)]
    assert body[0]["active_routes"] == len(ROUTES)


def test_traffic_types_are_those_named_in_the_admin_and_those_in_the_archive(api, rows):
    TrafficType.objects.create(name="video", label="Video streams")
    TrafficType.objects.create(name="api", label="API")
    # The query layer keeps the archive's types for a few minutes; an
    # earlier test's empty archive must not answer for this one.
    queries._types_cache.clear()
    body = {t["name"]: t for t in get(api, "/api/traffic-types/")}
    assert set(body) == {"api", "video", "web"}
    assert (body["video"]["label"], body["video"]["configured"], body["video"]["seen"]) == ("Video streams", True, True)
    assert (body["api"]["configured"], body["api"]["seen"]) == (True, False)
    assert (body["web"]["configured"], body["web"]["seen"]) == (False, True)


def test_a_traffic_type_is_seen_while_its_hour_is_not_archived_yet(api, routers):
    # One minute of a new type in the running hour, and one in an earlier
    # hour still pending its archive: both only in the per-minute window.
    r = np.zeros(2, spool.ROW)
    r["minute"] = [NOW_MINUTE, NOW_MINUTE - 70]
    r["client"] = address_bytes(CLIENTS[0])
    r["server"] = address_bytes(SERVERS[0])
    r["traffic_type"] = [b"live", b"backfill"]
    r["records"] = r["requests"] = 1
    ingest.write(ingest.summarise(r))
    queries._types_cache.clear()
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM traffic_total_hour")
        assert cur.fetchone()[0] == 0  # nothing archived
    body = {t["name"]: t for t in get(api, "/api/traffic-types/")}
    assert set(body) == {"live", "backfill"}
    assert all(t["seen"] and not t["configured"] for t in body.values())
    # Once archived, the hourly tables name it (and the window still has it).
    rollup.archive_pending(everything=True)
    queries._types_cache.clear()
    assert {t["name"] for t in get(api, "/api/traffic-types/")} == {"live", "backfill"}


def test_as_names_are_found_by_number_or_name_a_page_at_a_time(api):
    ASName.objects.bulk_create([ASName(asn=64500 + i, name=f"NET-{i}") for i in range(150)] +
                               [ASName(asn=4200000000, name="Example Transit")])
    page = get(api, "/api/as-names/")
    assert page["count"] == 151 and len(page["results"]) == 100 and page["next"]
    assert get(api, "/api/as-names/", asn="AS64501")["results"] == [
        {"asn": 64501, "asn_text": "AS64501", "name": "NET-1", "country": ""}]
    assert [r["asn"] for r in get(api, "/api/as-names/", search="transit")["results"]] == [4200000000]


# -- schema and docs -----------------------------------------------------------------

def api_routes():
    """Every path under /api/ that ipr.api.urls routes, in OpenAPI's spelling."""
    out = set()
    for p in api_urls.urlpatterns:
        route = str(p.pattern)
        if route in ("", "schema/", "docs/", "redoc/", "redoc/redoc.standalone.js", "auth/"):
            continue
        out.add("/api/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route))
    return out


def test_the_schema_is_valid_openapi_without_warnings_and_lists_every_endpoint(tmp_path):
    path = tmp_path / "schema.yaml"
    # --fail-on-warn raises on any warning, --validate on an invalid schema.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(path))
    import yaml
    schema = yaml.safe_load(path.read_text())
    assert set(schema["paths"]) == api_routes()
    assert len(schema["paths"]) >= 10
    for ops in schema["paths"].values():
        assert set(ops) == {"get"}
        assert {"tokenAuth", "cookieAuth"} <= {k for s in ops["get"]["security"] for k in s}


def test_the_schema_is_served_to_a_client_with_a_token(api):
    r = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert r.status_code == 200
    assert r.json()["openapi"].startswith("3.")
    assert "/api/top/{by}/" in r.json()["paths"]


def test_the_docs_load_swagger_ui_from_this_server_not_a_cdn(user, client):
    client.force_login(user)
    page = client.get("/api/docs/").content.decode()
    scripts = re.findall(r'src="([^"]+)"', page) + re.findall(r'href="([^"]+)"', page)
    assert any("swagger-ui-bundle.js" in s for s in scripts)
    assert not [s for s in scripts if s.startswith(("http:", "https:", "//"))], scripts
    bundle = next(s for s in scripts if "swagger-ui-bundle.js" in s)
    asset = client.get(bundle)
    assert asset.status_code == 200
    assert len(b"".join(asset.streaming_content) if asset.streaming else asset.content) > 100_000
    redoc = client.get("/api/redoc/").content.decode()
    links = re.findall(r'(?:src|href)="([^"]+)"', redoc)
    assert any("redoc.standalone.js" in s for s in links)
    # Not a script, a font or a preconnect from elsewhere (Google's web fonts)
    assert not [s for s in links if s.startswith(("http:", "https:", "//"))], links
