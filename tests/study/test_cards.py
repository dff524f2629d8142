"""Loader errors name the file, the card and the field; numeric answers come from the calculator."""
from __future__ import annotations

import dataclasses

import pytest

from app.study import cards as C
from tests.study.conftest import fake_estimate, fixture_cards, write_content


def test_fixture_deck_loads(fixture_root):
    deck = C.load_deck(fixture_root)
    assert list(deck.cards) == ["lora-001", "lora-002", "lora-003"]
    assert deck.get("lora-002").correct_option() == 1
    assert deck.topics() == ["lora"]


def _broken(tmp_path, edit):
    cards = fixture_cards()
    edit(cards)
    return write_content(tmp_path / "broken", cards)


@pytest.mark.parametrize("edit, card_id, field", [
    (lambda cs: cs[0].pop("zh"), "lora-001", "zh"),
    (lambda cs: cs[0]["en"].update(a="  "), "lora-001", "en.a"),
    (lambda cs: cs[0]["zh"]["points"].pop(), "lora-001", "zh.points"),
    (lambda cs: cs[1]["options"][0].update(correct=True), "lora-002", "options"),
    (lambda cs: cs[1]["options"][2]["why"].pop("zh"), "lora-002", "options[2].why.zh"),
    (lambda cs: cs[2].update(unit="MB"), "lora-003", "unit"),
    (lambda cs: cs[2].pop("calc"), "lora-003", "calc"),
    (lambda cs: cs[0].update(difficulty=5), "lora-001", "difficulty"),
    (lambda cs: cs[0].update(seed="12"), "lora-001", "seed"),
    (lambda cs: cs[0].update(page="nowhere"), "lora-001", "page"),
    (lambda cs: cs[0].update(tags=["init"]), "lora-001", "tags[0]"),
    (lambda cs: cs[2].update(id="lora-001"), "lora-001", "id"),
    (lambda cs: cs[0].update(kind="essay"), "lora-001", "kind"),
])
def test_malformed_card_names_file_card_and_field(tmp_path, edit, card_id, field):
    root = _broken(tmp_path, edit)
    with pytest.raises(C.CardError) as err:
        C.load_deck(root)
    e = err.value
    assert (e.file, e.card_id, e.field) == ("broken/cards/lora.yaml", card_id, field)
    assert f"broken/cards/lora.yaml: card {card_id}: field {field}:" in str(e)


def test_topic_must_match_file_name(tmp_path):
    root = write_content(tmp_path / "c")
    (root / "cards" / "lora.yaml").rename(root / "cards" / "dora.yaml")
    with pytest.raises(C.CardError, match="field topic"):
        C.load_deck(root)


def test_numeric_answer_is_computed_and_converted(fixture_root):
    card = C.load_deck(fixture_root).get("lora-003")
    assert C.numeric_answer(card, fake_estimate) == pytest.approx(16 * 7e9 / 1e9)
    gib = dataclasses.replace(card, unit="GiB")
    assert C.numeric_answer(gib, fake_estimate) == pytest.approx(16 * 7e9 / 2 ** 30)
    wrong = dataclasses.replace(card, field="memory_bytes.nope")
    with pytest.raises(C.CardError, match="lora-003: field field: 'memory_bytes.nope': no key 'nope'"):
        C.numeric_answer(wrong, fake_estimate)


def test_unknown_card_id_message(fixture_root):
    with pytest.raises(KeyError, match="unknown card id 'nope-999'"):
        C.load_deck(fixture_root).get("nope-999")


@pytest.mark.parametrize("text, value", [("12.5", 12.5), (" 1,024 ", 1024.0), ("1e9", 1e9), ("112 GB", 112.0), ("3.5%", 3.5)])
def test_parse_number(text, value):
    assert C.parse_number(text) == value


@pytest.mark.parametrize("text, msg", [("", "empty"), ("   ", "empty"), ("twelve", "not a number"), ("nan", "finite")])
def test_parse_number_rejects(text, msg):
    with pytest.raises(ValueError, match=msg):
        C.parse_number(text)


def test_within_relative_tolerance():
    assert C.within(105, 100, 0.05) and not C.within(106, 100, 0.05)


def test_real_deck_loads_with_both_languages():
    deck = C.load_deck()
    assert len(deck.cards) >= 20
    for card in deck.cards.values():
        for lang in C.LANGS:
            assert card.q(lang) and card.a(lang) and len(card.points(lang)) >= 2


def test_stats_add_up(fixture_root):
    deck = C.load_deck(fixture_root)
    (row,) = C.stats(deck)
    assert row == {"topic": "lora", "cards": 3, "open": 1, "mcq": 1, "numeric": 1, "en": 3, "zh": 3, "questions": 0}
