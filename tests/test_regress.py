"""What got worse: the regression report finds the archive's known
regressions (regress_helpers) and nothing else, with figures computed here
from the facts; the page, its CSV and the dashboard panel show them."""
import csv
import io
import math
import os
import shutil
from collections import defaultdict
from datetime import timedelta, timezone
from pathlib import Path

import pytest

from ipr.web import regress
from ipr.web.queries import Filters, Range
from regress_helpers import NOW, facts, periods, setup_regression_names  # noqa: F401 (facts: the fixture)

pytestmark = pytest.mark.django_db
UTC = timezone.utc
(START, END), (BASE_START, BASE_END) = periods(NOW)


@pytest.fixture
def operator(client, django_user_model):
    user = django_user_model.objects.create_user("op", password="x-very-long-password")
    client.force_login(user)
    return client


def rng():
    return Range.between(START, END, NOW)


def query():
    return f"from={START:%Y-%m-%dT%H:%M}&to={END:%Y-%m-%dT%H:%M}"


def summed(facts, start, end, key):
    out = defaultdict(lambda: defaultdict(int))
    for f in facts:
        if start <= f.minute < end:
            for m, v in f.sums.items():
                out[key(f)][m] += v
    return out


def found(kind):
    return {(f["key"], f["measure"]) for f in regress.regressions(rng(), kind)["findings"]}


def test_baseline_is_the_same_hours_a_week_before(facts):
    base = regress.baseline_of(rng())
    assert (base.start, base.end, base.resolution) == (BASE_START, BASE_END, "hour")
    assert regress.baseline_of(rng(), "1d").start == START - timedelta(days=1)
    assert regress.baseline_of(rng(), "28d").end == END - timedelta(days=28)


def test_origin_ases_exactly_the_known_regressions(facts):
    # Stable ASes, the tiny AS (3 responses) and the small noisy one (z 2.9) are not there.
    assert found("origin_as") == {
        (65100, "retrans_rate"),
        (65200, "rtt_p50_ms"), (65200, "rtt_p95_ms"), (65201, "rtt_p50_ms"), (65201, "rtt_p95_ms"),
        (65400, "bps"),
        (65500, "delivery_rate"),
    }


def test_uplinks_exactly_the_known_regressions(facts):
    assert found("uplink") == {
        ((3, 65100), "retrans_rate"),
        ((2, 64601), "rtt_p50_ms"), ((2, 64601), "rtt_p95_ms"),
        ((3, 65400), "bps"),
        ((3, 65500), "delivery_rate"),
    }
    assert found("neighbor_as") == {(64601, "rtt_p50_ms"), (64601, "rtt_p95_ms"), (65100, "retrans_rate"),
                                    (65400, "bps"), (65500, "delivery_rate")}


def test_countries_and_prefixes(facts):
    assert found("country") == {("FR", "retrans_rate"), ("JP", "rtt_p50_ms"), ("JP", "rtt_p95_ms"),
                                ("ES", "bps"), ("IT", "delivery_rate")}
    prefixes = found("prefix")
    assert (("198.18.76.0/24", 65100), "retrans_rate") in prefixes   # 65100 % 256 == 76
    assert {k[1] for k, _ in prefixes} == {65100, 65200, 65201, 65400, 65500}


def test_figures_are_the_facts_sums(facts):
    now = summed(facts, START, END, lambda f: f.origin_as)
    before = summed(facts, BASE_START, BASE_END, lambda f: f.origin_as)
    by = {(f["key"], f["measure"]): f for f in regress.regressions(rng(), "origin_as")["findings"]}
    r = by[(65100, "retrans_rate")]
    assert r["now"] == pytest.approx(now[65100]["retrans_segs"] / now[65100]["data_segs"])
    assert r["before"] == pytest.approx(before[65100]["retrans_segs"] / before[65100]["data_segs"])
    assert 0.004 < r["before"] < 0.006 and 0.04 < r["now"] < 0.06
    assert r["factor"] == pytest.approx(r["now"] / r["before"]) and r["z"] > 30
    assert r["change"] == pytest.approx(r["now"] - r["before"])
    d = by[(65500, "delivery_rate")]
    assert d["now"] == pytest.approx(now[65500]["response_bytes"] / (now[65500]["duration_sum_us"] / 1e6))
    assert d["factor"] == pytest.approx(3, rel=0.1)
    t = by[(65400, "bps")]
    assert t["before"] == pytest.approx(before[65400]["response_bytes"] * 8 / 86400)
    assert t["now"] == pytest.approx(now[65400]["response_bytes"] * 8 / 86400)
    p95 = by[(65200, "rtt_p95_ms")]
    assert p95["now"] / p95["before"] == pytest.approx(2, rel=0.15)


