"""AppTest drives of the four study pages on the real deck, with a throw-away PEFTLAB_DATA_DIR."""
from __future__ import annotations

import json
import sqlite3
import zipfile
from pathlib import Path

import genanki
import pytest
from streamlit.testing.v1 import AppTest

from app.study import srs
from app.study.cards import load_deck
from app.study.store import DB_NAME, Store

TIMEOUT = 60
ROOT = Path(__file__).resolve().parents[2]


def page(name: str, lang: str = "en", **query) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app" / "pages" / f"{name}.py"), default_timeout=TIMEOUT)
    at.session_state["lang"] = lang
    for k, v in query.items():
        at.query_params[k] = v
    return at.run()


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def metric(at: AppTest, label: str):
    return next(m.value for m in at.metric if m.label == label)


# ---------------------------------------------------------------- flashcards
def test_review_a_card_and_restart_keeps_it(data_dir):
    deck = load_deck()
    at = ok(page("flashcards"))
    first = at.session_state["fc_current"]
    assert first in deck.cards and metric(at, "New") == str(len(deck.cards))
    ok(at.button(key="fc_reveal").click().run())
    shown = srs.preview(None, srs.scheduler(0.9), srs.now_utc(), first)
    labels = {b.key: b.label for b in at.button}
    assert labels["fc_rate_3"] == f"Good · {srs.format_interval(shown[srs.RATINGS[2]])}"
    assert labels["fc_rate_1"].startswith("Again · ") and labels["fc_rate_4"].startswith("Easy · ")
    ok(at.button(key="fc_rate_3").click().run())
    assert any(first in s.value for s in at.success)
    # a new session on the same data folder: the review is there and the card is no longer new
    again = ok(page("flashcards"))
    assert metric(again, "New") == str(len(deck.cards) - 1)
    assert again.session_state["fc_current"] != first
    assert [(r["card_id"], r["rating"]) for r in Store().reviews(1)] == [(first, 3)]


def test_buttons_in_chinese_show_intervals(data_dir):
    at = ok(page("flashcards", lang="zh"))
    ok(at.button(key="fc_reveal").click().run())
    assert {b.label for b in at.button if b.key and b.key.startswith("fc_rate_")} >= {"重来 · 1 分钟", "良好 · 10 分钟"}


def test_card_from_query_string_and_unknown_id(data_dir):
    deck = load_deck()
    target = list(deck.cards)[-1]
    at = ok(page("flashcards", card=target))
    assert at.session_state["fc_current"] == target
    bad = ok(page("flashcards", card="nope-999"))
    assert any("nope-999" in e.value for e in bad.error)
    assert bad.session_state["fc_current"] in deck.cards  # falls back to the queue


def test_two_tabs_reviewing_the_same_card(data_dir):
    a, b = ok(page("flashcards")), ok(page("flashcards"))
    assert a.session_state["fc_current"] == b.session_state["fc_current"]
    card = a.session_state["fc_current"]
    for tab in (a, b):
        ok(tab.button(key="fc_reveal").click().run())
    ok(a.button(key="fc_rate_4").click().run())
    ok(b.button(key="fc_rate_1").click().run())
    assert any("another tab" in s.value for s in b.success)
    assert [(r["card_id"], r["rating"]) for r in Store().reviews(1)] == [(card, 4), (card, 1)]


