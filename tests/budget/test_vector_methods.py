"""(IA)³ and VeRA in the calculator: counted = formula (peft and our own modules are the oracles), formula =
trace, the Korthikanti et al. closed form for activations per layer, and the calculator page showing both."""
from pathlib import Path

import pytest
import torch

from labs.budget import estimate
from labs.budget.activations import korthikanti_layer, korthikanti_total
from labs.budget.methods import trainable_params
from labs.budget.params import hf_config
from labs.budget.presets import ArchConfig, BudgetError
from labs.methods import apply_method, trainable_report

peft = pytest.importorskip("peft")
TINY = ArchConfig("tiny", 128, 64, 96, 3, 4, 2)          # GQA, non-square MLP, untied
SMALL = ArchConfig("small", 512, 128, 352, 3, 4, 2)
PAGES = Path(__file__).resolve().parents[2] / "app" / "pages"


def _model():
    from transformers import AutoModelForCausalLM
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(hf_config(TINY))


CASES = [  # (method, budget kwargs, our apply kwargs, peft config)
    ("ia3", dict(targets="k_proj,v_proj,down_proj"),
     dict(target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"]),
     lambda: peft.IA3Config(target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"])),
    ("ia3", dict(targets="all-linear", feedforward="gate_proj,up_proj"),
     dict(target_modules="all-linear", feedforward_modules=["gate_proj", "up_proj"]),
     lambda: peft.IA3Config(target_modules="all-linear", feedforward_modules=["gate_proj", "up_proj"])),
    ("vera", dict(rank=8, targets="q_proj,v_proj"), dict(r=8, target_modules=["q_proj", "v_proj"]),
     lambda: peft.VeraConfig(r=8, target_modules=["q_proj", "v_proj"])),
    ("vera", dict(rank=5, targets="all-linear"), dict(r=5, target_modules="all-linear"),
     lambda: peft.VeraConfig(r=5, target_modules="all-linear")),
]


@pytest.mark.parametrize("method,budget_kw,ours_kw,peft_cfg", CASES)
def test_counted_equals_formula(method, budget_kw, ours_kw, peft_cfg):
    info = trainable_params(TINY, method, **budget_kw)
    pm = peft.get_peft_model(_model(), peft_cfg())
    ours = apply_method(_model(), method, **ours_kw)
    assert info["trainable"] == pm.get_nb_trainable_parameters()[0] == trainable_report(ours)["trainable"]
    if method == "vera":      # the shared frozen projections, counted as frozen weights
        assert info["frozen_extra"] == ours.vera_projections.vera_A.numel() + ours.vera_projections.vera_B.numel()
        assert info["frozen_extra"] == pm.base_model.vera_A["default"].numel() + pm.base_model.vera_B["default"].numel()


def test_bad_inputs_name_the_field():
    with pytest.raises(BudgetError) as e:
        trainable_params(TINY, "ia3", targets="k_proj,v_proj", feedforward="down_proj")
    assert e.value.field == "feedforward" and "subset" in str(e.value)
    with pytest.raises(BudgetError) as e:
        trainable_params(TINY, "vera", rank=0)
    assert e.value.field == "rank"
    assert trainable_params(TINY, "ia3", targets="q_proj,v_proj")["feedforward"] == ()   # default: down_proj if targeted


@pytest.mark.parametrize("method,kw", [
    ("ia3", dict(targets="all-linear", feedforward="up_proj,down_proj", checkpointing="none", flash=False)),
    ("vera", dict(targets="all-linear", rank=16, checkpointing="none")),
    ("vera", dict(targets="q_proj,v_proj", rank=8, checkpointing="full", precision="fp32")),
])
def test_formula_matches_trace(method, kw):
    r = estimate(SMALL, method, batch=2, seq=64, trace=True, **kw)
    m, t = r["memory_bytes"], r["trace"]
    states = m["weights"] + m["quant_constants"] + m["gradients"] + m["optimizer"]
    assert states / t["model_states"] == pytest.approx(1.0, abs=0.02)
    assert (m["activations"] + m["logits"]) / t["activations_peak"] == pytest.approx(1.0, abs=0.15)
    if kw["checkpointing"] == "none":       # one layer's saved set: our walk of the layer vs PyTorch's accounting
        assert sum(r["activation_per_layer"].values()) == pytest.approx(t["activations_per_layer"], rel=0.05)


def test_korthikanti_closed_form():
    gpt3 = ArchConfig("gpt3-like", 50257, 12288, 4 * 12288, 96, 96, 96)
    s, b = 2048, 1
    parts = korthikanti_layer(gpt3, b, s)
    assert sum(parts.values()) == s * b * 12288 * (34 + 5 * 96 * s / 12288)           # the itemised terms
    assert korthikanti_total(gpt3, b, s) == s * b * 12288 * 114       # 5as/h = 80 at s = 2048: scores dominate
    assert korthikanti_total(gpt3, b, s, recompute=True) == 2 * s * b * 12288
    assert korthikanti_total(gpt3, 2, s) == 2 * korthikanti_total(gpt3, 1, s)   # linear in b, quadratic in s
    assert korthikanti_total(gpt3, 1, 2 * s) > 2 * korthikanti_total(gpt3, 1, s)


def test_calculator_page_sizes_vera_and_shows_the_closed_form_next_to_the_trace():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(PAGES / "calculator.py"), default_timeout=60)
    at.run()
    at.selectbox(key="calc_model").set_value("qwen2.5-0.5b")
    at.number_input(key="calc_seq").set_value(64)
    next(b for b in at.selectbox if b.label == "Gradient checkpointing").set_value("none")
    at.selectbox(key="calc_method").set_value("vera").run()
    assert not at.exception
    want = estimate("qwen2.5-0.5b", "vera", rank=256, targets="q_proj,v_proj", seq=64)["trainable_params"]
    assert any(f"{want:,}" == m.value for m in at.metric)
    at.button[0].click().run(timeout=120)
    assert not at.exception
    table = at.dataframe[-1].value
    row = [i for i in table.index if "per layer" in i or "每层" in i]
    assert row and table.loc[row[0]].iloc[0] == pytest.approx(table.loc[row[0]].iloc[1], rel=0.05)
    assert any("Korthikanti" in c.value and "34 + 5·a·s/h" in c.value for c in at.caption)
