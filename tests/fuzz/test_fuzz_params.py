"""Hostile query parameters on every page and API endpoint: a small loaded
archive, a logged-in user, and hypothesis drawing values for every parameter
each view reads (and for the URL's own parts). The rule: no answer is a
server error. The API's schema tests (test_api_schemathesis.py) send what
the schema describes; these send what it does not.

Derandomized, like every short fuzz run."""
from datetime import datetime, timezone
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from web_helpers import demo_facts, empty_archive, setup_names, write_facts

pytestmark = pytest.mark.django_db

HOSTILE = st.one_of(
    st.sampled_from(["", "0", "-1", "1", "64500", "AS64500", "as1.10", "65535.65535", "4294967295",
                     "4294967296", "9223372036854775807", "9223372036854775808", "-9223372036854775809",
                     "1e999", "nan", "inf", "-inf", "NaN", "0x10", "1_000", " 1 ", "１２", "٣",
                     "0001-01-01", "9999-12-31T23:59", "1970-01-01T00:00Z", "2026-02-30", "2026-13-01",
                     "2026-03-01T25:00", "2026-03-01T10:00+99:99", "-2026-03-01", "10000-01-01",
                     "\x00", "a\x00b", "%00", "../../etc/passwd", "<script>", "' OR 1=1 --",
                     "192.0.2.0/24", "::/0", "2001:db8::/129", "300.1.1.1/8", "10.0.0.1/33",
                     "1h", "24h", "7d", "30d", "1y", "XX", "--", "zz", "🙂", "\u202e", "é" * 40,
                     "origin_as", "neighbor_as", "country", "prefix", "as_path", "bytes", "rtt_mean",
                     "csv", "json", "api", "0.5", "-0.5", "2", "1e-320"]),
    st.integers(-2**70, 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=40),
    st.text(min_size=3000, max_size=5000, alphabet="9a-:/."),
)

PAGE_PARAMS = ["range", "from", "to", "router", "type", "traffic_type", "asn", "origin_as", "neighbor",
               "neighbor_as", "country", "prefix", "format", "table", "q", "by", "limit", "month",
               "min_share", "split", "order"]
PAGES = ["/", "/asn/{}", "/neighbor/{}", "/country/{}", "/prefix/{}", "/router/{}", "/type/{}", "/search",
         "/reports/", "/reports/top-asns", "/reports/peering", "/reports/countries", "/reports/quality",
         "/reports/uplinks"]

RANGE = ["range", "from", "to", "format"]
FILTERS = ["router", "type", "asn", "neighbor", "country", "prefix"]
API = {  # each endpoint's parameters (an unknown one is refused before anything runs)
    "/api/": ["format"],
    "/api/totals/": RANGE + FILTERS,
    "/api/series/": RANGE + FILTERS + ["split", "limit"],
    "/api/top/{}/": RANGE + FILTERS + ["limit", "order"],
    "/api/flows/": RANGE + FILTERS + ["limit"],
    "/api/asns/{}/": RANGE + ["router", "type", "neighbor", "limit"],
    "/api/countries/{}/": RANGE + ["router", "type", "limit"],
    "/api/reports/top-asns/": RANGE + FILTERS + ["limit", "by"],
    "/api/reports/peering/": RANGE + FILTERS + ["limit"],
    "/api/reports/countries/": RANGE + FILTERS + ["month"],
    "/api/reports/delivery/": RANGE + FILTERS + ["by", "limit", "min_share"],
    "/api/reports/uplinks/": RANGE + ["router", "type", "neighbor", "prefix", "asn", "country"],
    "/api/routers/": ["format"],
    "/api/traffic-types/": ["format"],
    "/api/as-names/": ["asn", "search", "limit", "offset", "format"],
}


@pytest.fixture(scope="module")
def archive(django_db_setup, django_db_blocker):
    from ipr.routing.models import ASName, Router
    with django_db_blocker.unblock():
        empty_archive()
        setup_names()
        write_facts(demo_facts(datetime.now(timezone.utc), seed=5, hours=48, per_hour=2, minutes=30))
    yield
    with django_db_blocker.unblock():
        empty_archive()
        ASName.objects.all().delete()
        Router.objects.all().delete()


@pytest.fixture
def operator(client, django_user_model, archive):
    client.force_login(django_user_model.objects.create_user("fuzz", password="x-very-long-password"))
    return client


def request(client, template, names, data):
    path = template.format(quote(data.draw(HOSTILE, label="path"), safe="")) if "{}" in template else template
    chosen = data.draw(st.lists(st.sampled_from(names), max_size=4, unique=True), label="names") if names else []
    query = {name: data.draw(HOSTILE, label=name) for name in chosen}
    answer = client.get(path, query)
    assert answer.status_code < 500, f"{path} {query!r}: {answer.status_code}"


def hostile(n):
    return settings(max_examples=n, derandomize=True, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("template", PAGES)
def test_no_page_answers_a_hostile_query_with_a_server_error(operator, template):
    @hostile(12)
    @given(data=st.data())
    def run(data):
        request(operator, template, PAGE_PARAMS, data)
    run()


@pytest.mark.parametrize("template", sorted(API))
def test_no_api_endpoint_answers_a_hostile_query_with_a_server_error(operator, template):
    @hostile(12)
    @given(data=st.data())
    def run(data):
        request(operator, template, API[template], data)
    run()
