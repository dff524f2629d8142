"""Anki export: the .apkg opens with zipfile + sqlite3, holds the chosen notes, GUIDs are stable."""
from __future__ import annotations

import html
import json
import sqlite3
import zipfile
from pathlib import Path

import genanki
import pytest

from app.study import anki
from app.study.cards import load_deck, numeric_answer
from tests.study.conftest import fake_estimate


def read_apkg(path: Path, tmp: Path) -> dict:
    """{guid: (fields, tags)} plus the deck names, read the way Anki would."""
    with zipfile.ZipFile(path) as z:
        assert "collection.anki2" in z.namelist()
        z.extract("collection.anki2", tmp)
    con = sqlite3.connect(tmp / "collection.anki2")
    notes = {g: (f.split("\x1f"), t.split()) for g, f, t in con.execute("SELECT guid, flds, tags FROM notes")}
    decks = {d["name"] for d in json.loads(con.execute("SELECT decks FROM col").fetchone()[0]).values()}
    models = set(json.loads(con.execute("SELECT models FROM col").fetchone()[0]))
    con.close()
    return {"notes": notes, "decks": decks, "models": models}


def test_export_reads_back_with_stable_guids(tmp_path):
    deck = load_deck()
    topics = deck.topics()[:2] + ["memory"]
    cards = deck.select(topics)
    a = read_apkg(anki.export_apkg(deck, topics, "zh", tmp_path / "a.apkg"), tmp_path / "ra")
    b = read_apkg(anki.export_apkg(deck, topics, "zh", tmp_path / "b.apkg"), tmp_path / "rb")
    assert len(a["notes"]) == len(cards)
    assert set(a["notes"]) == set(b["notes"]) == {genanki.guid_for("peftlab", c.id, "zh") for c in cards}
    assert a["models"] == b["models"] == {str(anki.stable_id("peftlab-model", "zh"))}
    assert {f"PEFT Lab (zh)::{t}" for t in topics} <= a["decks"]
    first = cards[0]
    fields, tags = a["notes"][anki.note_guid(first.id, "zh")]
    assert fields[0] == first.id and first.topic in tags
    assert html.escape(first.q("zh")) in fields[1] and html.escape(first.a("zh")) in fields[2]
    # numeric cards carry the calculator's number, never a number typed into the YAML
    num = next(c for c in cards if c.kind == "numeric")
    assert f"{numeric_answer(num):.4g} {num.unit}" in a["notes"][anki.note_guid(num.id, "zh")][0][2]
    # the other language is a different note (its own GUID), so both can live in one collection
    en = read_apkg(anki.export_apkg(deck, topics[:1], "en", tmp_path / "en.apkg"), tmp_path / "ren")
    assert not set(en["notes"]) & set(a["notes"])


def test_numeric_and_mcq_backs(fixture_root, tmp_path):
    deck = load_deck(fixture_root)
    got = read_apkg(anki.export_apkg(deck, ["lora"], "en", tmp_path / "f.apkg", fake_estimate), tmp_path / "r")
    back_num = got["notes"][anki.note_guid("lora-003", "en")][0][2]
    assert "112 GB" in back_num  # 16 bytes x 7e9 params, computed by the (fake) calculator
    back_mcq = got["notes"][anki.note_guid("lora-002", "en")][0][2]
    assert back_mcq.count("why ") == 3 and "✅ opt 1" in back_mcq


@pytest.mark.parametrize("topics, lang, msg", [([], "en", "topics"), (["nope"], "en", "nope"), (["lora"], "fr", "lang = 'fr'")])
def test_bad_export_choices(fixture_root, topics, lang, msg):
    with pytest.raises(ValueError, match=msg):
        anki.build_package(load_deck(fixture_root), topics, lang)
