"""The pages and reports show the archive's own sums: every figure checked
against sums computed here from the generated facts, independently of the
query layer. And nobody sees anything without logging in."""
import csv
import io
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import pytest

from ipr.web import units
from web_helpers import TRANSITS, demo_facts, module_archive, setup_names

pytestmark = pytest.mark.django_db
UTC = timezone.utc
NOW = datetime.now(UTC)


def floor(t, step):
    s = int(t.timestamp())
    return datetime.fromtimestamp(s - s % step, UTC)


# Explicit ranges, aligned to their buckets, one per resolution (see
# ipr.web.queries: ≤ 6 h within the per-minute window → minute; ≤ 35 days
# within the hourly retention → hour; else day).
RANGES = {
    "minute": (floor(NOW, 60) - timedelta(minutes=50), floor(NOW, 60) - timedelta(minutes=5)),
    "hour": (floor(NOW, 3600) - timedelta(hours=30), floor(NOW, 3600) - timedelta(hours=2)),
    "day": (floor(NOW, 86400) - timedelta(days=80), floor(NOW, 86400) - timedelta(days=1)),
}


def qs(resolution):
    start, end = RANGES[resolution]
    return f"from={start:%Y-%m-%dT%H:%M}&to={end:%Y-%m-%dT%H:%M}"


@pytest.fixture(scope="module")
def facts(django_db_setup, django_db_blocker):
    # Written once for the module, committed; each test's own rows (users)
    # are rolled back as usual.
    yield from module_archive(django_db_blocker, setup_names,
                              lambda: demo_facts(NOW, seed=11, hours=24 * 85, per_hour=3, minutes=90, per_minute=2))


@pytest.fixture
def operator(client, django_user_model):
    user = django_user_model.objects.create_user("op", password="x-very-long-password")
    client.force_login(user)
    return client


def in_range(facts, resolution, **match):
    start, end = RANGES[resolution]
    return [f for f in facts if start <= f.minute < end and all(getattr(f, k) == v for k, v in match.items())]


def expected(facts, key=None):
    """{key: {bytes, requests, retrans, segs}} and the total, from the facts."""
    per = defaultdict(lambda: defaultdict(int))
    total = defaultdict(int)
    for f in facts:
        for acc in ([per[key(f)]] if key else []) + [total]:
            acc["bytes"] += f.sums["response_bytes"]
            acc["requests"] += f.sums["requests"]
            acc["retrans"] += f.sums["retrans_segs"]
            acc["segs"] += f.sums["data_segs"]
    return per, total


def csv_rows(client, url, table):
    sep = "&" if "?" in url else "?"
    response = client.get(f"{url}{sep}format=csv&table={table}")
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def check_table(rows, per, total, keyof=str):
    """Each row equals its expected sums; rows + other = total = the facts' total."""
    body = [r for r in rows if r["label"] != "total" and not r["label"].startswith("other")]
    foot = {("other" if r["label"].startswith("other") else "total"): r for r in rows if r not in body}
    assert int(foot["total"]["bytes"]) == total["bytes"]
    assert int(foot["total"]["requests"]) == total["requests"]
    for r in body:
        want = per[keyof(r["key"])]
        assert int(r["bytes"]) == want["bytes"], r
        assert int(r["requests"]) == want["requests"], r
        if want["segs"]:
            assert float(r["retrans_rate"]) == pytest.approx(want["retrans"] / want["segs"], rel=1e-5)
    shown = sum(int(r["bytes"]) for r in body) + int(foot.get("other", {"bytes": 0})["bytes"])
    assert shown == total["bytes"]
    # The largest first, and nothing larger left in "other".
    volumes = [int(r["bytes"]) for r in body]
    assert volumes == sorted(volumes, reverse=True)
    if body and "other" in foot:
        rest = sorted((v["bytes"] for k, v in per.items() if k not in {keyof(r["key"]) for r in body}),
                      reverse=True)
        assert not rest or rest[0] <= volumes[-1]


KEYS = {
    "origins": ("origin_as", int), "neighbors": ("neighbor_as", int), "countries": ("country", str),
    "prefixes": ("prefix", str), "routers": ("router", int), "types": ("traffic_type", str),
}


