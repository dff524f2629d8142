"""Load and validate the study deck: ``content/cards/*.yaml`` and ``content/interview/questions.yaml``.

The schema is ``content/SCHEMA.md``. Every check here fails with a :class:`CardError` naming the file,
the card id and the field, e.g. ``content/cards/lora.yaml: card lora-007: field zh.points: 3 points
in zh but 4 in en (same count required)``.

Numeric cards never store their answer. :func:`numeric_answer` calls ``labs.budget.estimate(**calc)``,
walks the dotted ``field`` (or a ratio ``a / b`` of two fields) and converts to ``unit``::

    GB      = bytes / 1e9          GiB = bytes / 2**30
    count   = value                percent = value            (the field is already in percent)
"""
from __future__ import annotations

import functools
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from app import page_registry
from labs.experiments import MODULES as LAB_MODULES

CONTENT = Path(__file__).resolve().parents[2] / "content"
ENV_CONTENT = "PEFTLAB_CONTENT_DIR"  # tests point this at a fixture deck
LANGS = ("en", "zh")
# topic ids and page ids come from the page registry (content/pages/index.yaml), lab ids from the lab registry
TOPICS = page_registry.load().topics
PAGES = page_registry.page_ids()
LABS = tuple(LAB_MODULES)
KINDS = ("open", "mcq", "numeric")
UNITS = {"GB": 1e9, "GiB": float(2 ** 30), "count": 1.0, "percent": 1.0}  # shown = value / divisor
CARD_ID = re.compile(r"^[a-z0-9-]+-\d{3}$")
QUESTION_ID = re.compile(r"^iq-\d{3}$")
SEED = re.compile(r"^(?:(?:[1-9]|1[01])(?:\.\d+)?|11\.Q[1-6]|beyond)$")
CARD_POINTS = (2, 6)
QUESTION_POINTS = (2, 8)
MCQ_OPTIONS = (3, 5)


class CardError(ValueError):
    """A card or question breaks the schema. ``.file``, ``.card_id``, ``.field`` say where."""

    def __init__(self, file: str, card_id: str | None, field_name: str, message: str):
        where = f"{file}: card {card_id}" if card_id else file
        super().__init__(f"{where}: field {field_name}: {message}")
        self.file, self.card_id, self.field = file, card_id, field_name


@dataclass(frozen=True)
class Card:
    id: str
    kind: str
    tags: tuple[str, ...]
    difficulty: int
    seed: str
    page: str
    lab: str | None
    text: dict            # {"en": {"q", "a", "points"}, "zh": {...}}
    file: str
    options: tuple = ()   # mcq: ({"en", "zh", "correct", "why": {"en", "zh"}}, ...)
    calc: dict = field(default_factory=dict)
    field: str = ""
    unit: str = ""
    tolerance: float = 0.0

    @property
    def topic(self) -> str:
        """The primary topic (``tags[0]``); due counts and filters group by it."""
        return self.tags[0]

    def q(self, lang: str) -> str:
        return self.text[lang]["q"]

    def a(self, lang: str) -> str:
        return self.text[lang]["a"]

    def points(self, lang: str) -> list[str]:
        return list(self.text[lang]["points"])

    def correct_option(self) -> int:
        return next(i for i, o in enumerate(self.options) if o["correct"])


@dataclass(frozen=True)
class Question:
    """A mock-interview question (``content/interview/questions.yaml``)."""
    id: str
    topic: str
    difficulty: int
    card: str
    text: dict            # {"en": {"q", "points"}, "zh": {...}}
    file: str

    def q(self, lang: str) -> str:
        return self.text[lang]["q"]

    def points(self, lang: str) -> list[str]:
        return list(self.text[lang]["points"])


@dataclass
class Deck:
    cards: dict[str, Card]
    questions: dict[str, Question]

    def topics(self) -> list[str]:
        """Topic ids that have at least one card, in the canonical order."""
        present = {c.topic for c in self.cards.values()}
        return [t for t in TOPICS if t in present]

    def select(self, topics=None, kinds=None) -> list[Card]:
        """Cards whose primary topic is in ``topics`` (all if None) and kind in ``kinds``."""
        return [c for c in self.cards.values()
                if (not topics or c.topic in topics) and (not kinds or c.kind in kinds)]

    def get(self, card_id: str) -> Card:
        """The card ``card_id``; ``KeyError`` with a message that says it is unknown."""
        try:
            return self.cards[card_id]
        except KeyError:
            raise KeyError(f"unknown card id {card_id!r}: {len(self.cards)} cards are known, "
                           f"ids look like 'lora-001'") from None


