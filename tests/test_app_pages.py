"""Every page of the app runs headless without an exception, in both languages."""
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted(p.name for p in (ROOT / "app" / "pages").glob("*.py"))


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_main_router_runs(lang):
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60)
    at.query_params["lang"] = lang
    at.run()
    assert not at.exception, at.exception
    assert at.session_state["lang"] == lang


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_page_runs_without_exception(page, lang):
    at = AppTest.from_file(str(ROOT / "app" / "pages" / page), default_timeout=60)
    at.session_state["lang"] = lang
    at.run()
    assert not at.exception, f"{page} ({lang}): {at.exception}"
    assert not at.error, f"{page} ({lang}) shows an error on a fresh run: {[e.value for e in at.error]}"


def test_language_switch_persists_across_pages():
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60)
    at.run()
    at.sidebar.radio(key="_lang_choice").set_value("zh").run()
    assert at.session_state["lang"] == "zh"
    at.switch_page("app/pages/lora.py").run()
    assert not at.exception
    assert at.session_state["lang"] == "zh"
    assert any("LoRA" in t.value for t in at.title)