def test_ranked_worst_first(facts):
    findings = regress.regressions(rng(), "origin_as")["findings"]
    factors = [f["factor"] for f in findings]
    assert factors == sorted(factors, reverse=True)
    assert findings[0]["key"] == 65400   # 500 responses an hour before, 100 in one hour now


def test_noise_is_compared_but_not_found(facts):
    result = regress.regressions(rng(), "origin_as")
    # The small noisy AS has enough samples to be compared: its change is
    # large enough, only the z-test keeps it out.
    now = summed(facts, START, END, lambda f: f.origin_as)[65600]
    before = summed(facts, BASE_START, BASE_END, lambda f: f.origin_as)[65600]
    r1, r0 = now["retrans_segs"] / now["data_segs"], before["retrans_segs"] / before["data_segs"]
    assert r1 - r0 >= regress.MIN_RETRANS_PP and r1 >= regress.MIN_FACTOR * r0
    z = regress.z_two_proportions(now["retrans_segs"], now["data_segs"], before["retrans_segs"],
                                  before["data_segs"])
    assert 2 < z < regress.Z_MIN
    # 10 stable + 65100, 65200, 65201, 65500, 65600, 65700 have enough in both periods; 65300 and 65400 do not.
    assert result["compared"] == 16
    assert result["count"] == 18


def test_overdispersed_noise_is_not_found(facts):
    # 65700's change is large, and as independent segments very significant;
    # its hours vary far more than that, and the quasi-binomial test says so.
    groups = regress.measured(rng(), "origin_as")
    before = regress.measured(regress.baseline_of(rng()), "origin_as")
    now, was = groups[65700], before[65700]
    assert now["retrans_rate"] - was["retrans_rate"] >= regress.MIN_RETRANS_PP
    assert now["retrans_rate"] >= regress.MIN_FACTOR * was["retrans_rate"]
    plain = regress.z_two_proportions(now["retrans_segs"], now["data_segs"], was["retrans_segs"], was["data_segs"])
    assert plain > 30
    assert regress.retrans_z(now, was) < regress.Z_MIN
    assert len(now["buckets"]) == 24 and now["n_buckets"] == 24
    # The stable ASes, with the per-hour variance of real traffic, keep most of their z.
    assert regress.retrans_z(groups[65100], before[65100]) > 10


def test_filters_apply(facts):
    # Router 3 carries 65100, 65400 and 65500 only.
    only = regress.regressions(rng(), "origin_as", Filters(router=3))["findings"]
    assert {f["key"] for f in only} == {65100, 65400, 65500}
    assert regress.regressions(rng(), "origin_as", Filters(router=1))["findings"] == []


def test_z_and_share_above():
    # Textbook: 60/1000 against 40/1000, pooled 0.05: z = 0.02 / sqrt(0.05 * 0.95 * 0.002) = 2.052.
    assert regress.z_two_proportions(60, 1000, 40, 1000) == pytest.approx(2.0520, abs=1e-4)
    assert regress.z_two_proportions(40, 1000, 60, 1000) == pytest.approx(-2.0520, abs=1e-4)
    assert regress.z_two_proportions(0, 1000, 0, 1000) == 0.0
    assert regress.z_two_proportions(1, 0, 1, 10) is None
    hist = [0, 0, 0, 0, 10, 10, 0, 0, 0, 0, 0, 0]   # 10 in (10, 20] ms, 10 in (20, 50] ms
    assert regress.share_above(hist, 20) == pytest.approx(10)
    assert regress.share_above(hist, 35) == pytest.approx(5)
    assert regress.share_above(hist, 15) == pytest.approx(15)
    assert regress.share_above(hist, 0) == pytest.approx(20)
    assert regress.share_above([0] * 11 + [4], 5000) == 4   # the open bucket counts as above