# ---------------------------------------------------------------- validation helpers
def _need(cond: bool, file: str, cid, fld: str, msg: str) -> None:
    if not cond:
        raise CardError(file, cid, fld, msg)


def _text(v) -> bool:
    return isinstance(v, str) and bool(v.strip())


def _lang_block(raw: dict, file: str, cid: str, keys: tuple, n_points: tuple[int, int]) -> dict:
    out = {}
    for lg in LANGS:
        block = raw.get(lg)
        _need(isinstance(block, dict), file, cid, lg, f"missing language block {lg!r} (need en and zh)")
        for k in keys:
            _need(_text(block.get(k)), file, cid, f"{lg}.{k}", "missing or empty string")
        pts = block.get("points")
        lo, hi = n_points
        _need(isinstance(pts, list) and lo <= len(pts) <= hi, file, cid, f"{lg}.points",
              f"need a list of {lo}..{hi} points, got {pts!r:.60}")
        _need(all(_text(p) for p in pts), file, cid, f"{lg}.points", "every point must be a non-empty string")
        out[lg] = {**{k: block[k].strip() for k in keys}, "points": tuple(p.strip() for p in pts)}
    _need(len(out["en"]["points"]) == len(out["zh"]["points"]), file, cid, "zh.points",
          f"{len(out['zh']['points'])} points in zh but {len(out['en']['points'])} in en (same count required)")
    return out


def _options(raw, file: str, cid: str) -> tuple:
    lo, hi = MCQ_OPTIONS
    _need(isinstance(raw, list) and lo <= len(raw) <= hi, file, cid, "options",
          f"mcq needs {lo}..{hi} options, got {len(raw) if isinstance(raw, list) else raw!r}")
    opts = []
    for i, o in enumerate(raw):
        f = f"options[{i}]"
        _need(isinstance(o, dict), file, cid, f, "must be a map with en, zh, correct, why")
        for lg in LANGS:
            _need(_text(o.get(lg)), file, cid, f"{f}.{lg}", "missing or empty option text")
            why = o.get("why")
            _need(isinstance(why, dict) and _text(why.get(lg)), file, cid, f"{f}.why.{lg}",
                  "every option explains why it is right or wrong, in both languages")
        _need(isinstance(o.get("correct"), bool), file, cid, f"{f}.correct", "must be true or false")
        opts.append({"en": o["en"].strip(), "zh": o["zh"].strip(), "correct": o["correct"],
                     "why": {lg: o["why"][lg].strip() for lg in LANGS}})
    n = sum(o["correct"] for o in opts)
    _need(n == 1, file, cid, "options", f"exactly one option must be correct, found {n}")
    return tuple(opts)