def test_corrupt_database_offers_a_fresh_start_with_backup(data_dir):
    data_dir.mkdir(parents=True)
    junk = b"garbage, not sqlite " * 100
    (data_dir / DB_NAME).write_bytes(junk)
    at = ok(page("flashcards"))
    assert any(str(data_dir / DB_NAME) in e.value for e in at.error)
    assert all(b.key != "fc_reveal" for b in at.button)
    ok(at.button(key="study_start_fresh").click().run())
    backups = list(data_dir.glob(DB_NAME + ".bak-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == junk
    assert any(backups[0].name in s.value for s in at.success)
    assert any(b.key == "fc_reveal" for b in at.button)


# ---------------------------------------------------------------- quiz
def _quiz(size: int) -> AppTest:
    at = page("quiz")
    at.multiselect(key="quiz_kinds").set_value(["mcq"])
    at.number_input(key="quiz_size").set_value(size)
    return ok(at.button(key="quiz_start").click().run())


def test_answer_a_quiz_review_mistakes_and_retry(data_dir):
    deck = load_deck()
    at = _quiz(2)
    items = at.session_state["quiz"]["items"]
    assert len(items) == 2 and all(deck.cards[c].kind == "mcq" for c in items)
    ok(at.button(key="quiz_check").click().run())  # nothing picked
    assert any("Pick one option" in e.value for e in at.error)
    wrong_card, right_card = deck.cards[items[0]], deck.cards[items[1]]
    wrong = next(j for j, o in enumerate(wrong_card.options) if not o["correct"])
    at.radio(key="quiz_in_0").set_value(wrong)
    ok(at.button(key="quiz_check").click().run())
    assert at.error and "Not quite" in at.error[0].value
    text = " ".join(m.value for m in at.markdown)
    assert all(o["why"]["en"] in text for o in wrong_card.options)  # the why of every option
    ok(at.button(key="quiz_next").click().run())
    at.radio(key="quiz_in_1").set_value(right_card.correct_option())
    ok(at.button(key="quiz_check").click().run())
    assert at.success and "Right" in at.success[0].value
    ok(at.button(key="quiz_next").click().run())
    assert metric(at, "Score") == "1 / 2"
    assert any(wrong_card.id in e.label for e in at.expander)
    assert [r["card_id"] for r in Store().wrong_queue(1)] == [wrong_card.id]
    ok(at.button(key="quiz_retry_end").click().run())
    assert at.session_state["quiz"]["items"] == [wrong_card.id]
    # a new session sees the saved attempt's wrong answer queued for retry
    fresh = ok(page("quiz"))
    assert next(b for b in fresh.button if b.key == "quiz_retry").label == "Retry wrong answers (1)"


def test_open_item_self_graded(data_dir):
    at = page("quiz")
    at.multiselect(key="quiz_kinds").set_value(["open"])
    at.number_input(key="quiz_size").set_value(1)
    ok(at.button(key="quiz_start").click().run())
    at.text_area(key="quiz_in_0").input("B starts at zero so the adapter is a no-op")
    ok(at.button(key="quiz_check").click().run())
    assert any("no-op" in m.value for m in at.markdown)
    ok(at.button(key="quiz_self_yes").click().run())
    assert metric(at, "Score") == "1 / 1" and Store().quiz_history(1)[0]["n_correct"] == 1


# ---------------------------------------------------------------- mock interview
def test_finish_a_mock_interview(data_dir):
    at = page("interview")
    at.number_input(key="iv_n").set_value(2)
    ok(at.button(key="iv_start").click().run())
    iv = at.session_state["iv"]
    assert len(iv["items"]) == 2
    ok(at.button(key="iv_done").click().run())  # nothing typed, nothing spoken
    assert any("empty" in e.value for e in at.error)
    at.text_area(key="iv_answer_0").input("W = W0 + BA, B starts at zero")
    ok(at.button(key="iv_done").click().run())
    at.checkbox(key="iv_pt_0_0").check()
    ok(at.button(key="iv_next").click().run())
    at.checkbox(key="iv_spoken_1").check()
    ok(at.button(key="iv_done").click().run())
    n1 = len([c for c in at.checkbox if c.key and c.key.startswith("iv_pt_1_")])
    for j in range(n1):
        at.checkbox(key=f"iv_pt_1_{j}").check()
    ok(at.button(key="iv_next").click().run())
    (saved,) = Store().interview_history(1)
    details = json.loads(saved["details"])
    n0 = details[0]["n_points"]
    assert details[0]["hit"] == [0] and details[0]["missed"] == list(range(1, n0))
    assert details[1]["spoken"] and details[1]["missed"] == []
    assert saved["score"] == pytest.approx((1 + n1) / (n0 + n1))
    assert metric(at, "Key points covered") == f"{1 + n1} / {n0 + n1}"
    assert at.expander and details[0]["question"] in at.expander[0].label


# ---------------------------------------------------------------- progress + Anki
def test_progress_page_and_anki_export(data_dir, tmp_path):
    deck = load_deck()
    s = Store()
    ids = list(deck.cards)[:3]
    for cid in ids:
        srs.review(s, 1, cid, 3)
    s.save_quiz(1, ["lora"], [(ids[0], False, "A"), (ids[1], True, "B")])
    at = ok(page("progress"))
    assert metric(at, "Reviews") == "3" and metric(at, "Streak (days)") == "1"
    assert metric(at, "New") == str(len(deck.cards) - 3)
    topics = deck.topics()[:2]
    at.multiselect(key="anki_topics").set_value(topics)
    at.radio(key="anki_lang").set_value("zh")
    ok(at.button(key="anki_build").click().run())
    data, name, n = at.session_state["anki_apkg"]
    assert name == "peftlab-zh.apkg" and n == len(deck.select(topics))
    assert at.download_button(key="anki_download") is not None
    path = tmp_path / name
    path.write_bytes(data)
    with zipfile.ZipFile(path) as z:
        z.extract("collection.anki2", tmp_path)
    con = sqlite3.connect(tmp_path / "collection.anki2")
    guids = {g for (g,) in con.execute("SELECT guid FROM notes")}
    con.close()
    assert guids == {genanki.guid_for("peftlab", c.id, "zh") for c in deck.select(topics)}


def test_progress_page_empty_store(data_dir):
    at = ok(page("progress", lang="zh"))
    assert metric(at, "复习次数") == "0" and any("首次" in i.value or "第一次" in i.value for i in at.info)


# ---------------------------------------------------------------- fixture deck: numeric items, question bank
@pytest.fixture
def fixture_app(tmp_path, monkeypatch, data_dir):
    """Pages on the fixture deck, with the stand-in calculator (16 bytes/param) as labs.budget."""
    from app.study import cards
    from tests.study.conftest import fake_estimate, fixture_questions, write_content
    root = write_content(tmp_path / "content", questions=fixture_questions())
    monkeypatch.setenv("PEFTLAB_CONTENT_DIR", str(root))
    monkeypatch.setattr(cards, "_default_estimator", lambda: fake_estimate)
    return root


def test_numeric_quiz_item_rejects_empty_and_non_numbers(fixture_app):
    at = page("quiz")
    at.multiselect(key="quiz_kinds").set_value(["numeric"])
    ok(at.button(key="quiz_start").click().run())
    assert at.session_state["quiz"]["items"] == ["lora-003"]
    ok(at.button(key="quiz_check").click().run())
    assert any("empty" in e.value for e in at.error)
    at.text_input(key="quiz_in_0").input("a lot")
    ok(at.button(key="quiz_check").click().run())
    assert any("`a lot` is not a number" in e.value for e in at.error)
    at.text_input(key="quiz_in_0").input("115 GB")  # 112 GB ± 5 %
    ok(at.button(key="quiz_check").click().run())
    assert at.success and "Right" in at.success[0].value
    assert any("112 GB" in i.value for i in at.info)


def test_interview_draws_from_the_question_bank(fixture_app):
    at = page("interview", lang="zh")
    at.number_input(key="iv_n").set_value(1)
    ok(at.button(key="iv_start").click().run())
    assert at.session_state["iv"]["items"] == ["iq-001"]
    assert any("讲讲 LoRA" in m.value for m in at.markdown)
    at.checkbox(key="iv_spoken_0").check()
    ok(at.button(key="iv_done").click().run())
    assert [c.label for c in at.checkbox if c.key and c.key.startswith("iv_pt_")] == ["低秩更新", "B 初始化为 0", "可合并"]
    at.checkbox(key="iv_pt_0_1").check()
    ok(at.button(key="iv_next").click().run())
    assert metric(at, "覆盖的要点") == "1 / 3"
    assert any("可合并" in m.value for m in at.markdown)  # a missed point is listed
    prog = ok(page("progress", lang="zh"))
    assert any("低秩更新" in m.value and "可合并" in m.value and "B 初始化为 0" not in m.value for m in prog.markdown)


def test_malformed_card_file_is_reported_not_raised(tmp_path, monkeypatch, data_dir):
    from tests.study.conftest import fixture_cards, write_content
    cards = fixture_cards()
    del cards[1]["options"][0]["why"]
    monkeypatch.setenv("PEFTLAB_CONTENT_DIR", str(write_content(tmp_path / "content", cards)))
    at = ok(page("flashcards"))
    assert any("lora-002" in e.value and "options[0].why" in e.value for e in at.error)


def test_numeric_quiz_on_the_real_calculator(data_dir):
    from app.study.cards import numeric_answer
    deck = load_deck()
    at = page("quiz")
    at.multiselect(key="quiz_topics").set_value(["memory"])
    at.multiselect(key="quiz_kinds").set_value(["numeric"])
    at.number_input(key="quiz_size").set_value(2)
    ok(at.button(key="quiz_start").click().run())
    assert not at.warning, [w.value for w in at.warning]  # no numeric card was dropped
    first, second = (deck.cards[c] for c in at.session_state["quiz"]["items"])
    at.text_input(key="quiz_in_0").input(f"{numeric_answer(first) * (1 + first.tolerance / 2):.6g}")
    ok(at.button(key="quiz_check").click().run())
    assert at.success and "Right" in at.success[0].value
    ok(at.button(key="quiz_next").click().run())
    at.text_input(key="quiz_in_1").input(f"{numeric_answer(second) * (1 + 2 * second.tolerance):.6g}")
    ok(at.button(key="quiz_check").click().run())
    assert at.error and "Not quite" in at.error[0].value
    assert any(f"{numeric_answer(second):.4g} {second.unit}" in i.value for i in at.info)


def test_desired_retention_setting_changes_the_easy_interval(data_dir):
    at = page("flashcards")
    at.slider(key="fc_retention_1").set_value(0.8)
    ok(at.run())
    assert Store().get_setting(1, "desired_retention") == "0.8"
    tab = ok(page("flashcards"))  # a new session reads the saved setting
    ok(tab.button(key="fc_reveal").click().run())
    easy = next(b.label for b in tab.button if b.key == "fc_rate_4")
    at_08 = srs.preview(None, srs.scheduler(0.8), srs.now_utc())[srs.RATINGS[3]]
    at_09 = srs.preview(None, srs.scheduler(0.9), srs.now_utc())[srs.RATINGS[3]]
    assert at_08 > at_09 and easy == f"Easy · {srs.format_interval(at_08)}"
