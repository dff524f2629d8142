"""Export cards to an Anki ``.apkg`` with genanki — re-importing updates notes instead of duplicating.

Anki matches an imported note to an existing one by its GUID, and a note type / deck by its id.
So every id here is a pure function of stable strings:

    model id = h("peftlab-model", lang)          deck id = h("peftlab-deck", lang, topic)
    note GUID = genanki.guid_for("peftlab", card.id, lang)

where ``h`` is the first 8 bytes of SHA-1, folded into genanki's id range [2**30, 2**31).
A changed card text with the same id overwrites the note; the learner's Anki review history stays.
"""
from __future__ import annotations

import hashlib
import html
from pathlib import Path

import genanki

from app.study.cards import Card, Deck, numeric_answer

ID_LO, ID_SPAN = 1 << 30, 1 << 30
FIELDS = ["CardId", "Front", "Back", "Topic"]
TEMPLATE_CSS = ".card { font-family: sans-serif; font-size: 18px; text-align: left; } .pts li { margin: 4px 0; }"
LABELS = {"en": {"answer": "Answer", "points": "Key points", "options": "Options", "why": "Why",
                 "value": "Calculator value"},
          "zh": {"answer": "答案", "points": "要点", "options": "选项", "why": "原因", "value": "计算器给出的数值"}}


def stable_id(*parts: str) -> int:
    digest = hashlib.sha1("\x1f".join(parts).encode("utf-8")).digest()
    return ID_LO + int.from_bytes(digest[:8], "big") % ID_SPAN


def note_guid(card_id: str, lang: str) -> str:
    return genanki.guid_for("peftlab", card_id, lang)


def model(lang: str) -> genanki.Model:
    return genanki.Model(
        stable_id("peftlab-model", lang), f"PEFT Lab card ({lang})",
        fields=[{"name": f} for f in FIELDS],
        templates=[{"name": "Card 1", "qfmt": "{{Front}}",
                    "afmt": "{{FrontSide}}<hr id=answer>{{Back}}"}],
        css=TEMPLATE_CSS)


def _back(card: Card, lang: str, estimator=None) -> str:
    L = LABELS[lang]
    e = html.escape
    parts = [f"<p><b>{L['answer']}:</b> {e(card.a(lang))}</p>"]
    if card.kind == "numeric":
        value = numeric_answer(card, estimator)
        parts.append(f"<p><b>{L['value']}:</b> {value:.4g} {e(card.unit)}</p>")
    if card.kind == "mcq":
        items = "".join(f"<li>{'✅' if o['correct'] else '❌'} {e(o[lang])} — <i>{e(o['why'][lang])}</i></li>"
                        for o in card.options)
        parts.append(f"<p><b>{L['options']}:</b></p><ul>{items}</ul>")
    pts = "".join(f"<li>{e(p)}</li>" for p in card.points(lang))
    parts.append(f"<p><b>{L['points']}:</b></p><ul class=pts>{pts}</ul>")
    return "".join(parts)


def _front(card: Card, lang: str) -> str:
    front = f"<p>{html.escape(card.q(lang))}</p>"
    if card.kind == "mcq":
        front += "<ol type=A>" + "".join(f"<li>{html.escape(o[lang])}</li>" for o in card.options) + "</ol>"
    return front


def build_package(deck: Deck, topics: list[str], lang: str, estimator=None) -> genanki.Package:
    """One Anki deck per topic, named ``PEFT Lab (<lang>)::<topic>``."""
    if lang not in LABELS:
        raise ValueError(f"lang = {lang!r} is not allowed: one of {', '.join(LABELS)}")
    known = deck.topics()
    bad = [t for t in topics if t not in known]
    if not topics or bad:
        raise ValueError(f"topics = {bad or topics!r} not allowed: choose one or more of {', '.join(known)}")
    m = model(lang)
    decks = []
    for topic in topics:
        d = genanki.Deck(stable_id("peftlab-deck", lang, topic), f"PEFT Lab ({lang})::{topic}")
        for card in deck.select([topic]):
            tags = [t.replace(" ", "_") for t in card.tags] + [f"difficulty-{card.difficulty}", card.kind]
            d.add_note(genanki.Note(model=m, fields=[card.id, _front(card, lang), _back(card, lang, estimator), topic],
                                    guid=note_guid(card.id, lang), tags=tags, sort_field=card.id))
        decks.append(d)
    return genanki.Package(decks)


def export_apkg(deck: Deck, topics: list[str], lang: str, path: Path | str, estimator=None) -> Path:
    """Write the ``.apkg`` to ``path`` and return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    build_package(deck, topics, lang, estimator).write_to_file(str(path))
    return path


def export_bytes(deck: Deck, topics: list[str], lang: str, estimator=None) -> bytes:
    """The ``.apkg`` as bytes, for a download button."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        return export_apkg(deck, topics, lang, Path(tmp) / "peftlab.apkg", estimator).read_bytes()