@pytest.mark.parametrize("resolution", ["minute", "hour", "day"])
def test_the_dashboard_adds_up_to_the_archive_totals(operator, facts, resolution):
    url = f"/?{qs(resolution)}"
    page = operator.get(url)
    assert page.status_code == 200
    assert page.context["range"].resolution == resolution
    chosen = in_range(facts, resolution)
    assert chosen, "the generated archive has traffic in this range"
    _, total = expected(chosen)
    assert f'id="total-bytes">{units.human_bytes(total["bytes"])}<' in page.content.decode()
    assert f'id="total-requests">{units.human_int(total["requests"])}<' in page.content.decode()
    for table, (attr, keyof) in KEYS.items():
        per, total = expected(chosen, key=lambda f: getattr(f, attr))
        check_table(csv_rows(operator, url, table), per, total, keyof)


@pytest.mark.parametrize("by", ["country", "origin_as"])
def test_several_cuts_of_a_top_n_from_one_reading_equal_each_top_n(facts, by):
    from ipr.web import queries as q
    rng = q.Range.last("30d")
    short, long = q.tops(rng, by, None, (3, 400))
    assert short == q.top(rng, by, None, 3) and long == q.top(rng, by, None, 400)
    assert short["rows"] == long["rows"][:3] and short["other"] is not None


@pytest.mark.parametrize("preset", ["30d", "90d"])
def test_a_long_preset_reads_its_whole_days_from_a_span_and_adds_up(operator, facts, preset,
                                                                    django_db_blocker):
    from ipr.traffic import rollup
    from ipr.traffic.models import Span
    from ipr.web import queries as q
    with django_db_blocker.unblock():
        rollup.refresh_spans(NOW)
    try:
        url = f"/?range={preset}"
        page = operator.get(url)
        rng = page.context["range"]
        assert rng.span is not None
        start, end = rng.start, rng.end
        chosen = [f for f in facts if start <= f.minute < end]
        assert "_span" in q.top(q.Range.last(preset, now=rng.now), "origin_as")["table"]
        for table, (attr, keyof) in KEYS.items():
            per, total = expected(chosen, key=lambda f: getattr(f, attr))
            check_table(csv_rows(operator, url, table), per, total, keyof)
    finally:
        with django_db_blocker.unblock():
            for first, end in list(Span.objects.values_list("first_day", "end_day")):
                rollup._delete_span(first, end)


def test_the_asn_page_adds_up_to_the_archive_totals(operator, facts):
    url = f"/asn/AS65001?{qs('hour')}"
    page = operator.get(url)
    assert page.status_code == 200
    assert "EYEBALL-01" in page.content.decode()  # the AS name beside the number
    chosen = in_range(facts, "hour", origin_as=65001)
    assert chosen
    for table, attr, keyof in (("router", "router", int), ("traffic_type", "traffic_type", str),
                               ("neighbor_as", "neighbor_as", int), ("prefix", "prefix", str),
                               ("country", "country", str), ("paths", "as_path", str)):
        per, total = expected(chosen, key=lambda f: getattr(f, attr))
        check_table(csv_rows(operator, url, table), per, total, keyof)
    _, total = expected(chosen)
    assert f'id="total-bytes">{units.human_bytes(total["bytes"])}<' in page.content.decode()


@pytest.mark.parametrize("url,match,tables", [
    ("/country/DE", {"country": "DE"}, ["origin_as", "router", "neighbor_as", "prefix"]),
    ("/country/--", {"country": ""}, ["origin_as", "traffic_type"]),
    ("/prefix/198.18.2.0/24", {"prefix": "198.18.2.0/24"}, ["router", "origin_as", "neighbor_as", "country"]),
    ("/router/2", {"router": 2}, ["traffic_type", "neighbor_as", "origin_as", "country", "prefix"]),
    ("/router/0", {"router": 0}, ["traffic_type", "origin_as"]),
    ("/type/video", {"traffic_type": "video"}, ["router", "origin_as", "country"]),
    ("/neighbor/64601", {"neighbor_as": 64601}, ["router", "origin_as", "prefix"]),
])
@pytest.mark.parametrize("resolution", ["minute", "day"])
def test_each_page_adds_up_to_the_archive_totals(operator, facts, url, match, tables, resolution):
    full = f"{url}?{qs(resolution)}"
    assert operator.get(full).status_code == 200
    chosen = in_range(facts, resolution, **match)
    attrs = {"router": ("router", int), "traffic_type": ("traffic_type", str), "origin_as": ("origin_as", int),
             "neighbor_as": ("neighbor_as", int), "country": ("country", str), "prefix": ("prefix", str)}
    for table in tables:
        attr, keyof = attrs[table]
        per, total = expected(chosen, key=lambda f: getattr(f, attr))
        check_table(csv_rows(operator, full, table), per, total, keyof)