def test_report_page(facts, operator):
    page = operator.get(f"/reports/regressions?{query()}")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="table-origin_as"' in html and 'id="table-uplink"' in html
    assert 'data-key="65100" data-measure="retrans_rate"' in html
    assert "AS65100 RETRANS-UP" in html
    assert f"/reports/uplinks?asn=65100&amp;from={START:%Y-%m-%dT%H}%3A00" in html
    assert "/reports/uplinks?asn=65100&amp;prefix=198.18.76.0%2F24" in html
    assert "edge-fra1 via AS64601 TRANSIT-SLOW" in html
    assert "STABLE-" not in html and "TINY" not in html and "SMALL-NOISY" not in html
    assert "/reports/regressions" in operator.get("/reports/").content.decode()


def test_report_csv(facts, operator):
    answer = operator.get(f"/reports/regressions?{query()}&format=csv&table=origin_as")
    assert answer.status_code == 200 and answer["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.content.decode())))
    got = {(r["key"], r["measure"]) for r in rows}
    assert got == {(str(k), m) for k, m in found("origin_as")}
    retrans = next(r for r in rows if r["key"] == "65100")
    assert 0.04 < float(retrans["now"]) < 0.06 and "asn=65100" in retrans["compare_url"]
    gone = next(r for r in rows if r["key"] == "65400")
    assert math.isclose(float(gone["factor"]), float(gone["before"]) / float(gone["now"]), rel_tol=1e-4)
    uplinks = operator.get(f"/reports/regressions?{query()}&format=csv&table=uplink").content.decode()
    assert "2/64601,edge-fra1 via AS64601 TRANSIT-SLOW,rtt_p95_ms" in uplinks


def test_bad_parameters_answer_400(facts, operator):
    answer = operator.get(f"/reports/regressions?{query()}&baseline=3w")
    assert answer.status_code == 400 and b"baseline:" in answer.content
    assert operator.get("/reports/regressions?range=2h").status_code == 400
    assert operator.get(f"/reports/regressions?{query()}&format=csv&table=nope").status_code == 404


def test_each_finding_adds_its_destination_to_the_filters(facts, operator):
    html = operator.get(f"/reports/regressions?{query()}").content.decode()
    origins = html.split('data-table="origin_as"')[1].split("</table>")[0]
    assert 'class="add-filter" href="/reports/regressions?' in origins
    assert "asn=65100" in origins and 'title="filter: AS65100 RETRANS-UP"' in origins
    uplinks = html.split('data-table="uplink"')[1].split("</table>")[0]
    assert "router=" in uplinks and "neighbor=64601" in uplinks
    # Filtered by an origin AS: its rows offer no origin filter, the
    # countries still offer theirs.
    html = operator.get(f"/reports/regressions?{query()}&asn=65100").content.decode()
    assert 'class="add-filter"' not in html.split('data-table="origin_as"')[1].split("</table>")[0]
    assert 'class="add-filter"' in html.split('data-table="country"')[1].split("</table>")[0]


def test_login_required(facts, client):
    answer = client.get("/reports/regressions")
    assert answer.status_code == 302 and "/accounts/login/" in answer["Location"]


def test_dashboard_panel(facts, operator):
    html = operator.get(f"/?{query()}").content.decode()
    assert 'id="regress-panel"' in html
    panel = html.split('id="regress-panel"')[1].split("</section>")[0]
    origins, uplinks = panel.split('data-table="regress-origin_as"')[1].split('data-table="regress-uplink"')
    # The five worst origin ASes, worst first; the uplinks beside them.
    order = [name for name in ("GONE", "RETRANS-UP", "SLUGGISH", "SLOW-ONE", "SLOW-TWO") if name in origins]
    assert len(order) == 5 and origins.count("<tr data-measure=") == 5
    assert origins.index("AS65400 GONE") < origins.index("AS65100 RETRANS-UP") < origins.index("AS65500 SLUGGISH")
    assert "edge-fra1 via AS64601 TRANSIT-SLOW" in uplinks and uplinks.count("<tr data-measure=") == 5
    assert "STABLE-" not in panel and "TINY" not in panel and "SMALL-NOISY" not in panel
    assert f"/reports/regressions?from={START:%Y-%m-%dT%H}%3A00" in panel
    assert 'id="firing-alerts"' not in panel   # no rule, no alert


def test_dashboard_panel_compares_at_most_the_last_day(facts, operator):
    from ipr.alerts.templatetags.ipr_alerts import panel_range
    # A three-day range that ends where the facts' day ends: the panel
    # compares its last 24 hours, which hold every regression, and says so;
    # its report link opens those hours.
    longer = f"from={START - timedelta(days=2):%Y-%m-%dT%H:%M}&to={END:%Y-%m-%dT%H:%M}"
    html = operator.get(f"/?{longer}").content.decode()
    panel = html.split('id="regress-panel"')[1].split("</section>")[0]
    assert "in the range's last 24 hours" in panel
    assert f"/reports/regressions?from={START:%Y-%m-%dT%H}%3A00&amp;to={END:%Y-%m-%dT%H}%3A00" in panel
    assert "AS65400 GONE" in panel and "AS65100 RETRANS-UP" in panel
    # A range of a day or less is compared whole; a long one up to now,
    # as the 24-hour preset.
    assert panel_range(rng()) == rng()
    assert "in the range's last 24 hours" not in operator.get(f"/?{query()}").content.decode()
    year = Range.last("1y", NOW)
    assert panel_range(year) == Range.last("24h", NOW) and panel_range(year).preset == "24h"


def test_nothing_worse_says_so(facts, operator):
    # The week before against the week before that: no traffic in the
    # baseline, so nothing is compared, and the tables say so.
    html = operator.get(f"/reports/regressions?from={BASE_START:%Y-%m-%dT%H:%M}&to={BASE_END:%Y-%m-%dT%H:%M}"
                        ).content.decode()
    assert html.count("nothing got worse with enough samples to tell") == 4


def test_presets_read_the_same_periods(facts):
    # The last 7 days and the 7 before hold the two periods whole: the same findings.
    week = Range.last("7d", NOW)
    assert {(f["key"], f["measure"]) for f in regress.regressions(week, "origin_as")["findings"]} == \
        found("origin_as")
    # A month per hour is tested per day (its buckets), with its figures from the hours.
    month = Range.last("30d", NOW)
    groups = regress.measured(month, "origin_as")
    assert month.resolution == "hour" and len(month.buckets()) > regress.MAX_BUCKETS
    in_month = [f for f in facts if month.start <= f.minute < month.end and f.origin_as == 65100]
    days = {f.minute.date() for f in in_month}
    assert groups[65100]["n_buckets"] in (30, 31) and len(groups[65100]["buckets"]) == len(days)
    retrans = sum(f.sums["retrans_segs"] for f in in_month)
    assert groups[65100]["retrans_segs"] == retrans
    assert groups[65100]["buckets"][:, regress._AT["retrans_segs"]].sum() == retrans
    # The last hour, per minute, holds no traffic; its baseline is read per hour.
    hour = Range.last("1h", NOW)
    result = regress.regressions(hour, "uplink")
    assert hour.resolution == "minute" and result["baseline"]["resolution"] == "hour"
    assert result["findings"] == [] and result["count"] == 0


# -- in a real browser (last: a live server's test flushes the models' tables) --

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
SHOTS = Path(os.environ.get("IPR_SCREENSHOTS") or Path(__file__).resolve().parents[1] / "var" / "screenshots")


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver")
def test_in_chromium_the_report_links_to_the_uplink_comparison(facts, live_server, tmp_path):
    from django.contrib.auth.models import User
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    setup_regression_names()
    User.objects.create_user("operator", password="correct horse battery")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
                "--window-size=1440,1000", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    b = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    try:
        b.get(f"{live_server.url}/accounts/login/?next=/reports/regressions%3F{query().replace('&', '%26')}")
        b.find_element(By.ID, "id_username").send_keys("operator")
        b.find_element(By.ID, "id_password").send_keys("correct horse battery")
        b.find_element(By.CSS_SELECTOR, "form [type=submit]").click()
        chosen = '#table-origin_as tr[data-key="65100"][data-measure="retrans_rate"]'
        WebDriverWait(b, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, chosen))
        row = b.find_element(By.CSS_SELECTOR, chosen)
        assert row.is_displayed() and "AS65100 RETRANS-UP" in row.text and "retransmits" in row.text
        cells = [c.text for c in row.find_elements(By.TAG_NAME, "td")]
        assert cells[2].endswith("%") and cells[3].endswith("%") and cells[5].startswith("×")
        uplink = b.find_element(By.CSS_SELECTOR, '#table-uplink tr[data-measure="rtt_p95_ms"]')
        assert "edge-fra1 via AS64601 TRANSIT-SLOW" in uplink.text
        # Nothing on the page is wider than the window.
        assert b.execute_script("return document.documentElement.scrollWidth") <= 1440
        for _ in range(2):   # the window's height is the page's, as laid out at that height
            height = b.execute_script("return document.documentElement.scrollHeight")
            b.set_window_size(1440, min(max(height + 140, 800), 4000))
        SHOTS.mkdir(parents=True, exist_ok=True)
        b.save_screenshot(str(SHOTS / "regressions.png"))
        b.set_window_size(1440, 1000)
        errors = [e["message"] for e in b.get_log("browser")
                  if e["level"] == "SEVERE" and "/favicon.ico" not in e["message"]]
        assert errors == []
        row.find_element(By.CSS_SELECTOR, "a.compare").click()
        WebDriverWait(b, 30).until(lambda d: "/reports/uplinks" in d.current_url)
        assert "/reports/uplinks?asn=65100" in b.current_url
        assert "Uplink comparison: AS65100 RETRANS-UP" in b.find_element(By.TAG_NAME, "h1").text
        # The dashboard's panel, beside the rest of the dashboard.
        b.get(f"{live_server.url}/?{query()}")
        panel = b.find_element(By.ID, "regress-panel")
        assert "AS65400 GONE" in panel.text and "edge-fra1 via AS64601 TRANSIT-SLOW" in panel.text
        assert panel.size["width"] <= 1440 and b.execute_script("return document.documentElement.scrollWidth") <= 1440
        panel.screenshot(str(SHOTS / "regress-panel.png"))
    finally:
        b.quit()


