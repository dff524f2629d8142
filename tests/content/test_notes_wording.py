"""No user-facing text calls the interview notes "the seed" / "种子笔记": learners see "the interview notes" / "面试笔记".

Scanned: every Markdown page under content/, every string VALUE in content/**/*.yaml (keys such as a card's
``seed:`` field or ``calc.seed`` are internal names, and YAML comments are for developers), and every string
literal in app/**/*.py except docstrings (code comments are not strings). A run's random seed (随机种子, "the
same seed", "seed {seed}") is a different word and stays. Deliberate exceptions: content/SCHEMA.md documents the
internal ``seed`` key for developers.
"""
import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXEMPT = {"content/SCHEMA.md"}      # developer documentation of the internal `seed` key, not shown in the app
FORBIDDEN = [
    re.compile(r"\bthe seed\b(?!\s+(?:value|number)\b)", re.I),
    re.compile(r"\bseed[- ]notes?\b", re.I),
    re.compile(r"\bseed's\b", re.I),
    re.compile(r"\bseed (?:table|section|formula|diagram|claim|summary|text|column)s?\b", re.I),
    re.compile(r"^seed \(", re.I),              # a table header such as "seed (~8 B/param)"
    re.compile(r"种子(?:笔记|的(?:表|说法|公式|示意图|概括)|里|中说|说|第)"),
    re.compile(r"原笔记"),
]


def offending(text: str) -> list[str]:
    return [m.group(0) for rx in FORBIDDEN for m in rx.finditer(text)]


def _yaml_strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _yaml_strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _yaml_strings(v)


def _py_strings(source: str):
    tree = ast.parse(source)
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = getattr(node, "body", [])
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.value


def user_facing_texts():
    for path in sorted(ROOT.glob("content/**/*.md")):
        rel = str(path.relative_to(ROOT))
        if rel not in EXEMPT:
            for line in path.read_text(encoding="utf-8").splitlines():
                yield rel, line.strip("| ")
    for path in sorted(ROOT.glob("content/**/*.yaml")):
        for s in _yaml_strings(yaml.safe_load(path.read_text(encoding="utf-8"))):
            yield str(path.relative_to(ROOT)), s
    for path in sorted(ROOT.glob("app/**/*.py")):
        for s in _py_strings(path.read_text(encoding="utf-8")):
            yield str(path.relative_to(ROOT)), s


def test_no_user_facing_text_calls_the_notes_the_seed():
    hits = [(f, s[:120], offending(s)) for f, s in user_facing_texts() if offending(s)]
    assert hits == [], hits


@pytest.mark.parametrize("text", [
    "The seed's table says 56 GB", "see the seed notes, section 9", "Seed notes, section 9",
    "| seed (~8 B/param) |", "种子笔记第 9 节", "原笔记说注意力层", "种子的表格", "the seed formula is off",
])
def test_the_scan_catches_each_form(text):
    assert offending(text.strip("| "))


@pytest.mark.parametrize("text", [
    "with the same seed and the same batches", "seed {seed}", "random seed (same batches for every method)",
    "同样的步数、批次和随机种子", "种子 {seed}", "换一个种子得到 0.78", "A second seed gave 0.78",
    "the interview notes' table", "面试笔记第 9 节",
])
def test_a_runs_random_seed_is_not_flagged(text):
    assert offending(text) == []
