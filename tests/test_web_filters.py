"""Click to filter: the six filters (router, traffic type, origin AS,
neighbour AS, country, prefix) narrow every table, chart, report and CSV of
a page, alone and combined; each table row and chart key offers to add its
own; the chips name them and remove them; the links keep them. Every
figure is checked against sums computed here from the generated facts."""
import pytest

from test_web_pages import check_table, csv_rows, expected, in_range, qs
from test_web_pages import facts, operator  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db

# One of each filter, and mixes: query string -> the facts it keeps.
FILTERS = {
    "router=1": {"router": 1},
    "type=web": {"traffic_type": "web"},
    "asn=65001": {"origin_as": 65001},
    "neighbor=64601": {"neighbor_as": 64601},
    "country=DE": {"country": "DE"},
    "prefix=198.18.2.0/24": {"prefix": "198.18.2.0/24"},
    "country=--": {"country": ""},
    "neighbor=64600&country=FR&type=video": {"neighbor_as": 64600, "country": "FR", "traffic_type": "video"},
    "router=2&asn=65001": {"router": 2, "origin_as": 65001},
}
DASHBOARD = {"origins": ("origin_as", int), "neighbors": ("neighbor_as", int), "countries": ("country", str),
             "prefixes": ("prefix", str), "routers": ("router", int), "types": ("traffic_type", str)}
ATTRS = {"router": ("router", int), "traffic_type": ("traffic_type", str), "origin_as": ("origin_as", int),
         "neighbor_as": ("neighbor_as", int), "country": ("country", str), "prefix": ("prefix", str)}


def total_bytes(rows):
    return int(next(r for r in rows if r["label"] == "total")["bytes"])


@pytest.mark.parametrize("query", FILTERS)
def test_a_filter_narrows_every_table_of_the_dashboard(operator, facts, query):
    url = f"/?{qs('hour')}&{query}"
    chosen = in_range(facts, "hour", **FILTERS[query])
    assert chosen, "the generated archive has traffic under this filter"
    _, everything = expected(in_range(facts, "hour"))
    for table, (attr, keyof) in DASHBOARD.items():
        per, total = expected(chosen, key=lambda f: getattr(f, attr))
        rows = csv_rows(operator, url, table)
        check_table(rows, per, total, keyof)
        assert total_bytes(rows) < everything["bytes"]  # the figures differ from the unfiltered ones
    page = operator.get(url)
    assert page.context["total"]["bytes"] == total["bytes"]


@pytest.mark.parametrize("query,entity", [
    ("asn=65001", "/asn/65001"), ("neighbor=64601", "/neighbor/64601"), ("country=DE", "/country/DE"),
    ("prefix=198.18.2.0/24", "/prefix/198.18.2.0/24"), ("router=2", "/router/2"), ("type=video", "/type/video"),
])
def test_a_filtered_dashboard_equals_the_entity_page(operator, facts, query, entity):
    dashboard, page = f"/?{qs('hour')}&{query}", f"{entity}?{qs('hour')}"
    tables = {t.dim: t.name for t in operator.get(page).context["tables"]}
    shared = [(name, tables[dim]) for name, (dim, _) in DASHBOARD.items() if dim in tables]
    assert len(shared) >= 4
    for ours, theirs in shared:
        a, b = csv_rows(operator, dashboard, ours), csv_rows(operator, page, theirs)
        body = lambda rows: [r for r in rows if r["label"] != "total" and not r["label"].startswith("other")]
        n = min(len(body(a)), len(body(b)))  # the dashboard shows 10 neighbours, an entity page 15
        assert n and body(a)[:n] == body(b)[:n], (ours, theirs)
        assert a[-1] == b[-1], (ours, theirs)  # the total
    assert operator.get(dashboard).context["total"] == operator.get(page).context["total"]


