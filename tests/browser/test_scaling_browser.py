"""The "Scaling out" page in a real browser, both languages: in the sidebar, the calculator's multi-GPU table and
chart drawn, the ZeRO stage switch recomputing them, the `fsdp` lab's start button present, no exception box."""
import pytest

from tests.browser.conftest import assert_no_exception, wait_idle


@pytest.mark.parametrize("lang, title", [("en", "Scaling out"), ("zh", "多卡与 FSDP")])
def test_scaling_page_in_the_browser(server, page, lang, title):
    page.goto(f"{server['url']}/scaling?lang={lang}")
    wait_idle(page)
    assert_no_exception(page, f"/scaling?lang={lang}")
    assert page.locator("h1").first.inner_text().strip() == title
    assert page.locator('[data-testid="stSidebarNav"]').get_by_text(title).count() == 1
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for()
    page.locator('[data-testid="stDataFrame"]').first.wait_for()
    page.locator('[data-testid="stMain"] [data-testid="stRadio"]').first.get_by_text("1", exact=True).click()
    wait_idle(page)
    assert_no_exception(page, f"/scaling?lang={lang} after ZeRO-1")
    assert page.locator('[data-testid="stButton"]').count() >= 1                         # the lab's start button
