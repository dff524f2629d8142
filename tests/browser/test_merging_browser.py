"""The "Merging adapters" page in a real browser: reachable from the sidebar in both languages, its picture drawn,
its lab panel present, no exception box."""
import pytest

from tests.browser.conftest import assert_no_exception, wait_idle


@pytest.mark.parametrize("lang, title, start", [("en", "Merging adapters", "Run the lab"),
                                               ("zh", "适配器合并", "运行实验")])
def test_merging_page_in_the_browser(server, page, lang, title, start):
    page.goto(f"{server['url']}/merging?lang={lang}")
    wait_idle(page)
    assert_no_exception(page, f"/merging?lang={lang}")
    assert page.locator("h1").first.inner_text().strip() == title
    assert page.locator('[data-testid="stSidebarNav"]').get_by_text(title).count() == 1   # in the navigation
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for()                        # the instant picture
    assert page.locator('[data-testid="stMetric"]').count() >= 5
    assert page.get_by_role("button", name=start).count() == 1                            # the lab's start button
