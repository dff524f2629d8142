"""Concept pages added with their labs (more PEFT methods, merging adapters) in a real browser: reachable from the
sidebar in both languages, the instant picture drawn, the lab panel present, no exception box."""
import pytest

from tests.browser.conftest import assert_no_exception, wait_idle

START = {"en": "Run the lab", "zh": "运行实验"}
PAGES = [  # url, {lang: title}, at least this many metrics in the picture
    ("more-methods", {"en": "More PEFT methods", "zh": "更多 PEFT 方法"}, 3),
    ("merging", {"en": "Merging adapters", "zh": "适配器合并"}, 5),
]


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("url, titles, metrics", PAGES, ids=[p[0] for p in PAGES])
def test_concept_page_in_the_browser(server, page, url, titles, metrics, lang):
    title = titles[lang]
    page.goto(f"{server['url']}/{url}?lang={lang}")
    wait_idle(page)
    assert_no_exception(page, f"/{url}?lang={lang}")
    assert page.locator("h1").first.inner_text().strip() == title
    assert page.locator('[data-testid="stSidebarNav"]').get_by_text(title).count() == 1   # in the navigation
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for()                        # the instant picture
    assert page.locator('[data-testid="stMetric"]').count() >= metrics
    assert page.get_by_role("button", name=START[lang]).count() == 1                     # the lab's start button
