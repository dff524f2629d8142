"""Schema, count and coverage checks for content/cards/*.yaml and content/interview/questions.yaml.

The schema is documented in content/SCHEMA.md. Only PyYAML (safe_load) is used: content is data.
Every check here fails on a real defect (a missing language, a duplicated id, an uncovered seed
section, a numeric card the calculator cannot answer).
"""
from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
import yaml

from labs.experiments import MODULES as LAB_MODULES

ROOT = Path(__file__).resolve().parents[2]
CARDS_DIR = ROOT / "content" / "cards"
QUESTIONS = ROOT / "content" / "interview" / "questions.yaml"

# topics and page ids: the page registry (content/pages/index.yaml); lab ids: the lab registry's modules
INDEX = yaml.safe_load((ROOT / "content" / "pages" / "index.yaml").read_text(encoding="utf-8"))
TOPICS = tuple(INDEX["topics"])
PAGES = {p["id"] for p in INDEX["pages"]}
LABS = {*LAB_MODULES, None}
KINDS = {"open", "mcq", "numeric"}
LANGS = ("en", "zh")
UNITS = {"GB": 1e9, "GiB": 2.0 ** 30, "count": 1.0, "percent": 1.0}
ID_RE = re.compile(r"^[a-z0-9-]+-\d{3}$")
SEED_RE = re.compile(r"^(?:(?:[1-9]|1[01])(?:\.\d+)?|11\.Q[1-6]|beyond)$")
CARD_KEYS = {"id", "kind", "tags", "difficulty", "seed", "page", "lab", "en", "zh"}
EXTRA_KEYS = {"open": set(), "mcq": {"options"}, "numeric": {"calc", "field", "unit", "tolerance"}}
CJK = re.compile(r"[\u4e00-\u9fff]")

MIN_CARDS = 120
MIN_MCQ = 30
MIN_NUMERIC = 12
MIN_QUESTIONS = 25


def _load_files() -> dict[str, dict]:
    return {p.stem: yaml.safe_load(p.read_text(encoding="utf-8"))
            for p in sorted(CARDS_DIR.glob("*.yaml"))}


FILES = _load_files()
CARDS = [c for doc in FILES.values() for c in (doc or {}).get("cards", [])]
CARD_IDS = [c.get("id", "<no id>") for c in CARDS]


def _nonempty_str(x) -> bool:
    return isinstance(x, str) and x.strip() != ""


def _check_text(where: str, block, keys=("q", "a")) -> list[str]:
    errs = []
    if not isinstance(block, dict):
        return [f"{where}: expected a mapping, got {type(block).__name__}"]
    for k in keys:
        if not _nonempty_str(block.get(k)):
            errs.append(f"{where}.{k}: missing or empty")
    pts = block.get("points")
    if not isinstance(pts, list) or not all(_nonempty_str(p) for p in pts):
        errs.append(f"{where}.points: must be a list of non-empty strings")
    return errs


def card_errors(card: dict) -> list[str]:
    """All schema violations of one card, as messages naming the card, the field and the rule."""
    cid = card.get("id", "<no id>")
    kind = card.get("kind")
    errs = []
    missing = CARD_KEYS - card.keys()
    if missing:
        errs.append(f"{cid}: missing fields {sorted(missing)}")
    if kind not in KINDS:
        return errs + [f"{cid}.kind={kind!r}: allowed {sorted(KINDS)}"]
    unknown = card.keys() - CARD_KEYS - EXTRA_KEYS[kind]
    if unknown:
        errs.append(f"{cid}: unknown fields {sorted(unknown)} for kind {kind}")
    if not ID_RE.match(str(cid)):
        errs.append(f"{cid}: id must match {ID_RE.pattern}")
    tags = card.get("tags")
    if not (isinstance(tags, list) and tags and tags[0] in TOPICS):
        errs.append(f"{cid}.tags={tags!r}: non-empty list whose first item is a topic id")
    if card.get("difficulty") not in (1, 2, 3):
        errs.append(f"{cid}.difficulty={card.get('difficulty')!r}: allowed 1, 2, 3")
    if not (isinstance(card.get("seed"), str) and SEED_RE.match(card["seed"])):
        errs.append(f"{cid}.seed={card.get('seed')!r}: allowed '1'..'11', 'N.M', '11.Q1'..'11.Q6', 'beyond'")
    if card.get("page") not in PAGES:
        errs.append(f"{cid}.page={card.get('page')!r}: allowed {sorted(PAGES)}")
    if card.get("lab", "missing") not in LABS:
        errs.append(f"{cid}.lab={card.get('lab')!r}: allowed {sorted(x for x in LABS if x)} or null")
    for lang in LANGS:
        errs += _check_text(f"{cid}.{lang}", card.get(lang))
    if all(isinstance(card.get(lg), dict) and isinstance(card[lg].get("points"), list) for lg in LANGS):
        n_en, n_zh = len(card["en"]["points"]), len(card["zh"]["points"])
        if n_en != n_zh:
            errs.append(f"{cid}.points: en has {n_en}, zh has {n_zh}; counts must be equal")
        if not 2 <= n_en <= 6:
            errs.append(f"{cid}.points: {n_en} items, allowed 2..6")
        if isinstance(card["zh"].get("q"), str) and not CJK.search(card["zh"]["q"]):
            errs.append(f"{cid}.zh.q: contains no Chinese characters")
    if kind == "mcq":
        errs += _mcq_errors(cid, card.get("options"))
    if kind == "numeric":
        errs += _numeric_errors(cid, card)
    return errs


