"""The charts in a real browser (headless Chromium through chromedriver):
what is drawn is checked in the SVG plotly makes, so a chart that hides a
point, spills out of its box or makes up an axis fails here."""
import random
import re
import time
from datetime import datetime, timedelta, timezone

import pytest
from django.contrib.auth.models import User

from test_web_browser import CHROMEDRIVER, CHROMIUM, browser, log_in  # noqa: F401 (a fixture)
from web_helpers import Fact, demo_facts, empty_archive, random_sums, setup_names, write_facts

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                 reason="needs Debian's chromium and chromium-driver")]

SPARSE = 65900  # an origin AS with one response, in one hour of the day


@pytest.fixture
def archive(django_db_blocker):
    from ipr.routing.models import ASName
    empty_archive()
    setup_names()
    now = datetime.now(timezone.utc)
    facts = demo_facts(now)
    one = now.replace(minute=10, second=0, microsecond=0) - timedelta(hours=5)
    facts.append(Fact(one, 1, "web", "203.0.113.0/24", SPARSE, 64600, "FR", f"64600 {SPARSE}",
                      random_sums(random.Random(1)), 9000))
    write_facts(facts)
    ASName.objects.update_or_create(asn=SPARSE, defaults={"name": "SPARSE-ONE"})
    User.objects.create_user("operator", password="correct horse battery")
    yield now
    empty_archive()


def drawn(b, url):
    b.get(url)
    WebDriverWait(b, 30).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-charts") == "drawn")


def chart(b, chart_id: str) -> dict:
    """What plotly drew in one chart box: its visible point markers, the
    paths of its traces' lines, its x tick labels, and the text it says."""
    return b.execute_script("""
        var fig = document.getElementById("chart-" + arguments[0]), plot = fig.querySelector(".plot");
        function shown(el) { var r = el.getBBox(); return r.width > 0 && r.height > 0; }
        return {
          markers: Array.from(plot.querySelectorAll(".scatterlayer path.point")).filter(shown).length,
          lines: Array.from(plot.querySelectorAll(".scatterlayer path.js-line")).map(function (p) {
            return p.getAttribute("d") || ""; }),
          xticks: Array.from(plot.querySelectorAll("g.xtick text")).map(function (t) { return t.textContent; }),
          svgs: plot.querySelectorAll("svg").length,
          text: plot.textContent.trim()
        };""", chart_id)


def test_a_series_with_one_non_empty_bucket_draws_its_point(live_server, browser, archive):
    b = browser
    log_in(b, live_server.url)
    drawn(b, live_server.url + f"/asn/{SPARSE}?range=24h")
    # One hour of 24 has traffic: one marker for the retransmit rate, one
    # for each of p50, p95 and the mean RTT; a line alone would show nothing.
    assert chart(b, "retrans")["markers"] == 1
    assert chart(b, "rtt")["markers"] == 3
    # Its traffic is a step one bucket wide, not a line to nowhere.
    lines = chart(b, "bps")["lines"]
    plot_width = b.execute_script("return document.querySelector('#chart-bps .nsewdrag').getBBox().width;")
    assert len(lines) == 1 and plot_width > 0
    raised = raised_width(lines[0])
    # 24 or 25 hourly buckets over the plot: the step is about 1/24 of it.
    assert plot_width / 26 < raised < plot_width / 23, (raised, plot_width, lines[0][:300])
    # Hovering anywhere in that bucket, even near its end, shows that bucket's rate.
    start, end = raised_span(lines[0])
    drag = b.find_element(By.CSS_SELECTOR, "#chart-bps .nsewdrag")
    for at in (0.2, 0.8):
        x = start + at * (end - start)
        ActionChains(b).move_to_element_with_offset(drag, x - drag.rect["width"] / 2, 0).perform()
        hover = WebDriverWait(b, 5).until(lambda d: d.execute_script(
            "var h = document.querySelector('#chart-bps .hoverlayer'); return h && h.textContent;"))
        assert "b/s" in hover and ": 0 b/s" not in hover, (at, hover)


def raised(d: str) -> list[tuple[float, float]]:
    """The (from, to) x of a step line (M x,y then H x / V y) where it runs
    above its lowest level."""
    x, y = (float(v) for v in re.match(r"M([-\d.e]+),([-\d.e]+)", d).groups())
    segments, base = [], y
    for op, value in re.findall(r"([HV])([-\d.e]+)", d):
        if op == "H":
            segments.append((y, x, float(value)))
            x = float(value)
        else:
            y = float(value)
            base = max(base, y)  # SVG's y grows downwards: the lowest level is the largest y
    return [(a, b) for level, a, b in segments if level < base - 0.5]


def raised_width(d: str) -> float:
    return sum(b - a for a, b in raised(d))


def raised_span(d: str) -> tuple[float, float]:
    spans = raised(d)
    return spans[0][0], spans[-1][1]


