"""Click to filter in a real browser (headless Chromium through
chromedriver, against a live server): a legend entry, a table's filter
control, a bar and a node of the flow diagram each add their filter; the
chips show them with their names; removing a chip, or all, takes them off."""
from urllib.parse import parse_qs, urlsplit

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from test_web_browser import CHROMEDRIVER, CHROMIUM, SHOTS, charts_drawn, log_in
from test_web_browser import archive, browser  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                 reason="needs Debian's chromium and chromium-driver")]


def query(driver) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(driver.current_url).query).items()}


def chips(driver) -> dict:
    """{param: the chip's text, spaces normalised}."""
    return {c.get_attribute("data-filter"): " ".join(c.text.split())
            for c in driver.find_elements(By.CSS_SELECTOR, "#filter-chips .chip")}


def click(driver, element):
    """A real mouse click at the element's centre (plotly reads the pointer's position)."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
    ActionChains(driver).move_to_element(element).click().perform()


def reloaded_with(driver, param, before):
    WebDriverWait(driver, 15).until(lambda d: d.current_url != before and param in query(d))
    charts_drawn(driver)
    return query(driver)[param]


def test_a_click_on_a_legend_a_table_a_bar_and_a_flow_node_filters_and_a_chip_removes_it(
        live_server, browser, archive):
    b = browser
    log_in(b, live_server.url)
    b.get(live_server.url + "/?range=7d")
    charts_drawn(b)
    assert chips(b) == {}

    # A legend entry of the traffic-type chart: that type.
    entry = next(e for e in b.find_elements(By.CSS_SELECTOR, "#chart-bps-type .legend .traces")
                 if e.text == "web")
    before = b.current_url
    click(b, entry.find_element(By.CSS_SELECTOR, ".legendtoggle"))
    assert reloaded_with(b, "type", before) == "web"
    assert chips(b)["type"].startswith("type web")

    # The filter control beside the first origin AS (the link beside it still goes to its page).
    row = b.find_element(By.CSS_SELECTOR, "#table-origins tbody tr:first-child")
    label = row.find_element(By.CSS_SELECTOR, "td a:not(.add-filter)").text
    assert "/asn/" in row.find_element(By.CSS_SELECTOR, "td a:not(.add-filter)").get_attribute("href")
    before = b.current_url
    click(b, row.find_element(By.CSS_SELECTOR, "a.add-filter"))
    asn = reloaded_with(b, "asn", before)
    assert label.startswith(f"AS{asn}")
    assert chips(b)["asn"].startswith(f"origin {label}")
    assert query(b)["type"] == "web"  # the filters combine
    shown = b.find_elements(By.CSS_SELECTOR, "#table-origins tbody tr")
    assert len(shown) == 1 and label in shown[0].text
    # The origin AS is filtered: its table offers no filter control any more.
    assert not b.find_elements(By.CSS_SELECTOR, "#table-origins a.add-filter")

    # A bar of the countries chart: that country (the AS's one).
    bar = b.find_element(By.CSS_SELECTOR, "#chart-country-bars .plot .bars path")
    before = b.current_url
    click(b, bar)
    country = reloaded_with(b, "country", before)
    assert len(country) == 2
    assert chips(b)["country"].startswith(f"country {country}")
    assert b.find_element(By.CSS_SELECTOR, "#table-countries tbody tr td a").text.startswith(country)

    # A neighbour AS node of the flow diagram.
    node = next(n for n in b.find_elements(By.CSS_SELECTOR, "#chart-flows .sankey-node")
                if n.text.startswith("via AS"))
    name = node.text[len("via "):]
    before = b.current_url
    click(b, node.find_element(By.CSS_SELECTOR, ".node-rect"))
    neighbor = reloaded_with(b, "neighbor", before)
    assert name.startswith(f"AS{neighbor}")
    assert chips(b)["neighbor"].startswith(f"neighbour {name}")
    assert set(chips(b)) == {"type", "asn", "country", "neighbor"}
    # The top of the page, where the chips are, as the operator sees it.
    b.execute_script("window.scrollTo(0, 0);")
    SHOTS.mkdir(parents=True, exist_ok=True)
    b.save_screenshot(str(SHOTS / "dashboard-filters.png"))

    # Remove one chip: that filter is gone from the URL and the chips, the others stay.
    before = b.current_url
    b.find_element(By.CSS_SELECTOR, "#filter-chips .chip[data-filter='country'] a.remove").click()
    WebDriverWait(b, 15).until(lambda d: d.current_url != before)
    assert "country" not in query(b) and set(chips(b)) == {"type", "asn", "neighbor"}
    assert query(b)["range"] == "7d"
    # Clear all.
    b.find_element(By.ID, "filters-clear").click()
    WebDriverWait(b, 15).until(lambda d: not d.find_elements(By.ID, "filter-chips"))
    assert not {"type", "asn", "country", "neighbor"} & set(query(b))
    charts_drawn(b)


def test_on_an_entity_page_a_click_adds_a_filter_beside_the_page_s_own(live_server, browser, archive):
    b = browser
    log_in(b, live_server.url)
    b.get(live_server.url + "/asn/65001?range=7d")
    charts_drawn(b)
    # The flow diagram offers routers and neighbours, not the page's own origin AS.
    node = next(n for n in b.find_elements(By.CSS_SELECTOR, "#chart-flows .sankey-node")
                if n.text.startswith("AS65001"))
    before = b.current_url
    click(b, node.find_element(By.CSS_SELECTOR, ".node-rect"))
    router_node = next(n for n in b.find_elements(By.CSS_SELECTOR, "#chart-flows .sankey-node")
                       if n.text.startswith("edge-"))
    assert b.current_url == before  # nothing to add
    click(b, router_node.find_element(By.CSS_SELECTOR, ".node-rect"))
    router = reloaded_with(b, "router", before)
    assert urlsplit(b.current_url).path == "/asn/65001"
    assert chips(b) == {"router": chips(b)["router"]} and router in ("1", "2", "3")
    assert chips(b)["router"].startswith("router edge-")
