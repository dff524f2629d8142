"""Every drill: its folder is complete and bilingual, its links resolve, its reference solution passes its grader
and its starter fails with a clear message. The graders run here with `run_trusted` (our own files only; the
sandbox itself is tested in test_sandbox.py and end to end in test_drill_cli.py)."""
from __future__ import annotations

import ast

import pytest
import torch

from app import page_registry
from app.study.cards import load_deck
from labs.drills import drill_ids, get_drill
from labs.drills.runner import check, run_trusted
from labs.experiments import lab_ids
from peftlab_kernels.codebooks import nf4_codebook

IDS = drill_ids()
FIXED = {"lora-forward": ("lora_forward", ["x", "W0", "b", "A", "B", "alpha", "r", "use_rslora"]),
         "nf4-quantize": ("quantize_nf4", ["w", "blocksize"]),
         "dora-forward": ("dora_forward", ["x", "W0", "A", "B", "m", "alpha", "r"])}


def test_the_issue_s_drill_set_is_there():
    assert len(IDS) >= 14
    assert set(FIXED) <= set(IDS)
    topics = {get_drill(i).topic for i in IDS}
    assert {"lora", "lora-plus", "nf4", "dora", "adalora", "soft-prompts", "adapters", "serving", "memory"} <= topics


@pytest.fixture(scope="module")
def deck():
    return load_deck()


@pytest.mark.parametrize("drill_id", IDS)
def test_folder_links_and_signatures(drill_id, deck):
    d = get_drill(drill_id)
    assert 2 <= len(d.hints) <= 3
    for field in ("title", "statement", "explanation"):
        assert d.text(field, "en") != d.text(field, "zh")
    assert d.page in page_registry.page_ids()
    assert d.lab is None or d.lab in lab_ids()
    assert d.cards and all(c in deck.cards for c in d.cards), d.cards
    for source in (d.starter(), d.solution()):
        defined = {n.name: [a.arg for a in n.args.args] for n in ast.parse(source).body
                   if isinstance(n, ast.FunctionDef)}
        assert set(d.functions) <= set(defined), (drill_id, defined)
        if drill_id in FIXED:
            name, params = FIXED[drill_id]
            assert defined[name] == params                     # the issue's contract, exactly


@pytest.mark.parametrize("drill_id", IDS)
def test_reference_passes_and_starter_fails(drill_id):
    d = get_drill(drill_id)
    ok = check(drill_id, d.solution(), runner=run_trusted)
    assert ok.passed, [(t.name, t.message) for t in ok.tests if not t.passed]
    assert len(ok.tests) >= 3
    bad = check(drill_id, d.starter(), runner=run_trusted)
    assert not bad.passed and not any(t.passed for t in bad.tests)
    assert all("NotImplementedError" in t.message and "called " in t.message for t in bad.tests), bad.tests[0].message


def test_cases_are_fresh_each_run_and_reproducible_by_seed():
    a = check("lora-forward", get_drill("lora-forward").solution(), runner=run_trusted)
    b = check("lora-forward", get_drill("lora-forward").solution(), runner=run_trusted)
    assert a.seed != b.seed and [t.name for t in a.tests] != [t.name for t in b.tests]
    c = check("lora-forward", get_drill("lora-forward").solution(), runner=run_trusted, seed=a.seed)
    assert [t.name for t in c.tests] == [t.name for t in a.tests]


def test_nf4_levels_in_the_starters_are_the_codebook():
    for drill_id in ("nf4-quantize", "nf4-dequantize-dq"):
        ns: dict = {}
        exec(get_drill(drill_id).starter(), ns)
        assert torch.equal(ns["NF4_LEVELS"], nf4_codebook())


def test_zh_report_messages():
    wrong = get_drill("lora-forward").solution().replace("if b is not None:\n        y = y + b", "")
    r = check("lora-forward", wrong, lang="zh", runner=run_trusted, seed=7)
    failed = [t for t in r.tests if not t.passed]
    assert failed and all("调用 lora_forward(" in t.message for t in failed)
    assert any("提示：漏了偏置 b" in t.message for t in failed)


def test_oversized_code_is_refused_before_anything_runs():
    r = check("kv-cache-gqa", "#" * (300 * 1024), runner=run_trusted)
    assert r.status == "refused" and "allowed at most" in r.message and not r.passed
