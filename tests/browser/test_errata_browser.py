"""The notes errata in a real browser: both languages, the filter, and a calculator link followed to its inputs."""
from labs import errata
from tests.browser.conftest import assert_no_exception, wait_idle

EXPANDERS = '[data-testid="stMain"] [data-testid="stExpander"]'


def test_errata_filter_and_calculator_link(server, page):
    claims = errata.claims()
    counts = errata.counts(claims)
    page.goto(f"{server['url']}/notes-errata?lang=zh")
    wait_idle(page)
    assert_no_exception(page, "/notes-errata?lang=zh")
    assert "笔记勘误" in page.locator("h1").first.inner_text()
    assert page.locator('[data-testid="stSidebarNav"]').get_by_text("笔记勘误").count() == 1

    page.goto(f"{server['url']}/notes-errata?lang=en")
    wait_idle(page)
    assert page.locator(EXPANDERS).count() == len(claims)
    page.get_by_text("Only what is wrong or simplified").click()
    wait_idle(page)
    assert page.locator(EXPANDERS).count() == counts["wrong"] + counts["simplified"]

    claim = next(c for c in claims if c["id"] == "s1-full-ft-13b")          # wrong: 13B needs ~220 GB
    box = page.locator(EXPANDERS).filter(has_text=claim["claim"]["en"])
    box.locator("summary").click()
    link = box.get_by_role("link", name="Open this setting in the calculator").first
    href = link.get_attribute("href")
    assert href.startswith("/calculator?") and "model=llama-2-13b" in href and "method=full" in href
    page.goto(server["url"] + href)                                         # follow it
    wait_idle(page)
    assert_no_exception(page, href)
    sidebar = page.locator('[data-testid="stSidebar"]')
    assert sidebar.locator('input[aria-label="Model"]').input_value() == "llama-2-13b"   # inputs filled in
    assert sidebar.locator('input[aria-label="Method"]').input_value() == "full"
    total = f"{claim['evidence'][0]['value']:.1f}"
    assert total in page.locator('[data-testid="stMetricValue"]').nth(2).inner_text()
