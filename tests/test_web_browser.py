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
    # The console (CSP violations) and the network log (every request made).
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
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


PHISH = '<a href="https://evil.example/phish">LOGIN-AGAIN</a> & <b>co</b>'


def log_in(b, url):
    b.get(url + "/accounts/login/")
    b.find_element(By.ID, "id_username").send_keys("operator")
    b.find_element(By.ID, "id_password").send_keys("correct horse battery")
    b.find_element(By.ID, "login-submit").click()
    WebDriverWait(b, 10).until(EC.presence_of_element_located((By.ID, "total-bytes")))


def test_an_as_name_is_drawn_as_text_in_every_chart_never_as_markup(live_server, browser, archive):
    # AS names come from outside (PeeringDB); plotly reads HTML-like tags in
    # the texts it draws, so a name could become a link in a chart.
    from ipr.routing.models import ASName
    ASName.objects.update(name=PHISH)
    b = browser
    log_in(b, live_server.url)
    for page, charts in (("/?range=7d", ["#chart-flows"]), ("/asn/65001?range=7d", ["#chart-flows"]),
                         ("/reports/uplinks?range=7d&asn=65001", ["#chart-n-bps", "#chart-n-retrans"])):
        b.get(live_server.url + page)
        charts_drawn(b)
        for chart in charts:
            svg = b.find_element(By.CSS_SELECTOR, chart + " .plot")
            assert not svg.find_elements(By.CSS_SELECTOR, "a"), (page, chart)
            assert not svg.find_elements(By.CSS_SELECTOR, "tspan[style*='bold']"), (page, chart)
            shown = b.execute_script("return arguments[0].textContent;", svg)
            assert PHISH in shown, (page, chart, shown[:500])
        # No chart anywhere on the page made a link out of it.
        assert not b.find_elements(By.CSS_SELECTOR, ".chart a[href*='evil.example']"), page


def requests_and_violations(driver, site: str) -> tuple[list[str], list[str]]:
    """What the page asked of other hosts (the network log), and what the
    console says was refused (CSP) or failed, since the last call."""
    import json
    from urllib.parse import urlsplit
    elsewhere = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if urlsplit(url).scheme in ("http", "https", "ws", "wss") and urlsplit(url).netloc != site:
                elsewhere.append(url)
    console = [e["message"] for e in driver.get_log("browser")
               if "Content Security Policy" in e["message"] or "Refused to" in e["message"]
               or ("Failed to load resource" in e["message"] and site not in e["message"])]
    return elsewhere, console


def test_every_page_type_the_admin_and_the_api_docs_load_nothing_from_elsewhere_and_break_no_csp(
        live_server, browser, archive):
    from urllib.parse import urlsplit
    User.objects.filter(username="operator").update(is_staff=True, is_superuser=True)
    b = browser
    site = urlsplit(live_server.url).netloc
    b.get(live_server.url + "/accounts/login/")
    assert requests_and_violations(b, site) == ([], []), "/accounts/login/"
    log_in(b, live_server.url)
    pages = {  # url -> what shows it is drawn
        "/?range=7d": "charts", "/asn/65001?range=7d": "charts", "/neighbor/64600?range=7d": "charts",
        "/country/FR?range=7d": "charts", "/prefix/198.18.0.0/24?range=7d": "charts",
        "/router/1?range=7d": "charts", "/type/web?range=7d": "charts",
        "/reports/": "main", "/reports/top-asns?range=7d": "main", "/reports/peering?range=7d": "main",
        "/reports/countries": "charts", "/reports/quality?range=7d": "main",
        "/reports/uplinks?range=7d&asn=65001": "charts", "/search?q=TRANSIT": "main", "/?router=-1": "main",
        "/admin/": "#content", "/admin/auth/user/": "#result_list",
        "/admin/auth/user/%d/change/" % User.objects.get(username="operator").pk: "#user_form",
        "/api/": ".response-info", "/api/totals/?range=7d": ".response-info",
        "/api/docs/": ".swagger-ui .info .title", "/api/redoc/": ".api-content h1",
    }
    for url, ready in pages.items():
        b.get(live_server.url + url)
        if ready == "charts":
            charts_drawn(b)
        else:
            WebDriverWait(b, 30).until(EC.presence_of_element_located((By.CSS_SELECTOR, ready)))
        time.sleep(0.5)  # what the page loads after it is drawn (fonts, images)
        assert requests_and_violations(b, site) == ([], []), url
    assert b.find_element(By.CSS_SELECTOR, ".api-content h1").text.startswith("ipr API")
