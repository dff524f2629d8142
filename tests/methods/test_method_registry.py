"""labs.methods.registry is the one list of methods: the package, the trade-off table, the calculator and the
decision guide read it, none keeps its own copy, and every spec's functions and files resolve. Each mergeable
method's `merge` folds a non-trivial adapter into plain weights without changing the output."""
from __future__ import annotations

import ast
import copy
from pathlib import Path

import pytest
import torch

import labs.methods as methods
from labs import budget, compare
from labs.budget.methods import trainable_params
from labs.budget.presets import get_arch
from labs.methods import io
from labs.methods.registry import BUDGET_FORMULAS, COMPARED, METHODS, SPECS, settings_for
from tests.methods.helpers import batch, max_diff, randomize_, twins

ROOT = Path(__file__).resolve().parents[2]
# the modules that used to keep their own method lists; a literal list of four or more method names there is a
# copy of the registry (a chosen few to plot or link, e.g. ("full", "lora", "qlora"), is not)
CONSUMERS = ("labs/compare.py", "labs/budget/methods.py", "labs/budget/__init__.py", "app/pages/calculator.py",
             "app/pages/decision_guide.py", "labs/methods/__init__.py", "labs/methods/io.py")


def test_the_package_re_exports_the_registry():
    assert methods.METHODS == METHODS == tuple(n for n, s in SPECS.items() if s.apply)
    assert methods.SPECS is SPECS and "full" not in METHODS
    with pytest.raises(ValueError, match="method='bitfit'"):
        methods.spec("bitfit")


def test_every_spec_resolves():
    from app import page_registry

    for name, s in SPECS.items():
        assert s.label["en"].strip() and s.label["zh"].strip(), name
        assert 1e-5 <= s.lr <= 1e-1, (name, s.lr)
        if s.apply:
            assert callable(s.function("apply")), name
        if s.merge:
            assert callable(s.function("merge")), name
        for path in s.code + s.kernels:
            assert (ROOT / path).is_file(), (name, path)
        if s.page:
            page_registry.get(s.page)                       # KeyError names the page if it is not registered


def test_consumers_read_the_registry():
    assert compare.METHODS == COMPARED and set(compare.LR) == set(COMPARED)
    assert budget.METHODS == BUDGET_FORMULAS
    for path in CONSUMERS:
        for node in ast.walk(ast.parse((ROOT / path).read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                names = [e.value for e in node.elts if isinstance(e, ast.Constant) and e.value in SPECS]
                assert len(names) < 4, f"{path}:{node.lineno} lists methods {names}: read labs.methods.registry"


def test_budget_formulas_are_exactly_the_registry_s():
    """Every formula a spec names is implemented, and trainable_params branches on no name the registry lacks."""
    arch = get_arch("llama-2-7b")
    settings = compare.CompareConfig()
    for name, s in SPECS.items():
        if s.budget:
            assert trainable_params(arch, s.budget, **s.budget_kwargs(settings))["trainable"] > 0, name
    src = ast.parse((ROOT / "labs/budget/methods.py").read_text(encoding="utf-8"))
    fn = next(n for n in ast.walk(src) if isinstance(n, ast.FunctionDef) and n.name == "trainable_params")
    compared = {c.value for n in ast.walk(fn) if isinstance(n, ast.Compare)
                for side in [n.left, *n.comparators] for c in ast.walk(side)
                if isinstance(c, ast.Constant) and isinstance(c.value, str)}
    assert compared - {"full"} and compared <= set(BUDGET_FORMULAS), compared - set(BUDGET_FORMULAS)


def test_compare_builds_every_method_through_its_spec():
    """labs.compare.build gives each compared method its registry apply with the shared settings."""
    cfg = compare.CompareConfig(steps=4)
    kwargs = compare.method_settings(cfg)
    for name in COMPARED:
        if SPECS[name].apply:
            got = settings_for(name, kwargs)
            assert set(got) == set(SPECS[name].settings), (name, set(SPECS[name].settings) - set(got))


MERGE_CFG = {"lora": dict(r=2, lora_alpha=4), "rslora": dict(r=2, lora_alpha=4), "dora": dict(r=2, lora_alpha=4),
             "qlora": dict(r=2, lora_alpha=4, target_modules=["q_proj"], blocksize=32),
             "adalora": dict(total_step=4, init_r=3, target_r=1, target_modules=["q_proj", "v_proj"]),
             "ia3": dict(), "vera": dict(r=4), "pissa": dict(r=2, lora_alpha=4),
             "loftq": dict(r=2, lora_alpha=4, target_modules=["q_proj"], blocksize=32)}


@pytest.mark.parametrize("name", [n for n, s in SPECS.items() if s.mergeable and s.apply])
def test_merge_folds_a_trained_adapter_without_changing_the_output(name):
    assert name in MERGE_CFG, f"add a tiny config for {name!r} to MERGE_CFG"
    model, base = twins()
    ids, mask = batch()
    model = methods.apply_method(model, name, **MERGE_CFG[name])
    randomize_([p for p in model.parameters() if p.requires_grad], std=0.05)    # a non-trivial adapter
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=mask).logits
        assert max_diff(before, base(input_ids=ids, attention_mask=mask).logits) > 1e-3, "the adapter does nothing"
        merged = SPECS[name].function("merge")(copy.deepcopy(model))
        after = merged(input_ids=ids, attention_mask=mask).logits
    assert not any(p.requires_grad for p in merged.parameters()) or name == "full"
    assert max_diff(after, before) <= 1e-4
    assert all(type(m).__name__ in ("Linear", "Embedding") or list(m.children()) or not list(m.parameters())
               or "Norm" in type(m).__name__ or "Rotary" in type(m).__name__ for m in merged.modules()), \
        {type(m).__name__ for m in merged.modules()}


def test_io_knows_only_registered_methods():
    assert set(io.LORA_METHODS) <= set(METHODS)
