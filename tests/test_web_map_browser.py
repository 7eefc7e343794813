"""The world map of countries in a real browser (headless Chromium) against
a live server, with every other host blocked: it draws from the geometry
ipr serves itself, colours the countries with traffic by their bytes, shows
a country's figures on hover and filters the page to a country on a click."""
import dataclasses
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from django.contrib.auth.models import User
from ipr.routing import special
from test_web_browser import (CHROMEDRIVER, CHROMIUM, archive, browser, log_in,  # noqa: F401 (fixtures)
                              requests_and_violations)
from web_helpers import COUNTRIES, demo_facts, empty_archive, setup_names, write_facts

ROOT = Path(__file__).resolve().parents[1]
SHOTS = Path(os.environ.get("IPR_SCREENSHOTS") or ROOT / "var" / "screenshots")
GEOMETRY = "/static/vendor/world-atlas/countries-110m.json"
NO_TRAFFIC = "rgb(228, 231, 235)"  # map.js's NONE, as a computed style gives it

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                 reason="needs Debian's chromium and chromium-driver")]


@pytest.fixture(autouse=True)
def geometry_installed():
    from django.contrib.staticfiles import finders
    assert finders.find(GEOMETRY.removeprefix("/static/")), \
        "the map's geometry is not installed: make setup fetches it with npm (packaging/world-atlas)"


def block_other_hosts(driver):
    """Every host but the live server's (localhost, which has no dot) answers
    nothing: a map that needed a CDN would stay blank. The patterns block a
    URL with a dot before a slash; the pages this file opens, and what they
    load, have their dots after the last slash (map.js, countries-110m.json)."""
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*://*.*/*", "*://*.*:*/*", "*://[*]*"]})


def map_drawn(driver) -> dict:
    """Waits for the map, then returns each country path's fill by code."""
    WebDriverWait(driver, 30).until(
        lambda d: d.find_element(By.ID, "chart-country-map").get_attribute("data-drawn") == "true")
    return driver.execute_script("""
        var fills = {};
        document.querySelectorAll("#chart-country-map path[data-code]").forEach(function (p) {
          fills[p.getAttribute("data-code")] = getComputedStyle(p).fill;
        });
        return fills;""")


def map_data(driver) -> dict:
    return {c["code"]: c for c in json.loads(driver.find_element(By.ID, "map-data").get_attribute("textContent"))
            ["countries"]}