@pytest.mark.parametrize("entity,match,query,more", [
    ("/asn/65001", {"origin_as": 65001}, "neighbor=64601&router=1", {"neighbor_as": 64601, "router": 1}),
    ("/country/DE", {"country": "DE"}, "neighbor=64600", {"neighbor_as": 64600}),
    ("/router/2", {"router": 2}, "country=FR&type=api", {"country": "FR", "traffic_type": "api"}),
    ("/neighbor/64601", {"neighbor_as": 64601}, "country=DE", {"country": "DE"}),
    ("/prefix/198.18.2.0/24", {"prefix": "198.18.2.0/24"}, "router=1", {"router": 1}),
    ("/type/web", {"traffic_type": "web"}, "asn=65002", {"origin_as": 65002}),
])
def test_an_entity_page_takes_every_other_filter(operator, facts, entity, match, query, more):
    url = f"{entity}?{qs('hour')}&{query}"
    page = operator.get(url)
    assert page.status_code == 200
    chosen = in_range(facts, "hour", **match, **more)
    assert chosen
    _, total = expected(chosen)
    assert page.context["total"]["bytes"] == total["bytes"]
    for table in page.context["tables"]:
        if table.dim in ATTRS:
            attr, keyof = ATTRS[table.dim]
            per, total = expected(chosen, key=lambda f: getattr(f, attr))
            check_table(csv_rows(operator, url, table.name), per, total, keyof)
    # The chips name the query's filters, not the page's own.
    assert {c["param"] for c in page.context["chips"]} == {p.split("=")[0] for p in query.split("&")}


def test_an_entity_page_s_own_path_wins_over_the_same_filter_in_the_query(operator, facts):
    plain, conflicting = f"/asn/65001?{qs('hour')}", f"/asn/65001?{qs('hour')}&asn=65002"
    page = operator.get(conflicting)
    assert page.status_code == 200
    assert page.context["chips"] == []
    assert page.context["total"] == operator.get(plain).context["total"]
    assert csv_rows(operator, conflicting, "neighbor_as") == csv_rows(operator, plain, "neighbor_as")
    # ... and it is not carried on by the page's links.
    assert "asn=65002" not in page.context["link_query"]
    assert all("asn=" not in row["filter_url"] for t in page.context["tables"] for row in t.rows
               if "filter_url" in row)
    # A router's page has no router menu in its range picker (its path sets it); a type's no type menu.
    assert '<select name="router">' not in operator.get(f"/router/1?{qs('hour')}").content.decode()
    assert '<select name="type">' in operator.get(f"/router/1?{qs('hour')}").content.decode()
    assert '<select name="type">' not in operator.get(f"/type/web?{qs('hour')}").content.decode()


def test_the_as_paths_are_not_shown_under_a_country_or_prefix_filter(operator, facts):
    page = operator.get(f"/asn/65001?{qs('hour')}&prefix=198.18.2.0/24")
    assert "paths" not in [t.name for t in page.context["tables"]]
    assert "not shown under a country or prefix filter" in page.content.decode()
    page = operator.get(f"/asn/65001?{qs('hour')}&router=1")
    rows = csv_rows(operator, f"/asn/65001?{qs('hour')}&router=1", "paths")
    per, total = expected(in_range(facts, "hour", origin_as=65001, router=1), key=lambda f: f.as_path)
    check_table(rows, per, total, str)


def test_the_reports_honour_every_filter(operator, facts):
    day = qs("day")
    # Top ASNs, under a neighbour AS and a country.
    chosen = in_range(facts, "day", neighbor_as=64601, country="DE")
    per, total = expected(chosen, key=lambda f: f.origin_as)
    check_table(csv_rows(operator, f"/reports/top-asns?{day}&neighbor=64601&country=DE", "top"), per, total, int)
    # The countries report, under a traffic type and a router.
    chosen = in_range(facts, "day", traffic_type="api", router=3)
    per, total = expected(chosen, key=lambda f: f.country)
    rows = csv_rows(operator, f"/reports/countries?{day}&type=api&router=3", "countries")
    check_table(rows, per, total, str)
    # Peering candidates in one country: only its origins, with their bytes through another AS.
    rows = csv_rows(operator, f"/reports/peering?{day}&country=FR", "candidates")
    via = {}
    for f in in_range(facts, "day", country="FR"):
        if f.origin_as and f.neighbor_as and f.neighbor_as != f.origin_as:
            via[f.origin_as] = via.get(f.origin_as, 0) + f.sums["response_bytes"]
    assert rows
    assert {int(r["key"]): int(r["bytes"]) for r in rows} == dict(sorted(via.items(), key=lambda kv: -kv[1])[:50])
    # Delivery quality per origin AS through one transit: each row's figures are that transit's.
    rows = csv_rows(operator, f"/reports/quality?{day}&neighbor=64600&min_share=0.01", "retrans")
    per, total = expected(in_range(facts, "day", neighbor_as=64600), key=lambda f: f.origin_as)
    ranked = [r for r in rows if r["label"] != "total"]
    assert ranked
    assert int(rows[-1]["bytes"]) == total["bytes"]
    for r in ranked:
        assert int(r["bytes"]) == per[int(r["key"])]["bytes"]