def _card(raw, file: str, seen: dict) -> Card:
    _need(isinstance(raw, dict), file, None, "cards[]", f"each card must be a map, got {raw!r:.60}")
    cid = raw.get("id")
    _need(isinstance(cid, str) and bool(CARD_ID.match(cid)), file, cid, "id",
          f"{cid!r} must match {CARD_ID.pattern} (e.g. lora-007)")
    _need(cid not in seen, file, cid, "id", f"duplicate id, already used in {seen.get(cid)}")
    kind = raw.get("kind")
    _need(kind in KINDS, file, cid, "kind", f"{kind!r} is not allowed: one of {', '.join(KINDS)}")
    tags = raw.get("tags")
    _need(isinstance(tags, list) and tags and all(_text(t) for t in tags), file, cid, "tags",
          "need a non-empty list of strings")
    _need(tags[0] in TOPICS, file, cid, "tags[0]", f"{tags[0]!r} is not a topic id: one of {', '.join(TOPICS)}")
    diff = raw.get("difficulty")
    _need(diff in (1, 2, 3) and not isinstance(diff, bool), file, cid, "difficulty", f"{diff!r}: allowed 1, 2 or 3")
    seed = str(raw.get("seed", ""))
    _need(bool(SEED.match(seed)), file, cid, "seed", f"{seed!r}: allowed 'N', 'N.M' (N 1..11), '11.Qk' (k 1..6) or 'beyond'")
    page = raw.get("page")
    _need(page in PAGES, file, cid, "page", f"{page!r}: one of {', '.join(PAGES)}")
    lab = raw.get("lab")
    _need(lab is None or lab in LABS, file, cid, "lab", f"{lab!r}: null or one of {', '.join(LABS)}")
    text = _lang_block(raw, file, cid, ("q", "a"), CARD_POINTS)
    extra: dict[str, Any] = {}
    if kind == "mcq":
        extra["options"] = _options(raw.get("options"), file, cid)
    if kind == "numeric":
        calc, fld, unit, tol = raw.get("calc"), raw.get("field"), raw.get("unit"), raw.get("tolerance")
        _need(isinstance(calc, dict) and bool(calc), file, cid, "calc", "need a map of estimate() arguments")
        _need(_text(fld), file, cid, "field", "need a dotted path such as memory_bytes.total")
        _need(unit in UNITS, file, cid, "unit", f"{unit!r}: one of {', '.join(UNITS)}")
        _need(isinstance(tol, (int, float)) and not isinstance(tol, bool) and 0 < tol <= 1, file, cid,
              "tolerance", f"{tol!r}: a relative tolerance in (0, 1]")
        extra.update(calc=dict(calc), field=fld.strip(), unit=unit, tolerance=float(tol))
    return Card(id=cid, kind=kind, tags=tuple(tags), difficulty=diff, seed=seed, page=page, lab=lab,
                text=text, file=file, **extra)


def _question(raw, file: str, seen: dict) -> Question:
    _need(isinstance(raw, dict), file, None, "questions[]", f"each question must be a map, got {raw!r:.60}")
    qid = raw.get("id")
    _need(isinstance(qid, str) and bool(QUESTION_ID.match(qid)), file, qid, "id", f"{qid!r} must match {QUESTION_ID.pattern}")
    _need(qid not in seen, file, qid, "id", f"duplicate id, already used in {seen.get(qid)}")
    topic = raw.get("topic")
    _need(topic in TOPICS, file, qid, "topic", f"{topic!r}: one of {', '.join(TOPICS)}")
    diff = raw.get("difficulty")
    _need(diff in (1, 2, 3) and not isinstance(diff, bool), file, qid, "difficulty", f"{diff!r}: allowed 1, 2 or 3")
    _need(_text(raw.get("card")), file, qid, "card", "need the id of the related card")
    text = _lang_block(raw, file, qid, ("q",), QUESTION_POINTS)
    return Question(id=qid, topic=topic, difficulty=diff, card=raw["card"], text=text, file=file)


def _yaml(path: Path, root: Path) -> tuple[str, Any]:
    import yaml
    rel = str(path.relative_to(root.parent)) if root.parent in path.parents else str(path)
    try:
        return rel, yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise CardError(rel, None, "yaml", f"not valid YAML: {e}") from None


def load_deck(root: Path | str | None = None) -> Deck:
    """Read and validate every card and interview question under ``root``
    (default ``$PEFTLAB_CONTENT_DIR``, else the project's ``content/``)."""
    root = Path(root or os.environ.get(ENV_CONTENT) or CONTENT)
    cards: dict[str, Card] = {}
    seen: dict[str, str] = {}
    order = {t: i for i, t in enumerate(TOPICS)}  # canonical topic order: new cards come why-peft first
    for path in sorted((root / "cards").glob("*.yaml"), key=lambda p: (order.get(p.stem, len(order)), p.name)):
        rel, doc = _yaml(path, root)
        _need(isinstance(doc, dict) and isinstance(doc.get("cards"), list), rel, None, "cards",
              "file must be a map {topic: <id>, cards: [...]}")
        _need(doc.get("topic") == path.stem and path.stem in TOPICS, rel, None, "topic",
              f"{doc.get('topic')!r} must equal the file name and be one of {', '.join(TOPICS)}")
        for raw in doc["cards"]:
            card = _card(raw, rel, seen)
            cards[card.id], seen[card.id] = card, rel
    questions: dict[str, Question] = {}
    qpath = root / "interview" / "questions.yaml"
    if qpath.exists():
        rel, doc = _yaml(qpath, root)
        _need(isinstance(doc, dict) and isinstance(doc.get("questions"), list), rel, None, "questions",
              "file must be a map {questions: [...]}")
        qseen: dict[str, str] = {}
        for raw in doc["questions"]:
            q = _question(raw, rel, qseen)
            _need(q.card in cards, rel, q.id, "card", f"{q.card!r} is not a known card id")
            questions[q.id], qseen[q.id] = q, rel
    return Deck(cards=cards, questions=questions)