def _mcq_errors(cid: str, options) -> list[str]:
    if not isinstance(options, list) or not 3 <= len(options) <= 5:
        return [f"{cid}.options: 3..5 options required"]
    errs = []
    n_correct = sum(1 for o in options if isinstance(o, dict) and o.get("correct") is True)
    if n_correct != 1:
        errs.append(f"{cid}.options: {n_correct} marked correct, exactly 1 allowed")
    for i, o in enumerate(options):
        if not isinstance(o, dict) or not isinstance(o.get("correct"), bool):
            errs.append(f"{cid}.options[{i}].correct: must be true or false")
            continue
        why = o.get("why")
        for lang in LANGS:
            if not _nonempty_str(o.get(lang)):
                errs.append(f"{cid}.options[{i}].{lang}: missing or empty")
            if not (isinstance(why, dict) and _nonempty_str(why.get(lang))):
                errs.append(f"{cid}.options[{i}].why.{lang}: missing or empty")
    texts = [o.get("en") for o in options if isinstance(o, dict)]
    if len(set(texts)) != len(texts):
        errs.append(f"{cid}.options: duplicated option text")
    return errs


def _numeric_errors(cid: str, card: dict) -> list[str]:
    errs = []
    if not (isinstance(card.get("calc"), dict) and card["calc"]):
        errs.append(f"{cid}.calc: non-empty mapping of estimate() arguments required")
    if not _nonempty_str(card.get("field")):
        errs.append(f"{cid}.field: dotted path into estimate()'s result required")
    if card.get("unit") not in UNITS:
        errs.append(f"{cid}.unit={card.get('unit')!r}: allowed {sorted(UNITS)}")
    tol = card.get("tolerance")
    if not (isinstance(tol, (int, float)) and 0 < tol < 1):
        errs.append(f"{cid}.tolerance={tol!r}: a relative tolerance in (0, 1)")
    if "answer" in card or any("answer" in (card.get(lg) or {}) for lg in LANGS):
        errs.append(f"{cid}: numeric cards never store a literal answer")
    return errs


# ------------------------------------------------------------------------------------------ schema

def test_every_topic_has_a_file_and_cards():
    assert set(FILES) <= set(TOPICS), f"unknown topic files: {sorted(set(FILES) - set(TOPICS))}"
    for topic in TOPICS:
        doc = FILES.get(topic)
        assert doc is not None, f"content/cards/{topic}.yaml is missing"
        assert doc.get("topic") == topic, f"{topic}.yaml: topic field is {doc.get('topic')!r}"
        assert doc.get("cards"), f"{topic}.yaml has no cards"


@pytest.mark.parametrize("card", CARDS, ids=CARD_IDS)
def test_card_schema(card):
    errs = card_errors(card)
    assert not errs, "\n".join(errs)


def test_ids_unique():
    dupes = sorted({i for i in CARD_IDS if CARD_IDS.count(i) > 1})
    assert not dupes, f"duplicated card ids: {dupes}"


def test_schema_check_catches_defects():
    """The checker itself must fail on broken cards (a test that cannot fail is worse than none)."""
    good = next(c for c in CARDS if c["kind"] == "mcq")
    assert card_errors(good) == []
    no_zh = {k: v for k, v in good.items() if k != "zh"}
    assert any("zh" in e for e in card_errors(no_zh))
    two_right = dict(good, options=[dict(o, correct=True) for o in good["options"]])
    assert any("exactly 1" in e for e in card_errors(two_right))
    uneven = dict(good, zh=dict(good["zh"], points=good["zh"]["points"][:1]))
    assert any("counts must be equal" in e for e in card_errors(uneven))
    assert any("id must match" in e for e in card_errors(dict(good, id="Bad_ID")))
    num = next(c for c in CARDS if c["kind"] == "numeric")
    assert card_errors(num) == []
    assert any("literal answer" in e for e in card_errors(dict(num, answer=1.0)))


