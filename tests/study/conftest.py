"""Fixtures for study mode: a throw-away data folder and a tiny fixture deck for schema-error tests.

Behaviour tests run against the real ``content/`` deck; the fixture deck exists only where a test
must write a broken card or needs a calculator that is not ``labs.budget``.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml


def _text(tag: str, n: int = 2) -> dict:
    return {"en": {"q": f"Q {tag}?", "a": f"A {tag}.", "points": [f"point {i} of {tag}" for i in range(n)]},
            "zh": {"q": f"问题 {tag}？", "a": f"答案 {tag}。", "points": [f"{tag} 的要点 {i}" for i in range(n)]}}


def fixture_cards() -> list[dict]:
    base = {"tags": ["lora"], "difficulty": 1, "seed": "2.1", "page": "lora", "lab": "lora"}
    mcq_opts = [{"en": f"opt {i}", "zh": f"选项 {i}", "correct": i == 1,
                 "why": {"en": f"why {i}", "zh": f"原因 {i}"}} for i in range(3)]
    return [
        {"id": "lora-001", "kind": "open", **base, **_text("open", 3)},
        {"id": "lora-002", "kind": "mcq", **base, **_text("mcq"), "options": mcq_opts},
        {"id": "lora-003", "kind": "numeric", **base, **_text("numeric"),
         "calc": {"model": "toy", "params": 7e9}, "field": "memory_bytes.total", "unit": "GB", "tolerance": 0.05},
    ]


def fake_estimate(model: str, params: float) -> dict:
    """A stand-in calculator: 16 bytes per parameter."""
    return {"memory_bytes": {"total": 16 * params}, "trainable_params": params}


def fixture_questions() -> list[dict]:
    return [{"id": "iq-001", "topic": "lora", "difficulty": 2, "card": "lora-001",
             "en": {"q": "Walk me through LoRA.", "points": ["low-rank update", "B = 0 at init", "merge"]},
             "zh": {"q": "讲讲 LoRA。", "points": ["低秩更新", "B 初始化为 0", "可合并"]}}]


def write_content(root: Path, cards: list[dict] | None = None, questions: list[dict] | None = None) -> Path:
    (root / "cards").mkdir(parents=True, exist_ok=True)
    doc = {"topic": "lora", "cards": fixture_cards() if cards is None else cards}
    (root / "cards" / "lora.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    if questions is not None:
        (root / "interview").mkdir(exist_ok=True)
        (root / "interview" / "questions.yaml").write_text(
            yaml.safe_dump({"questions": questions}, allow_unicode=True), encoding="utf-8")
    return root


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "data"
    monkeypatch.setenv("PEFTLAB_DATA_DIR", str(d))
    return d


@pytest.fixture
def fixture_root(tmp_path) -> Path:
    return write_content(tmp_path / "content")
