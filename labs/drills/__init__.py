"""Drills: write a PEFT method yourself, graded against the project's reference implementations.

    content/drills/<id>/drill.yaml    statement, hints, explanation, links (zh + en)    ─┐ data
    content/drills/<id>/starter.py    signature + docstring with shapes                   │
    content/drills/<id>/solution.py   a reference solution for the learner to read      ─┘
    labs/drills/graders/<topic>.py    fresh random cases; expected values from labs.methods,
                                      peftlab_kernels and labs.budget (never a copy of them)
    labs/drills/sandbox.py            the learner's file runs only there (no network, no project)
    labs/drills/runner.py             check(id, code) -> Report; `python -m labs drill ...`

This module only reads YAML (no torch), so `python -m labs drill list/show` stays instant and a check can
start the sandbox before anything heavy is imported.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DRILLS_DIR = ROOT / "content" / "drills"
LANGS = ("en", "zh")
FIELDS = ("id", "topic", "difficulty", "title", "function", "statement", "hints", "explanation", "page", "lab",
          "cards", "grader")


class DrillError(ValueError):
    """A malformed drill folder; the message names the drill, the field and what is allowed."""


@dataclass(frozen=True)
class Drill:
    id: str
    topic: str
    difficulty: int              # 1 warm-up, 2 interview, 3 hard
    title: dict                  # {en, zh}
    functions: tuple[str, ...]   # the names the file must define
    statement: dict
    hints: tuple[dict, ...]      # revealed one at a time
    explanation: dict
    page: str                    # concept page id (content/pages/index.yaml)
    lab: str | None              # lab id (labs.experiments)
    cards: tuple[str, ...]       # flashcard ids scheduled for review after a failed attempt
    grader: str                  # "module:function" under labs.drills.graders
    perf: bool                   # kernel drill: also shows time relative to our reference
    folder: Path

    def starter(self) -> str:
        return (self.folder / "starter.py").read_text(encoding="utf-8")

    def solution(self) -> str:
        return (self.folder / "solution.py").read_text(encoding="utf-8")

    def text(self, field: str, lang: str) -> str:
        return getattr(self, field)[lang]


def _fail(did: str, field: str, msg: str) -> None:
    raise DrillError(f"content/drills/{did}/drill.yaml: field {field}: {msg}")


def _bilingual(raw: dict, did: str, field: str) -> dict:
    v = raw.get(field)
    if not (isinstance(v, dict) and all(isinstance(v.get(lg), str) and v[lg].strip() for lg in LANGS)):
        _fail(did, field, f"{v!r:.60}: need {{en: ..., zh: ...}}, both non-empty")
    return {lg: v[lg].strip() for lg in LANGS}


def _load(folder: Path) -> Drill:
    did = folder.name
    raw = yaml.safe_load((folder / "drill.yaml").read_text(encoding="utf-8")) or {}
    missing = [f for f in FIELDS if f not in raw]
    if missing:
        _fail(did, missing[0], f"missing; required: {', '.join(FIELDS)}")
    if raw["id"] != did:
        _fail(did, "id", f"{raw['id']!r} must equal the folder name {did!r}")
    if raw["difficulty"] not in (1, 2, 3):
        _fail(did, "difficulty", f"{raw['difficulty']!r}: allowed 1, 2, 3")
    hints = raw["hints"]
    if not isinstance(hints, list) or not 2 <= len(hints) <= 3:
        _fail(did, "hints", "need 2 or 3 hints")
    fn = raw["function"]
    functions = tuple(fn) if isinstance(fn, list) else (fn,)
    for name in ("starter.py", "solution.py"):
        if not (folder / name).is_file():
            _fail(did, name, f"content/drills/{did}/{name} is missing")
    return Drill(id=did, topic=str(raw["topic"]), difficulty=raw["difficulty"],
                 title=_bilingual(raw, did, "title"), functions=functions,
                 statement=_bilingual(raw, did, "statement"),
                 hints=tuple(_bilingual({"hints": h}, did, "hints") for h in hints),
                 explanation=_bilingual(raw, did, "explanation"), page=str(raw["page"]),
                 lab=raw.get("lab"), cards=tuple(raw.get("cards") or ()), grader=str(raw["grader"]),
                 perf=bool(raw.get("perf", False)), folder=folder)


@functools.lru_cache(maxsize=1)
def _all() -> dict[str, Drill]:
    drills = [_load(f) for f in sorted(DRILLS_DIR.iterdir()) if (f / "drill.yaml").is_file()]
    order = {"lora": 0, "rslora": 0, "lora-plus": 1, "nf4": 2, "qlora": 2, "dora": 3, "adalora": 4,
             "soft-prompts": 5, "adapters": 6, "serving": 7, "memory": 8}
    drills.sort(key=lambda d: (order.get(d.topic, 9), d.difficulty, d.id))
    return {d.id: d for d in drills}


def drill_ids() -> list[str]:
    return list(_all())


def get_drill(drill_id: str) -> Drill:
    drills = _all()
    if drill_id not in drills:
        raise KeyError(f"drill = {drill_id!r} is unknown: allowed {', '.join(drills)}")
    return drills[drill_id]


def drills_for_page(page_id: str) -> list[Drill]:
    return [d for d in _all().values() if d.page == page_id]