def test_traffic_is_drawn_as_steps_and_a_years_axis_shows_the_year(live_server, browser, archive):
    b = browser
    log_in(b, live_server.url)
    drawn(b, live_server.url + "/?range=24h")
    for chart_id in ("bps-router", "bps-type"):
        lines = chart(b, chart_id)["lines"]
        assert lines
        for d in lines:  # a rate over each bucket: only horizontal and vertical segments
            assert re.fullmatch(r"M[-\d.e]+,[-\d.e]+([HV][-\d.e]+)+", d), (chart_id, d[:200])
    drawn(b, live_server.url + "/?range=1y")
    year = str(archive.year)
    for chart_id in ("bps-router", "retrans", "rtt"):
        ticks = chart(b, chart_id)["xticks"]
        assert ticks and all(re.search(r"(19|20)\d\d", t) for t in ticks), (chart_id, ticks)
        assert any(year in t for t in ticks), ticks


def test_the_flow_diagram_keeps_its_size_across_window_resizes(live_server, browser, archive):
    b = browser
    log_in(b, live_server.url)
    drawn(b, live_server.url + "/?range=7d")
    size = """
        var box = document.querySelector("#chart-flows .plot"), svg = box.querySelector("svg.main-svg");
        var fig = document.getElementById("chart-flows").getBoundingClientRect();
        var a = box.getBoundingClientRect(), s = svg.getBoundingClientRect();
        return {box: [a.width, a.height], svg: [s.width, s.height], svgBottom: s.bottom, figBottom: fig.bottom,
                next: next(document.getElementById("chart-flows").parentNode)};
        function next(el) {  // the next thing shown below the diagram
          do { el = el.nextElementSibling; } while (el && !el.offsetHeight);
          return el.getBoundingClientRect().top;
        }"""
    first = b.execute_script(size)
    assert first["box"][1] == 420 and first["svg"] == first["box"], first
    for width in (900, 1440, 1100, 1440):
        b.set_window_size(width, 1000)

        def settled(d):
            s = d.execute_script(size)
            # plotly redraws after the resize: the drawing fills its box, as wide as it, as tall
            return s if abs(s["svg"][0] - s["box"][0]) < 1 and abs(s["svg"][1] - s["box"][1]) < 1 \
                and s["box"][0] > 0 else False
        try:
            s = WebDriverWait(b, 10).until(settled)
        except Exception:
            raise AssertionError((width, b.execute_script(size)))
        assert s["box"][1] == 420, (width, s)          # never squashed
        assert s["svgBottom"] <= s["figBottom"], s     # never spilling out of its card
        assert s["figBottom"] <= s["next"], s          # nor over what follows


def test_empty_ranges_say_so_instead_of_drawing_a_made_up_axis(live_server, browser, archive):
    b = browser
    log_in(b, live_server.url)
    for url, table in (("/?from=2020-01-01&to=2020-01-02", "origins"), (f"/asn/{SPARSE}?range=1h", "router")):
        drawn(b, live_server.url + url)
        boxes = b.find_elements(By.CSS_SELECTOR, "figure.chart .plot")
        assert len(boxes) >= 5, url  # the four series, the flow diagram (and the bars)
        for box in boxes:
            assert box.text == "no traffic in this range", (url, box.get_attribute("outerHTML")[:300])
            assert not box.find_elements(By.CSS_SELECTOR, "svg"), url   # no axis at all
        # as the tables say it
        assert b.find_element(By.CSS_SELECTOR, f"#table-{table} tbody td.empty").text == "no traffic in this range"
    # A range with traffic draws every chart.
    drawn(b, live_server.url + f"/asn/{SPARSE}?range=24h")
    for chart_id in ("bps", "requests", "retrans", "rtt", "flows"):
        assert chart(b, chart_id)["svgs"], chart_id


def test_tables_fit_their_boxes_and_figures_read_alike_in_tables_and_charts(live_server, browser, archive):
    b = browser
    b.set_window_size(1400, 1000)
    log_in(b, live_server.url)
    drawn(b, live_server.url + "/?range=7d")
    time.sleep(0.3)
    overflow = b.execute_script("""
        return Array.from(document.querySelectorAll(".table-block")).filter(function (t) {
          return t.scrollWidth > t.clientWidth + 1; }).map(function (t) { return t.id; });""")
    assert overflow == []
    # A bar's label is written as the table writes the same figure.
    table = {r.find_element(By.CSS_SELECTOR, "td a").text: r.find_elements(By.CSS_SELECTOR, "td")[1].text
             for r in b.find_elements(By.CSS_SELECTOR, "#table-countries tbody tr")}
    bars = b.execute_script("""
        var spec = JSON.parse(document.getElementById("bars-data").textContent);
        var texts = Array.from(document.querySelectorAll("#chart-country-bars .bartext")).map(function (t) {
          return t.textContent; });
        return {labels: spec.labels.slice().reverse(), texts: texts};""")
    assert len(bars["texts"]) == len(bars["labels"]) > 3
    for label, text in zip(bars["labels"], bars["texts"]):
        assert table[label] == text, (label, table[label], text)
    # The total row is grey only below an "other" row.
    muted = b.execute_script("""
        var other = document.querySelector("#table-origins tfoot tr:first-child td");
        var total = document.querySelector("#table-origins tfoot tr:last-child td");
        return [getComputedStyle(other).color, getComputedStyle(total).color];""")
    assert muted[0] != muted[1]
    drawn_or_main = live_server.url + "/reports/quality?range=7d"
    b.get(drawn_or_main)
    only = b.find_element(By.CSS_SELECTOR, "#table-retrans tfoot tr:only-child td")
    assert only.value_of_css_property("color").replace("rgba", "rgb").replace(", 1)", ")") == muted[1]
