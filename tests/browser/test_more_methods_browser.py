"""The "More PEFT methods" page in a real browser: reachable from the sidebar in both languages, its picture
drawn, its lab panel present, no exception box."""
import pytest

from tests.browser.conftest import assert_no_exception, wait_idle


@pytest.mark.parametrize("lang, title, start", [("en", "More PEFT methods", "Run the lab"),
                                               ("zh", "更多 PEFT 方法", "运行实验")])
def test_more_methods_page_in_the_browser(server, page, lang, title, start):
    page.goto(f"{server['url']}/more-methods?lang={lang}")
    wait_idle(page)
    assert_no_exception(page, f"/more-methods?lang={lang}")
    assert page.locator("h1").first.inner_text().strip() == title
    assert page.locator('[data-testid="stSidebarNav"]').get_by_text(title).count() == 1   # in the navigation
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for()                        # the instant picture
    assert page.locator('[data-testid="stMetric"]').count() >= 3
    assert page.get_by_role("button", name=start).count() == 1                            # the lab's start button