def test_the_uplink_comparison_takes_the_other_filters_besides_its_destination(operator, facts):
    hour = qs("hour")
    url = f"/reports/uplinks?{hour}&asn=65001&router=2&type=web"
    chosen = in_range(facts, "hour", origin_as=65001, router=2, traffic_type="web")
    per, total = expected(chosen, key=lambda f: f.neighbor_as)
    check_table(csv_rows(operator, url, "neighbors"), per, total, int)
    page = operator.get(url)
    assert {c["param"] for c in page.context["chips"]} == {"router", "type"}
    # A row's filter control keeps the destination; the chips' links too.
    neighbors = next(t for t in page.context["tables"] if t.name == "neighbors")
    assert all("asn=65001" in row["filter_url"] and "neighbor=" in row["filter_url"] for row in neighbors.rows)
    assert all("asn=65001" in c["remove_url"] for c in page.context["chips"])
    assert all("filter_url" not in row for row in next(t for t in page.context["tables"] if t.name == "routers").rows)
    # A destination AS and a country: the country narrows it too.
    url = f"/reports/uplinks?{hour}&asn=65001&country=FR"
    rows = csv_rows(operator, url, "neighbors")
    assert int(rows[-1]["bytes"]) == expected(in_range(facts, "hour", origin_as=65001, country="FR"))[1]["bytes"]
    assert [c["param"] for c in operator.get(url).context["chips"]] == ["country"]


def test_each_table_row_offers_its_own_filter_and_a_filtered_dimension_offers_none(operator, facts):
    url = f"/?{qs('hour')}&country=DE"
    page = operator.get(url)
    tables = {t.name: t for t in page.context["tables"]}
    html = page.content.decode()
    for row in tables["origins"].rows:
        assert row["filter_url"].startswith("/?")
        assert f"asn={row['key']}" in row["filter_url"] and "country=DE" in row["filter_url"]
        assert f'href="{row["filter_url"].replace("&", "&amp;")}"' in html
        # The entity link still goes to its page, keeping the filters.
        assert row["url"].startswith(f"/asn/{row['key']}?") and "country=DE" in row["url"]
    assert all("filter_url" not in row for row in tables["countries"].rows)
    assert all("type=" in row["filter_url"] for row in tables["types"].rows)
    # The footer (other, total) offers nothing.
    assert all("filter_url" not in row for row in tables["origins"].foot)
    # The unknown country filters as '--'.
    page = operator.get(f"/?{qs('hour')}")
    unknown = next(r for r in page.context["tables"][2].rows if r["key"] == "")
    assert "country=--" in unknown["filter_url"]
    # On an entity page its own dimension offers nothing either.
    page = operator.get(f"/asn/65001?{qs('hour')}")
    assert all("filter_url" in row for t in page.context["tables"] if t.dim in ATTRS for row in t.rows)
    spec = page.context["flow_chart"]
    origin_keys = [k for d, k in zip(spec["dims"], spec["keys"]) if d == "origin_as"]
    assert origin_keys and all(k is None for k in origin_keys)
    assert any(k for d, k in zip(spec["dims"], spec["keys"]) if d == "neighbor_as")


