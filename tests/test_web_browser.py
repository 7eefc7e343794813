"""The pages in a real browser (headless Chromium through chromedriver)
against a live server: log in, walk the pages, search, pick ranges,
download a CSV. Screenshots go to var/screenshots/, or to the folder
IPR_SCREENSHOTS names (docs/screenshots to refresh the README's)."""
import os
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from django.contrib.auth.models import User

from web_helpers import demo_facts, empty_archive, setup_names, write_facts

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHOTS = Path(os.environ.get("IPR_SCREENSHOTS") or ROOT / "var" / "screenshots")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                 reason="needs Debian's chromium and chromium-driver")]


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="ipr-chromium-")
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={profile}", "--window-size=1440,1000", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def archive(django_db_blocker):
    empty_archive()
    setup_names()
    now = datetime.now(timezone.utc)
    write_facts(demo_facts(now))
    User.objects.create_user("operator", password="correct horse battery")
    yield now
    empty_archive()


def shot(driver, name):
    """A full-page screenshot: the window is stretched to the page's height."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1440, min(max(height, 800), 6000))
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"{name}.png"))
    driver.set_window_size(1440, 1000)


def charts_drawn(driver):
    WebDriverWait(driver, 30).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-charts") == "drawn")
    # Every chart box holds a plotly plot (an SVG), none the "missing" note.
    boxes = driver.find_elements(By.CSS_SELECTOR, ".chart .plot")
    assert boxes
    for box in boxes:
        assert box.find_elements(By.CSS_SELECTOR, "svg"), box.get_attribute("outerHTML")[:200]


def rgba(css: str) -> tuple[float, float, float, float]:
    """'rgb(1, 2, 3)' or 'rgba(1, 2, 3, 0.5)', as a computed style gives it."""
    assert css.startswith("rgb"), css
    parts = [float(v) for v in css[css.index("(") + 1:-1].split(",")]
    return (*parts[:3], parts[3] if len(parts) == 4 else 1.0)


def flow_links_seen(driver):
    """The flow diagram's links (plotly's path.sankey-link) have a shape and,
    laid over the card behind them, a colour that stands out from it: a link
    drawn white, or fully transparent, is in the page but no operator sees it."""
    seen = driver.execute_script("""
        var fig = document.getElementById("chart-flows");
        return {card: getComputedStyle(fig).backgroundColor,
                links: Array.from(fig.querySelectorAll("path.sankey-link")).map(function (p) {
                  var s = getComputedStyle(p);
                  return {d: p.getAttribute("d") || "", fill: s.fill, fillOpacity: s.fillOpacity,
                          opacity: s.opacity, visibility: s.visibility, display: s.display};
                })};""")
    card = rgba(seen["card"])
    assert card[3] == 1.0, seen["card"]  # an opaque card: what the links are seen against
    assert seen["links"]
    for link in seen["links"]:
        assert link["d"] and link["visibility"] == "visible" and link["display"] != "none", link
        *fill, alpha = rgba(link["fill"])
        alpha *= float(link["fillOpacity"]) * float(link["opacity"])
        shown = [c * alpha + k * (1 - alpha) for c, k in zip(fill, card)]
        assert max(abs(c - k) for c, k in zip(shown, card)) > 40, (link, seen["card"])


def test_an_operator_logs_in_walks_the_pages_searches_and_downloads_a_csv(live_server, browser, archive):
    b = browser
    b.get(live_server.url + "/")
    assert "/accounts/login/" in b.current_url  # anonymous: only the login page
    shot(b, "login")
    b.find_element(By.ID, "id_username").send_keys("operator")
    b.find_element(By.ID, "id_password").send_keys("correct horse battery")
    b.find_element(By.ID, "login-submit").click()
    WebDriverWait(b, 10).until(EC.presence_of_element_located((By.ID, "total-bytes")))
    assert b.find_element(By.TAG_NAME, "h1").text == "Dashboard"
    charts_drawn(b)
    assert b.find_elements(By.CSS_SELECTOR, "#chart-flows svg .sankey")  # the flow diagram
    flow_links_seen(b)
    shot(b, "dashboard")

    # The range picker: a preset, then explicit times.
    Select(b.find_element(By.ID, "range-select")).select_by_value("7d")
    WebDriverWait(b, 10).until(EC.url_contains("range=7d"))
    assert "last 7 days" in b.find_element(By.CSS_SELECTOR, ".picker .resolution").text
    assert "per hour" in b.find_element(By.CSS_SELECTOR, ".picker .resolution").text
    Select(b.find_element(By.ID, "range-select")).select_by_value("")
    for field, value in (("range-from", "2020-01-01T00:00"), ("range-to", "2020-01-02T00:00")):
        b.execute_script("document.getElementById(arguments[0]).value = arguments[1];", field, value)
    b.find_element(By.ID, "range-apply").click()
    WebDriverWait(b, 10).until(EC.url_contains("from=2020-01-01"))
    assert "2020-01-01 00:00" in b.find_element(By.CSS_SELECTOR, ".picker .resolution").text
    assert b.find_element(By.ID, "total-bytes").text == "0 B"  # nothing archived then
    Select(b.find_element(By.ID, "range-select")).select_by_value("30d")
    WebDriverWait(b, 10).until(EC.url_contains("range=30d"))

    # From the top origin ASes to one AS's page.
    first = b.find_element(By.CSS_SELECTOR, "#table-origins tbody tr:first-child td a")
    label = first.text
    first.click()
    WebDriverWait(b, 10).until(EC.url_contains("/asn/"))
    assert label in b.find_element(By.TAG_NAME, "h1").text
    assert "range=30d" in b.current_url  # the range follows the links
    charts_drawn(b)
    flow_links_seen(b)
    shot(b, "asn")

    # The search box: an ASN, an address, a country code.
    for text, expect in (("AS65002", "/asn/65002"), ("198.18.2.77", "/prefix/198.18.2.0/24"), ("de", "/country/DE")):
        box = b.find_element(By.ID, "search")
        box.clear()
        box.send_keys(text + "\n")
        WebDriverWait(b, 10).until(EC.url_contains(expect))
    charts_drawn(b)
    flow_links_seen(b)
    shot(b, "country")

    # Reports, and the uplink comparison of the largest AS.
    b.get(live_server.url + "/reports/top-asns?range=30d")
    assert "ASes carry" in b.find_element(By.ID, "coverage").text
    shot(b, "report-top-asns")
    b.get(live_server.url + "/reports/peering?range=30d")
    assert b.find_elements(By.CSS_SELECTOR, "#table-candidates tbody tr td a")
    shot(b, "report-peering")
    b.get(live_server.url + "/reports/uplinks?range=7d&asn=65001")
    charts_drawn(b)
    rows = b.find_elements(By.CSS_SELECTOR, "#table-neighbors tbody tr")
    assert any("TRANSIT-BETA" in r.text for r in rows)
    shot(b, "report-uplinks")

    # A CSV, downloaded by the browser through the table's link.
    b.get(live_server.url + "/?range=30d")
    b.find_element(By.CSS_SELECTOR, "#table-countries a.csv").click()
    deadline = time.monotonic() + 15
    files = []
    while time.monotonic() < deadline:
        files = [p for p in b.downloads.iterdir() if p.suffix == ".csv"]
        if files:
            break
        time.sleep(0.2)
    assert files, list(b.downloads.iterdir())
    lines = files[0].read_text().splitlines()
    assert lines[0].startswith("key,label,bytes,bps,share,requests,retrans_rate")
    assert lines[-1].split(",")[1] == "total"
    shown = b.find_element(By.ID, "total-bytes").text
    assert shown  # the page's total, in SI units; the CSV's is raw bytes
    assert int(lines[-1].split(",")[2]) > 0