def test_the_router_and_type_filters_narrow_every_table(operator, facts):
    url = f"/?{qs('hour')}&router=1&type=web"
    chosen = in_range(facts, "hour", router=1, traffic_type="web")
    per, total = expected(chosen, key=lambda f: f.origin_as)
    check_table(csv_rows(operator, url, "origins"), per, total, int)


def test_the_top_asns_report_counts_coverage_from_the_archive(operator, facts):
    url = f"/reports/top-asns?{qs('day')}&limit=5"
    rows = csv_rows(operator, url, "top")
    chosen = in_range(facts, "day")
    per, total = expected(chosen, key=lambda f: f.origin_as)
    check_table(rows, per, total, int)
    volumes = sorted((v["bytes"] for v in per.values()), reverse=True)
    acc, counts = 0, {}
    for level in (0.5, 0.9, 0.99):
        n = 0
        acc = 0
        while acc < level * total["bytes"]:
            acc += volumes[n]
            n += 1
        counts[level] = n
    coverage = csv_rows(operator, url, "coverage")
    assert {float(r["level"]): int(r["groups"]) for r in coverage} == counts
    cumulative = [float(r["cumulative"]) for r in rows if r["rank"]]
    assert cumulative[-1] == pytest.approx(sum(volumes[:5]) / total["bytes"], rel=1e-5)