def test_the_chart_specs_carry_the_keys_a_click_filters_by(operator, facts):
    page = operator.get(f"/?{qs('hour')}")
    bars = page.context["country_chart"]
    assert bars["dim"] == "country"
    countries = {r["key"] or "--" for r in page.context["tables"][2].rows}
    assert set(bars["keys"]) <= countries and len(bars["keys"]) == len(bars["labels"])
    by_router = next(c for c in page.context["charts"] if c["id"] == "bps-router")
    assert by_router["dim"] == "router"
    assert {t["key"] for t in by_router["traces"]} == {"0", "1", "2", "3"}
    flow = page.context["flow_chart"]
    assert len(flow["keys"]) == len(flow["nodes"]) == len(flow["dims"])
    for label, dim, key in zip(flow["nodes"], flow["dims"], flow["keys"]):
        if label.startswith("other"):
            assert key is None
        elif dim == "origin_as":
            assert label.startswith(f"AS{key}")
        elif dim == "neighbor_as":
            assert label.startswith(f"via AS{key}")
    # Filtered by router: the router chart, and the flow's routers, offer nothing more.
    page = operator.get(f"/?{qs('hour')}&router=1")
    assert next(c for c in page.context["charts"] if c["id"] == "bps-router")["dim"] is None
    flow = page.context["flow_chart"]
    assert all(k is None for d, k in zip(flow["dims"], flow["keys"]) if d == "router")


def test_the_chips_name_each_filter_and_remove_it(operator, facts):
    url = f"/?{qs('hour')}&asn=65001&neighbor=64601&router=1&type=web&country=FR&prefix=198.19.1.0/24"
    page = operator.get(url)
    chips = {c["param"]: c for c in page.context["chips"]}
    assert {k: (c["title"], c["label"]) for k, c in chips.items()} == {
        "router": ("router", "edge-par1"), "type": ("type", "web"), "asn": ("origin", "AS65001 EYEBALL-01"),
        "neighbor": ("neighbour", "AS64601 TRANSIT-BETA"), "country": ("country", "FR France"),
        "prefix": ("prefix", "198.19.1.0/24")}
    html = page.content.decode()
    assert 'id="filter-chips"' in html and "AS64601 TRANSIT-BETA" in html
    for param, chip in chips.items():
        left = operator.get(chip["remove_url"]).context["chips"]
        assert sorted(c["param"] for c in left) == sorted(set(chips) - {param})
        assert "from=" in chip["remove_url"]  # the range stays
    cleared = operator.get(page.context["clear_url"])
    assert cleared.context["chips"] == [] and cleared.context["range"] == page.context["range"]
    assert 'id="filter-chips"' not in operator.get(f"/?{qs('hour')}").content.decode()


def test_the_links_and_the_csv_keep_the_filters(operator, facts):
    url = f"/?{qs('hour')}&neighbor=64601&country=DE"
    page = operator.get(url)
    html = page.content.decode()
    assert "neighbor=64601" in page.context["link_query"] and "country=DE" in page.context["link_query"]
    # The header's links, the search box and the CSV links carry them.
    assert f'href="/reports/?{page.context["link_query"].replace("&", "&amp;")}"' in html
    assert '<input type="hidden" name="neighbor" value="64601">' in html
    assert "neighbor=64601&amp;country=DE&amp;format=csv&amp;table=origins" in html
    # A link to a country's page drops the country filter (its path sets it), keeps the others.
    row = page.context["tables"][2].rows[0]
    assert row["url"].startswith("/country/DE?") and "country=" not in row["url"].split("?")[1]
    assert "neighbor=64601" in row["url"]
    # The reports' links too.
    page = operator.get(f"/reports/quality?{qs('day')}&neighbor=64601")
    assert "?" + page.context["link_query"].replace("&", "&amp;") + "&amp;by=country" in page.content.decode()
    # A search keeps them.
    response = operator.get("/search", {"q": "AS65002", "neighbor": "64601", "range": "7d"})
    assert response.status_code == 302 and "neighbor=64601" in response["Location"]


@pytest.mark.parametrize("url,param", [
    ("/asn/65001?neighbor=x", "neighbor"), ("/country/FR?prefix=300.0.0.0/8", "prefix"),
    ("/reports/top-asns?country=FRA", "country"), ("/reports/uplinks?asn=65001&type=a%20b", "type"),
])
def test_a_bad_filter_on_any_page_is_a_400_naming_it(operator, url, param):
    response = operator.get(url)
    assert response.status_code == 400
    assert f"{param}: " in response.content.decode()
