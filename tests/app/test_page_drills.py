"""The Drills page: a wrong LoRA forward gets a red report with its hint, the attempt is saved, the drill's
flashcards become due and the Progress page shows the drill; the fix goes green; code execution is off on a
non-loopback bind unless PEFTLAB_ALLOW_CODE=1, and the page says so. One warm sandbox per check (real)."""
from __future__ import annotations

import pytest

from app.study import drills as D
from app.study import srs
from app.study.cards import load_deck
from app.study.store import Store
from labs.drills import drill_ids, get_drill
from labs.drills.sandbox import probe
from tests.app.conftest import app_page

WRONG = get_drill("lora-forward").solution().replace("if b is not None:\n        y = y + b", "")


def _page(lang="en", drill="lora-forward"):
    at = app_page("drills", lang)
    at.query_params["drill"] = drill
    return at.run()


def _run(at, code: str):
    at.session_state["drill_code::lora-forward"] = code
    at.button(key="drill_run").click().run()
    assert not at.exception, at.exception
    return at


@pytest.mark.skipif(not probe()[0], reason="no sandbox on this machine")
def test_wrong_then_fixed_lora_forward(data_dir, monkeypatch):
    monkeypatch.setenv("PEFTLAB_ALLOW_CODE", "1")
    at = _page()
    assert not at.exception, at.exception
    _run(at, WRONG)
    assert any("tests failed" in e.value for e in at.error), ([e.value for e in at.error], [w.value for w in at.warning], [c.value for c in at.caption])
    assert any("bias b is missing" in c.value for c in at.code), [c.value for c in at.code]
    store = Store()
    pid = store.profile_id()
    assert [a["passed"] for a in D.history(store, pid, "lora-forward")] == [False]
    states = store.card_states(pid)
    now = srs.now_utc().timestamp()
    assert all(c in states and states[c]["due"] <= now for c in get_drill("lora-forward").cards)
    _run(at, get_drill("lora-forward").solution())
    assert any("tests passed" in s.value for s in at.success), [s.value for s in at.success]
    assert [a["passed"] for a in D.history(store, pid, "lora-forward")] == [True, False]

    progress = app_page("progress").run()
    assert not progress.exception, progress.exception
    assert any("drills passed" in c.value for c in progress.caption)


def test_code_is_off_on_a_public_bind_and_the_page_says_so(data_dir, monkeypatch):
    from streamlit import config

    monkeypatch.delenv("PEFTLAB_ALLOW_CODE", raising=False)
    at = app_page("drills", "zh")
    at.query_params["drill"] = "nf4-quantize"
    before = config.get_option("server.address")
    config.set_option("server.address", "0.0.0.0")   # `make run HOST=0.0.0.0`: reachable by others
    try:
        at.run()
    finally:
        config.set_option("server.address", before)
    assert not at.exception, at.exception
    assert any("关闭代码运行" in w.value for w in at.warning)
    assert at.button(key="drill_run").disabled
    at.button(key="drill_hint").click().run()
    assert any("提示 1" in i.value for i in at.info)
    at.button(key="drill_show_solution").click().run()
    assert any("def quantize_nf4" in c.value for c in at.code)


def test_every_drill_renders_and_concept_pages_link_their_drills(data_dir):
    at = app_page("drills")
    for did in drill_ids():
        at.query_params["drill"] = did
        at.session_state["drill_pick"] = did
        at.run()
        assert not at.exception, (did, at.exception)
    deck = load_deck()
    for did in drill_ids():
        assert set(get_drill(did).cards) <= set(deck.cards)

    def concept_page_footer():
        from app.ui import drill_links

        drill_links("nf4")

    from streamlit.testing.v1 import AppTest

    footer = AppTest.from_function(concept_page_footer).run()
    text = " ".join(m.value for m in footer.markdown)
    assert "/drills?drill=nf4-quantize" in text and "/drills?drill=nf4-dequantize-dq" in text