def test_peering_candidates_are_the_origins_reached_through_another_as(operator, facts):
    rows = csv_rows(operator, f"/reports/peering?{qs('day')}&limit=10", "candidates")
    chosen = in_range(facts, "day")
    via = defaultdict(int)
    for f in chosen:
        if f.origin_as and f.neighbor_as and f.neighbor_as != f.origin_as:
            via[f.origin_as] += f.sums["response_bytes"]
    want = sorted(via.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    assert [(int(r["key"]), int(r["bytes"])) for r in rows] == want
    # The transits carrying each in the last 24 hours are named.
    assert all(any(name in r["transits_text"] for name in TRANSITS.values()) for r in rows[:3])


def test_the_uplink_comparison_splits_one_destination_per_neighbour_and_router(operator, facts):
    url = f"/reports/uplinks?{qs('hour')}&asn=65001"
    page = operator.get(url)
    assert page.status_code == 200
    chosen = in_range(facts, "hour", origin_as=65001)
    for table, attr in (("neighbors", "neighbor_as"), ("routers", "router")):
        per, total = expected(chosen, key=lambda f: getattr(f, attr))
        check_table(csv_rows(operator, url, table), per, total, int)
    # TRANSIT-BETA retransmits more in the generated traffic: never "best" for retransmits.
    rows = csv_rows(operator, url, "neighbors")
    beta = next(r for r in rows if r["key"] == "64601")
    assert "fewest retransmits" not in beta["best"]
    assert any("fewest retransmits" in r["best"] for r in rows)
    grid = csv_rows(operator, url, "grid")
    per, total = expected(chosen, key=lambda f: (f.router, f.neighbor_as))
    assert sum(int(r["bytes"]) for r in grid if r["label"] != "total") == total["bytes"]


def test_the_country_report_defaults_to_this_month_and_compares_with_the_last(operator, facts):
    rows = csv_rows(operator, "/reports/countries", "countries")
    start = NOW.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    prev = (start - timedelta(days=1)).replace(day=1)
    month = [f for f in facts if f.minute >= start]
    per, total = expected(month, key=lambda f: f.country)
    check_table(rows, per, total, str)
    before, _ = expected([f for f in facts if prev <= f.minute < start], key=lambda f: f.country)
    for r in rows:
        if r["label"] not in ("total",) and not r["label"].startswith("other"):
            assert int(r["previous_bytes"]) == before[r["key"]]["bytes"]


def test_the_quality_report_ranks_only_groups_with_enough_traffic(operator, facts):
    rows = csv_rows(operator, f"/reports/quality?{qs('day')}&min_share=0.02", "retrans")
    chosen = in_range(facts, "day")
    per, total = expected(chosen, key=lambda f: f.origin_as)
    ranked = [r for r in rows if r["label"] != "total"]
    assert ranked
    for r in ranked:
        assert int(r["bytes"]) >= 0.02 * total["bytes"]
    rates = [float(r["retrans_rate"]) for r in ranked]
    assert rates == sorted(rates, reverse=True)
    eligible = [k for k, v in per.items() if v["bytes"] >= 0.02 * total["bytes"]]
    worst = max(eligible, key=lambda k: per[k]["retrans"] / per[k]["segs"])
    assert int(ranked[0]["key"]) == worst


@pytest.mark.parametrize("text,target", [
    ("AS65002", "/asn/65002"), ("65002", "/asn/65002"), ("as 65002", "/asn/65002"),
    ("64086.59905", "/asn/4200000001"), ("fr", "/country/FR"), ("198.18.0.0/24", "/prefix/198.18.0.0/24"),
    ("198.19.3.9", "/prefix/198.19.3.0/24"), ("EYEBALL-07", "/asn/65007"),
])
def test_the_search_box_finds_addresses_prefixes_asns_and_countries(operator, facts, text, target):
    response = operator.get("/search", {"q": text, "range": "7d"})
    assert response.status_code == 302
    assert response["Location"].split("?")[0] == target
    assert "range=7d" in response["Location"]


def test_a_search_for_nothing_known_says_so(operator, facts):
    response = operator.get("/search", {"q": "203.0.113.1"})
    assert response.status_code == 404
    assert "No prefix" in response.content.decode()
    # A NUL, which no AS name (PostgreSQL text) can hold: nothing found, no error.
    response = operator.get("/search", {"q": "EYE\x00BALL"})
    assert response.status_code == 404
    assert "Not an address" in response.content.decode()


PAGES = ["/", "/asn/65001", "/neighbor/64600", "/country/FR", "/prefix/198.18.0.0/24", "/router/1", "/type/web",
         "/search?q=AS1", "/reports/", "/reports/top-asns", "/reports/peering", "/reports/countries",
         "/reports/quality", "/reports/uplinks?asn=65001", "/?format=csv&table=origins"]


@pytest.mark.parametrize("url", PAGES)
def test_anonymous_users_get_only_the_login_page(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")
    assert client.get("/accounts/login/").status_code == 200


def test_a_bad_range_or_filter_is_a_400_with_the_reason(operator, facts):
    for url, reason in (("/?range=2w", "unknown range"), ("/?from=yesterday", "not a date"),
                        ("/asn/ASX", "not an AS number"), ("/country/FRA", "country code"),
                        ("/?router=x", "not a router id")):
        response = operator.get(url)
        assert response.status_code == 400, url
        assert reason in response.content.decode()


def test_logging_out_closes_the_pages(operator):
    assert operator.get("/reports/").status_code == 200
    operator.post("/accounts/logout/")
    assert operator.get("/reports/").status_code == 302


def test_the_running_hour_is_read_from_the_per_minute_window(operator, facts, django_db_blocker):
    # The hourly tables hold archived hours only; traffic of the running hour
    # is in the window alone until the archive task computes it.
    from web_helpers import Fact, random_sums
    import random
    extra = Fact(floor(NOW, 60), 1, "web", "198.18.0.0/24", 65001, 65001, "FR", "65001",
                 random_sums(random.Random(5)), 1000)
    before = operator.get("/?range=24h").context["total"]["bytes"]
    from django.db import connection
    from ipr.routing.load import copy_rows
    from ipr.traffic import tables
    cols = tables.key_columns("traffic_current")
    row = {"minute": extra.minute.strftime("%Y-%m-%d %H:%M:%S+00:00"), "router_id": 1, "traffic_type": "web",
           "prefix": extra.prefix, "origin_as": 65001, "neighbor_as": 65001, "country": "FR", "as_path": "65001"}
    copy_rows("traffic_current", tuple(cols + tables.MEASURES),
              [tuple(row[c] for c in cols) + tuple(extra.sums[m] for m in tables.SUMS) + (1000,)])
    after = operator.get("/?range=24h").context["total"]["bytes"]
    assert after - before == extra.sums["response_bytes"]
    assert connection.vendor in ("postgresql", "sqlite")


# -- hostile input: always a 4xx, never a 500 -----------------------------------------

HUGE = ["9223372036854775808", "99999999999999999999", str(2**64), "-1"]
# Every parameter gets these; each kind of parameter its own as well.
GENERIC = HUGE + ["nan", "1e999", "x" * 3000, "EYE\x00BALL", " "]
TIMES = ["1900-01-01", "9999-12-31", "9999-12-31T23:59", "0001-01-01T00:00+23:59", "9999-12-31T23:59-23:59",
         "2100-01-01", "0001-01", "9999-12", "2026-13", "0"]
NUMBERS = ["inf", "-inf", "0", "-0.0", "1e-999", "0x10"]
HOSTILE = {**{n: TIMES for n in ("range", "from", "to", "month")},
           **{n: NUMBERS for n in ("router", "limit", "min_share", "offset")},
           "asn": ["AS4294967296", "1.65536", "AS-1", "0.0.0"], "neighbor": ["4294967296", "65536.1"],
           "country": ["--", "ÀÉ", "??"], "prefix": ["::/129", "0.0.0.0/-1", "1.2.3.4/32/1"],
           "type": ["vidéo", "a b", "x" * 17], "q": ["AS99999999999999999999", "1.2.3.4/99", "::1"]}
# Pairs that only break together.
HOSTILE_PAIRS = [{"from": "1900-01-01", "to": "9999-12-31"}, {"from": "2026-01-01", "to": "9999-12-31"},
                 {"from": "2026-01-01", "to": "9999-12-31T23:59"}, {"from": "0001-01-01", "to": "0001-01-02"},
                 {"range": "1y", "from": "9999-12-31"}, {"month": "9999-12", "range": "24h"}]
# A valid value for each path argument, so the hostile query reaches the view.
PATH_SAMPLES = {"asn": "65001", "code": "FR", "country": "FR", "prefix": "198.18.0.0/24", "router_id": "1",
                "name": "web", "by": "origin_as"}
# What each page reads from the query string (the API's endpoints say it
# themselves: they refuse any other parameter).
PAGE_PARAMS = ["range", "from", "to", "router", "type", "asn", "neighbor", "country", "prefix", "format", "table"]
PAGE_EXTRA = {"search": ["q"], "reports/top-asns": ["by", "limit"], "reports/peering": ["limit"],
              "reports/countries": ["month"], "reports/quality": ["by", "min_share"],
              "reports/regressions": ["baseline"]}


def routes():
    """Every page and API route of the URL configuration, as (route, its
    path arguments, the query parameters it reads): the admin, the login
    views, /healthz and /metrics excepted."""
    from django.urls import URLPattern, URLResolver, get_resolver
    from ipr.api import views as api

    def reads(route, callback):
        view = getattr(callback, "view_class", None)
        if callback is api.redoc_bundle:
            return []
        if view is None:
            return PAGE_PARAMS + PAGE_EXTRA.get(route, [])
        if issubclass(view, api.ArchiveView):
            return ["range", "from", "to", *view.filters_taken, *view.extra_params]
        if view is api.ASNameList:
            return ["asn", "search", "limit", "offset"]
        return ["format"]

    def walk(patterns, prefix):
        for p in patterns:
            route = prefix + str(p.pattern)
            if isinstance(p, URLResolver):
                if not route.startswith(("admin/", "api/auth/")):
                    yield from walk(p.url_patterns, route)
            elif isinstance(p, URLPattern) and not route.startswith(("accounts/", "healthz", "metrics")):
                yield route, list(p.pattern.converters), reads(route, p.callback)
    return list(walk(get_resolver().url_patterns, ""))


def fill(route: str, values: dict) -> str:
    import re
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: values[m.group(1)], route)


def test_every_page_and_endpoint_answers_hostile_input_with_a_4xx(operator):
    # On an empty archive: what is checked is the parsing, not the figures.
    # The test client raises a view's exception, so a 500 fails here with its traceback.
    seen = []
    for route, args, reads in routes():
        url = fill(route, PATH_SAMPLES)
        assert operator.get(url, {"asn": "65001"} if "uplinks" in route else {}).status_code < 400, url
        for name in reads:
            for value in GENERIC + HOSTILE.get(name, []):
                assert operator.get(url, {name: value}).status_code < 500, (url, name, value)
        for pair in HOSTILE_PAIRS:
            if set(pair) <= set(reads):
                assert operator.get(url, pair).status_code < 500, (url, pair)
        for arg in args:  # path arguments, huge integers included
            for value in HUGE + ["nan", "x" * 300, "0001-01-01", "%00"]:
                bad = fill(route, {**PATH_SAMPLES, arg: value})
                assert operator.get(bad).status_code < 500, bad
        seen.append(route)
    assert {"", "router/<int:router_id>", "reports/countries", "api/totals/", "api/reports/countries/",
            "api/top/<str:by>/"} <= set(seen), seen


@pytest.mark.parametrize("url, param", [
    ("/?from=1900-01-01&to=9999-12-31", "from"),
    ("/?from=2026-01-01&to=9999-12-31", "to"),
    ("/?from=2026-01-01&to=9999-12-31T23:59", "to"),
    ("/router/9223372036854775808", "router"),
    ("/?router=99999999999999999999", "router"),
    ("/?router=-1", "router"),
    ("/reports/countries?month=9999-12", "month"),
    ("/reports/countries?month=0001-01", "month"),
    ("/reports/top-asns?limit=-1", "limit"),
    ("/reports/top-asns?limit=100000", "limit"),
    ("/reports/quality?min_share=nan", "min_share"),
    ("/reports/quality?min_share=2", "min_share"),
    ("/reports/quality?by=router", "by"),
    ("/type/" + "x" * 17, "type"),
])
def test_a_page_refuses_what_the_api_refuses_with_a_400_naming_the_parameter(operator, url, param):
    r = operator.get(url)
    assert r.status_code == 400, url
    assert r["Content-Type"].startswith("text/html")
    assert f"{param}: " in r.content.decode()
    api = url.replace("/reports/countries?", "/api/reports/countries/?").replace(
        "/reports/top-asns?", "/api/reports/top-asns/?").replace("/reports/quality?", "/api/reports/delivery/?")
    if url.startswith("/?"):
        api = "/api/totals/" + url[1:]
    if api.startswith("/api/"):
        r = operator.get(api)
        assert r.status_code == 400, api
        assert r.json()["detail"].startswith(f"{param}: "), r.json()


def test_the_bounds_of_a_range_are_accepted_and_one_step_beyond_is_refused(operator):
    assert operator.get("/", {"from": "1970-01-01", "to": "2099-12-31"}).status_code == 200
    assert operator.get("/reports/countries", {"month": "2099-12"}).status_code == 200
    assert operator.get("/reports/countries", {"month": "1970-01"}).status_code == 200
    for params in ({"from": "1969-12-31T23:59", "to": "1970-01-02"}, {"from": "2099-12-31", "to": "2100-01-01"},
                   {"from": "2099-12-31", "to": "2100-01-01T00:01"}):
        assert operator.get("/", params).status_code == 400, params
    assert operator.get("/", {"from": "2099-12-31", "to": "2100-01-01T00:00"}).status_code == 200


@pytest.mark.parametrize("url", ["/", "/reports/", "/api/totals/", "/accounts/login/"])
def test_every_answer_carries_a_content_security_policy_of_this_site_alone(operator, url):
    policy = dict(d.strip().split(" ", 1) for d in operator.get(url)["Content-Security-Policy"].split(";"))
    assert policy["default-src"] == "'self'" and policy["script-src"] == "'self'"
    assert policy["object-src"] == "'none'" and policy["frame-ancestors"] == "'none'"
    for sources in policy.values():
        assert "http" not in sources and "unsafe-eval" not in sources and "*" not in sources, policy


@pytest.mark.parametrize("value,bytes_,bps", [
    (0, "0 B", "0 b/s"), (999, "999 B", "999 b/s"), (13_000, "13.0 kB", "13.0 kb/s"),
    (14_300, "14.3 kB", "14.3 kb/s"), (143_000, "143 kB", "143 kb/s"), (999_700, "1.00 MB", "1.00 Mb/s"),
    (1_470_000_000, "1.47 GB", "1.47 Gb/s"),
])
def test_bytes_and_bits_read_with_three_significant_digits(value, bytes_, bps):
    assert units.human_bytes(value) == bytes_
    assert units.human_bps(value) == bps


def test_times_read_with_three_significant_digits_and_rates_with_two_decimals():
    assert [units.human_ms(v) for v in (0.85, 5.2, 33.64, 99.96, 150)] == \
        ["0.85 ms", "5.20 ms", "33.6 ms", "100 ms", "150 ms"]
    assert units.human_pct(0.001) == "0.10 %"
    # Differences carry their sign, a true minus as the pp column's.
    assert [units.human_ms_change(v) for v in (-2.48, 2.8, 0, -150.2)] == \
        ["−2.48 ms", "+2.80 ms", "+0.00 ms", "−150 ms"]
    assert units.human_pp(-0.0179) == "−1.79 pp"


def test_the_country_report_has_one_period_control_and_this_periods_bytes_first(operator, facts):
    page = operator.get("/reports/countries").content.decode()
    assert 'id="month-select"' in page and 'id="range-select"' not in page
    assert page.count("<form class=\"picker\"") == 1
    heads = [c.split(">", 1)[1] for c in page.split('id="table-countries"', 1)[1].split("</thead>")[0]
             .split("</th>")[:-1]]
    assert heads.index("bytes") < heads.index("bytes, period before") < heads.index("change")
    assert heads.index("largest origin AS") > heads.index("RTT p95")
    # The largest origin AS links to its page, and its CSV columns are the AS and its name.
    rows = csv_rows(operator, "/reports/countries", "countries")
    top = next(r for r in rows if r["top_asn"] not in ("", "0"))
    assert f'href="/asn/{top["top_asn"]}?' in page
    assert top["top_asn_label"] and top["top_asn_label"] in page
    # Another period than a month: named in the menu, kept when the menu is left alone.
    other = operator.get("/reports/countries?range=7d").content.decode()
    assert '<option value="" selected>last 7 days</option>' in other
    assert 'name="range" value="7d" data-period' in other


def test_entity_pages_link_without_a_dangling_separator(operator, facts):
    for url in ("/neighbor/64600", "/asn/65001", "/country/FR", "/prefix/198.18.0.0/24"):
        page = operator.get(url).content.decode()
        links = page.split('<p class="links">', 1)[1].split("</p>", 1)[0] if '<p class="links">' in page else ""
        assert not links.rstrip().endswith("·") and not links.lstrip().startswith("·"), (url, links)
    assert "as an origin AS</a></p>" in operator.get("/neighbor/64600").content.decode()


def test_the_search_page_has_a_title(operator, facts):
    for text in ("EYEBALL", "no-such-name-anywhere", "203.0.113.9"):
        page = operator.get("/search", {"q": text}).content.decode()
        assert f"<title>Search: {text} · ipr</title>" in page, text


def test_the_router_page_shows_its_active_table_and_last_refresh(operator, facts):
    from django.utils import timezone as tz

    from ipr.routing.models import Router, Table
    router = Router.objects.get(pk=1)
    page = operator.get("/router/1").content.decode()
    assert 'id="router-table"' in page and "none loaded yet" in page and "never" in page
    table = Table.objects.create(router=router, state=Table.State.ACTIVE, routes=123456, prefixes=98765,
                                 activated=datetime(2026, 3, 4, 5, 6, tzinfo=UTC))
    Router.objects.filter(pk=1).update(active_table=table, refreshed_at=datetime(2026, 3, 4, 7, 8, tzinfo=UTC),
                                       refresh_error="120 routes against 123456 in the active version")
    page = operator.get("/router/1").content.decode()
    about = page.split('id="router-table"', 1)[1].split("</dl>", 1)[0]
    for text in (f"version {table.pk}", units.human_int(123456), units.human_int(98765), "2026-03-04 05:06 UTC",
                 "2026-03-04 07:08 UTC", '<dd class="error">120 routes against 123456 in the active version</dd>'):
        assert text in about, (text, about)
    Router.objects.filter(pk=1).update(refresh_error="", refreshed_at=tz.now())
    assert "succeeded" in operator.get("/router/1").content.decode()
    assert "none: the traffic no router" in operator.get("/router/0").content.decode()