def stretch(driver):
    """The window as tall as the page, so a screenshot of any part holds it whole."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1440, min(max(height, 800), 6000))


def darkness(css: str) -> float:
    r, g, b = (float(v) for v in css[css.index("(") + 1:-1].split(","))
    return 765 - (r + g + b)


def test_the_map_colours_every_country_by_its_bytes_from_ipr_alone_and_a_click_filters_to_it(
        live_server, browser, archive):
    b = browser
    assert urlsplit(live_server.url).hostname == "localhost"  # what block_other_hosts lets through
    block_other_hosts(b)
    site = urlsplit(live_server.url).netloc
    log_in(b, live_server.url)
    requests_and_violations(b, site)  # the log-in's entries
    b.get(live_server.url + "/?range=7d")
    fills = map_drawn(b)
    data = map_data(b)

    # The countries with traffic are those of the archive, less the unknown
    # one, which the table lists and the map cannot.
    assert set(data) == {c for c in COUNTRIES if c}
    assert "(unknown)" in b.find_element(By.ID, "table-countries").text
    assert "--" not in fills
    # Each is coloured, more bytes darker (a log scale keeps the order);
    # every other country is drawn in the no-traffic grey.
    for code in data:
        assert fills[code] != NO_TRAFFIC, code
    ranked = sorted(data, key=lambda c: data[c]["bytes"])
    shades = [darkness(fills[c]) for c in ranked]
    assert shades == sorted(shades) and shades[0] < shades[-1], list(zip(ranked, shades))
    assert len(fills) > 150  # the world, not only the countries with traffic
    assert all(fill == NO_TRAFFIC for code, fill in fills.items() if code not in data)

    # Nothing came from or went to another host, the geometry came from ipr,
    # and the CSP refused nothing.
    elsewhere, refused = requests_and_violations(b, site)
    assert (elsewhere, refused) == ([], [])
    loaded = b.execute_script("""
        return performance.getEntriesByType("resource").map(function (r) {
          return [r.name, r.responseStatus]; });""")
    assert [status for url, status in loaded if url == live_server.url + GEOMETRY] == [200], loaded

    # Hover: the country's name and figures.
    stretch(b)
    de = b.find_element(By.CSS_SELECTOR, "#chart-country-map path[data-code='DE']")
    ActionChains(b).move_to_element(de).perform()
    tip = b.find_element(By.CSS_SELECTOR, "#chart-country-map .map-tip")
    WebDriverWait(b, 5).until(lambda d: tip.is_displayed())
    assert "Germany" in tip.text and "of bytes" in tip.text and "RTT p95" in tip.text, tip.text
    # The same figures, in the same precision, as Germany's row of the table.
    heads = [th.text for th in b.find_elements(By.CSS_SELECTOR, "#table-countries thead th")]
    row = b.find_element(By.XPATH, "//section[@id='table-countries']//tbody/tr[.//a[contains(@href, '/country/DE')]]")
    cells = dict(zip(heads, (td.text for td in row.find_elements(By.TAG_NAME, "td"))))
    for head in ("bytes", "avg bits/s", "share", "retransmits", "RTT p95"):
        assert cells[head] and cells[head] in tip.text, (head, cells, tip.text)
    SHOTS.mkdir(parents=True, exist_ok=True)
    b.find_element(By.CSS_SELECTOR, ".grid2.countries").screenshot(str(SHOTS / "map.png"))

    # A click keeps the page and its range, and adds the country filter,
    # which the page's map then shows alone.
    de.click()
    WebDriverWait(b, 10).until(lambda d: "country=DE" in d.current_url)
    query = parse_qs(urlsplit(b.current_url).query)
    assert query["country"] == ["DE"] and query["range"] == ["7d"]
    assert urlsplit(b.current_url).path == "/"
    fills = map_drawn(b)
    assert set(map_data(b)) == {"DE"}
    assert [c for c, f in fills.items() if f != NO_TRAFFIC] == ["DE"]


def test_the_countries_report_has_the_map_and_a_click_filters_the_report(live_server, browser, archive):
    b = browser
    block_other_hosts(b)
    site = urlsplit(live_server.url).netloc
    log_in(b, live_server.url)
    requests_and_violations(b, site)
    b.get(live_server.url + "/reports/countries")
    fills = map_drawn(b)
    data = map_data(b)
    assert set(data) == {c for c in COUNTRIES if c}
    assert all(fills[c] != NO_TRAFFIC for c in data)
    assert requests_and_violations(b, site) == ([], [])
    # The keyboard too: a country with traffic takes the focus, Enter follows it.
    fr = b.find_element(By.CSS_SELECTOR, "#chart-country-map path[data-code='FR']")
    b.execute_script("arguments[0].focus();", fr)
    ActionChains(b).send_keys(Keys.ENTER).perform()
    WebDriverWait(b, 10).until(lambda d: "country=FR" in d.current_url)
    assert urlsplit(b.current_url).path == "/reports/countries"
    map_drawn(b)
    assert set(map_data(b)) == {"FR"}


@pytest.fixture
def archive_with_singapore(django_db_blocker):
    """The demo archive over two days, one origin AS's traffic in Singapore,
    a country too small for the 1:110m map, another's to special-purpose
    addresses (country ZZ, not a place)."""
    empty_archive()
    setup_names()
    now = datetime.now(timezone.utc)
    moved = {65001: "SG", 65002: special.COUNTRY}
    write_facts([dataclasses.replace(f, country=moved[f.origin_as]) if f.origin_as in moved else f
                 for f in demo_facts(now, hours=48)])
    User.objects.create_user("operator", password="correct horse battery")
    yield now
    empty_archive()


def test_a_country_the_map_cannot_show_is_named_an_empty_range_says_so_and_so_does_a_missing_geometry(
        live_server, browser, archive_with_singapore):
    b = browser
    log_in(b, live_server.url)
    b.get(live_server.url + "/?range=24h")
    fills = map_drawn(b)
    assert "SG" in map_data(b) and "SG" not in fills
    assert special.COUNTRY not in map_data(b)  # in the table only
    assert b.find_elements(By.CSS_SELECTOR, f"#table-countries a[href*='/country/{special.COUNTRY}']")
    heads = [th.text for th in b.find_elements(By.CSS_SELECTOR, "#table-countries thead th")]
    row = b.find_element(By.XPATH, "//section[@id='table-countries']//tbody/tr[.//a[contains(@href, '/country/SG')]]")
    sg_bytes = dict(zip(heads, (td.text for td in row.find_elements(By.TAG_NAME, "td"))))["bytes"]
    note = b.find_element(By.CSS_SELECTOR, "#chart-country-map .map-note").text
    assert note == f"Not on the map: SG Singapore ({sg_bytes}).", note

    # A range without traffic: the world, every country grey, and it says so.
    b.get(live_server.url + "/?from=2020-01-01&to=2020-01-02")
    fills = map_drawn(b)
    assert len(fills) > 150 and set(fills.values()) == {NO_TRAFFIC}
    assert "no traffic in this range" in b.find_element(By.ID, "chart-country-map").text
    assert not b.find_elements(By.CSS_SELECTOR, "#chart-country-map .map-note")

    # Without its geometry the map says so, and the table still has every country.
    b.execute_cdp_cmd("Network.enable", {})
    b.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/countries-110m.json"]})
    b.get(live_server.url + "/?range=24h")
    box = b.find_element(By.CSS_SELECTOR, "#chart-country-map .map-plot")
    WebDriverWait(b, 10).until(lambda d: "missing" in box.get_attribute("class"))
    assert "needs its geometry" in box.text and not box.find_elements(By.TAG_NAME, "svg")
    assert b.find_element(By.ID, "chart-country-map").get_attribute("data-drawn") is None
    assert "SG Singapore" in b.find_element(By.ID, "table-countries").text