def test_api_answers_the_same_findings_in_json_and_csv(facts, django_user_model):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient
    api = APIClient()
    user = django_user_model.objects.create_user("robot", password="x-very-long-password")
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    answer = api.get(f"/api/reports/regressions/?{query()}")
    assert answer.status_code == 200, answer.content[:300]
    data = answer.json()
    assert data["kind"] == "origin_as" and data["baseline"]["start"].startswith(f"{BASE_START:%Y-%m-%dT%H:%M}")
    assert {(f["key"], f["measure"]) for f in data["findings"]} == found("origin_as")
    gone = next(f for f in data["findings"] if f["key"] == 65400)
    assert gone["measure"] == "bps" and gone["now"] < gone["before"] and gone["change"] < -0.5
    assert "asn=65100" in next(f for f in data["findings"] if f["key"] == 65100)["compare_url"]
    uplinks = api.get(f"/api/reports/regressions/?{query()}&kind=uplink&baseline=7d").json()["findings"]
    assert {((f["router"], f["neighbor_as"]), f["measure"]) for f in uplinks} == found("uplink")
    assert all(f["key"] == [f["router"], f["neighbor_as"]] for f in uplinks)
    prefixes = api.get(f"/api/reports/regressions/?{query()}&kind=prefix&limit=2").json()["findings"]
    assert len(prefixes) == 2 and all(f["key"] == [f["prefix"], f["origin_as"]] for f in prefixes)
    text = api.get(f"/api/reports/regressions/?{query()}&kind=uplink&format=csv").content.decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {(r["key"], r["measure"]) for r in rows} == {(f"{k[0]}/{k[1]}", m) for k, m in found("uplink")}
    bad = api.get(f"/api/reports/regressions/?{query()}&baseline=3w")
    assert bad.status_code == 400 and "baseline" in bad.json()["detail"]
    assert api.get(f"/api/reports/regressions/?{query()}&kind=path").status_code == 400