# ---------------------------------------------------------------- numeric answers
def _walk(result, path: str, card: Card) -> float:
    """Follow ``a.b.c`` through dicts (or attributes, if estimate() returns a dataclass)."""
    node: Any = result
    for part in path.strip().split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif not isinstance(node, dict) and hasattr(node, part):
            node = getattr(node, part)
        else:
            have = ", ".join(sorted(node)) if isinstance(node, dict) else type(node).__name__
            raise CardError(card.file, card.id, "field", f"{path!r}: no key {part!r} in estimate() result (have: {have})")
    if not isinstance(node, (int, float)) or isinstance(node, bool):
        raise CardError(card.file, card.id, "field", f"{path!r} is {node!r}, not a number")
    return float(node)


@functools.lru_cache(maxsize=256)
def _estimate(calc_json: str, estimator: Callable):
    """One ``estimate(**calc)`` per distinct calc: many cards share a configuration."""
    return estimator(**json.loads(calc_json))


def _default_estimator():
    try:
        from labs.budget import estimate
    except ImportError as e:
        raise RuntimeError(f"numeric cards need labs.budget.estimate, which could not be imported: {e}") from None
    return estimate


def numeric_answer(card: Card, estimator: Callable | None = None) -> float:
    """The answer of a numeric card in its ``unit``, computed by the calculator (cached per calc)."""
    if card.kind != "numeric":
        raise ValueError(f"card {card.id} is {card.kind!r}, not numeric")
    est = estimator or _default_estimator()
    try:
        result = _estimate(json.dumps(card.calc, sort_keys=True), est)
    except Exception as e:  # a bad calc argument: say which card carries it
        raise CardError(card.file, card.id, "calc", f"estimate(**{card.calc}) failed: {e}") from e
    parts = card.field.split("/")
    if len(parts) > 2:
        raise CardError(card.file, card.id, "field", f"{card.field!r}: at most one '/' (a ratio of two fields)")
    value = _walk(result, parts[0], card)
    if len(parts) == 2:
        den = _walk(result, parts[1], card)
        if den == 0:
            raise CardError(card.file, card.id, "field", f"{card.field!r}: denominator is zero")
        value /= den
    return value / UNITS[card.unit]


def parse_number(text: str) -> float:
    """A learner's typed number: '12.5', '1,024', '1e9', '12.5 GB' → float; ValueError names the input."""
    s = (text or "").strip().replace(",", "").replace("，", "")
    s = re.sub(r"\s*(GiB|GB|%|B)$", "", s, flags=re.IGNORECASE)
    if not s:
        raise ValueError("answer is empty: type a number such as 12.5")
    try:
        v = float(s)
    except ValueError:
        raise ValueError(f"answer {text!r} is not a number: type digits such as 12.5 or 1e9") from None
    if not math.isfinite(v):
        raise ValueError(f"answer {text!r} is not a finite number")
    return v


def within(given: float, expected: float, tolerance: float) -> bool:
    """Relative-tolerance check ``|given - expected| <= tolerance * |expected|``."""
    return abs(given - expected) <= tolerance * abs(expected) if expected else abs(given) <= tolerance


def stats(deck: Deck) -> list[dict]:
    """Per topic: cards by kind and how many have text in each language (every card needs both)."""
    rows = []
    for topic in deck.topics():
        cs = deck.select([topic])
        row = {"topic": topic, "cards": len(cs), **{k: sum(c.kind == k for c in cs) for k in KINDS}}
        row.update({lg: sum(bool(c.q(lg)) for c in cs) for lg in LANGS})
        row["questions"] = sum(q.topic == topic for q in deck.questions.values())
        rows.append(row)
    return rows
