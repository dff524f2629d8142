"""Every page in a real browser, both languages; the language switch; the calculator reacting."""
import re

import pytest

from tests.browser.conftest import assert_no_exception, wait_idle

URLS = ["", "lora", "nf4", "qlora", "dora", "adalora", "soft-prompts", "adapters", "serving", "scaling",
        "calculator", "decision-guide", "flashcards", "quiz", "interview", "progress"]


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_page_opens_without_an_exception(server, page, lang):
    for url in URLS:
        page.goto(f"{server['url']}/{url}?lang={lang}")
        wait_idle(page)
        assert_no_exception(page, f"/{url}?lang={lang}")
        assert page.get_by_text("Page not found").count() == 0, f"/{url} is not a page"
        # a direct link must still go through the router: its language switch is in the sidebar
        assert page.locator('[data-testid="stSidebar"]').get_by_text("Language / 语言").count() == 1, url
        assert page.locator("h1").count() >= 1, f"/{url} has no title"
        if lang == "zh":
            assert re.search(r"[\u4e00-\u9fff]", page.locator("section.main, [data-testid=stMain]").first.inner_text())


def test_language_switch_persists_across_pages(server, page):
    page.goto(f"{server['url']}/")
    wait_idle(page)
    page.get_by_text("中文", exact=True).click()
    wait_idle(page)
    assert "首页" in page.locator('[data-testid="stSidebarNav"]').inner_text()
    page.locator('[data-testid="stSidebarNav"]').get_by_text("测验").click()
    wait_idle(page)
    assert "测验" in page.locator("h1").first.inner_text()