# ---------------------------------------------------------------------------- counts and coverage

def test_counts():
    kinds = [c.get("kind") for c in CARDS]
    assert len(CARDS) >= MIN_CARDS, f"{len(CARDS)} cards, need >= {MIN_CARDS}"
    assert kinds.count("mcq") >= MIN_MCQ, f"{kinds.count('mcq')} mcq cards, need >= {MIN_MCQ}"
    assert kinds.count("numeric") >= MIN_NUMERIC, \
        f"{kinds.count('numeric')} numeric cards, need >= {MIN_NUMERIC}"


def test_cards_live_in_their_topic_file():
    for topic, doc in FILES.items():
        for c in doc.get("cards", []):
            assert c["tags"][0] == topic, f"{c['id']}: primary tag {c['tags'][0]!r} in {topic}.yaml"


@pytest.mark.parametrize("section", [str(n) for n in range(1, 12)] + [f"11.Q{k}" for k in range(1, 7)])
def test_seed_section_covered(section):
    def covers(seed: str) -> bool:
        return seed == section or (("Q" not in section) and seed.split(".")[0] == section)
    hits = [c["id"] for c in CARDS if covers(c["seed"])]
    need = 2 if "Q" in section else 1  # each interview question: the open question + a follow-up
    assert len(hits) >= need, f"seed section {section}: {len(hits)} cards, need >= {need}"


def test_interview_questions_are_open_cards_in_interview_file():
    for k in range(1, 7):
        qs = [c for c in FILES["interview"]["cards"] if c["seed"] == f"11.Q{k}"]
        assert any(c["kind"] == "open" for c in qs), f"11.Q{k} has no open card in interview.yaml"
        assert all(len(c["tags"]) >= 2 and c["tags"][1] in TOPICS for c in qs), \
            f"11.Q{k}: interview cards must also carry their technical topic as tags[1]"


def test_beyond_the_notes_present():
    beyond = [c for c in CARDS if c["seed"] == "beyond"]
    assert len(beyond) >= 20, f"only {len(beyond)} cards go beyond the seed notes"


# ------------------------------------------------------------------------------ interview questions

def test_interview_questions_file():
    doc = yaml.safe_load(QUESTIONS.read_text(encoding="utf-8"))
    qs = doc["questions"]
    assert len(qs) >= MIN_QUESTIONS, f"{len(qs)} questions, need >= {MIN_QUESTIONS}"
    ids = [q["id"] for q in qs]
    assert len(set(ids)) == len(ids), "duplicated question ids"
    known = set(CARD_IDS)
    for q in qs:
        qid = q["id"]
        assert re.match(r"^iq-\d{3}$", qid), f"{qid}: id must match ^iq-\\d{{3}}$"
        assert q["topic"] in TOPICS, f"{qid}.topic={q['topic']!r}"
        assert q["difficulty"] in (1, 2, 3), f"{qid}.difficulty={q['difficulty']!r}"
        assert q["card"] in known, f"{qid}.card={q['card']!r} is not a card id"
        for lang in LANGS:
            assert _nonempty_str(q[lang]["q"]), f"{qid}.{lang}.q empty"
            pts = q[lang]["points"]
            assert 2 <= len(pts) <= 8 and all(_nonempty_str(p) for p in pts), f"{qid}.{lang}.points"
        assert len(q["en"]["points"]) == len(q["zh"]["points"]), f"{qid}: points counts differ"
    seed_cards = {c["id"] for c in FILES["interview"]["cards"]}
    assert sum(q["card"] in seed_cards for q in qs) >= 6, "the seed's Q1-Q6 must be in the question bank"


# ------------------------------------------------------------------------- numeric cards vs calculator

def _walk(result, dotted: str):
    for key in dotted.split("."):
        result = result[key] if isinstance(result, dict) else getattr(result, key)
    return result


NUMERIC = [c for c in CARDS if c.get("kind") == "numeric"]


@pytest.mark.parametrize("card", NUMERIC, ids=[c["id"] for c in NUMERIC])
def test_numeric_card_evaluates(card):
    from labs.budget import estimate              # our own package: an import error fails the test

    value = float(_walk(estimate(**card["calc"]), card["field"]))
    assert value > 0, f"{card['id']}: {card['field']} = {value}, expected a positive number"
    shown = value / UNITS[card["unit"]]
    for lang in LANGS:
        text = card[lang]["a"] + " " + card[lang]["q"]
        for rendered in {f"{shown:.1f}", f"{shown:.2f}", f"{shown:,.0f}", f"{shown:.0f}"}:
            if len(rendered.replace(",", "").replace(".", "")) >= 3:
                assert rendered not in text, f"{card['id']}.{lang}: the answer {rendered} is written in the card"
