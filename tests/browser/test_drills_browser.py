"""The Drills page in a real browser: a wrong LoRA forward turns the report red with its hint, the fix turns it
green, and after a reload the attempt history is still there (SQLite study store)."""
from __future__ import annotations

import pytest

from labs.drills import get_drill
from labs.drills.sandbox import probe
from tests.browser.conftest import assert_no_exception, wait_idle

pytestmark = pytest.mark.skipif(not probe()[0], reason=f"no sandbox here: {probe()[1]}")

RIGHT = get_drill("lora-forward").solution()
WRONG = RIGHT.replace("if b is not None:\n        y = y + b", "pass  # bias forgotten")


def _type_code(pg, code: str) -> None:
    """Replace the editor's content (the component's iframe), then leave the editor so it sends the code."""
    frame = pg.frame_locator('iframe[title*="code_editor"]')
    frame.locator(".ace_content").click()
    pg.keyboard.press("Control+A")
    pg.keyboard.press("Delete")
    pg.keyboard.insert_text(code)
    pg.wait_for_timeout(300)
    pg.locator('[data-testid="stMain"] h1').first.click()        # blur: the editor sends its text
    wait_idle(pg)


def _run_tests(pg) -> None:
    pg.get_by_role("button", name="Run tests").click()
    wait_idle(pg)
    assert_no_exception(pg, "drills")


def test_wrong_then_fixed_lora_forward_and_history_after_reload(server, page):
    page.goto(server["url"] + "/drills?drill=lora-forward&lang=en")
    wait_idle(page)
    page.wait_for_selector('iframe[title*="code_editor"]')
    _type_code(page, WRONG)
    _run_tests(page)
    alert = page.locator('[data-testid="stAlertContentError"]').first
    assert "tests failed" in alert.inner_text()
    assert "Hint: the bias b is missing." in page.locator('[data-testid="stCode"]').all_inner_texts().__str__()
    _type_code(page, RIGHT)
    _run_tests(page)
    assert "tests passed" in page.locator('[data-testid="stAlertContentSuccess"]').first.inner_text()

    page.reload()
    wait_idle(page)
    history = page.locator('[data-testid="stTable"]')
    history.wait_for()
    text = history.inner_text()
    assert "✅" in text and "❌" in text, text                   # both attempts, newest first, from SQLite
