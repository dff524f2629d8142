"""The calculator and decision-guide pages render, react to inputs and never show a traceback."""
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from labs.budget.decide import recommend
from labs.budget.presets import BudgetError

PAGES = Path(__file__).resolve().parents[2] / "app" / "pages"


def _calc():
    at = AppTest.from_file(str(PAGES / "calculator.py"), default_timeout=60)
    at.run()
    return at


def test_calculator_renders_numbers():
    at = _calc()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert any("6.738" in v for v in metrics.values())          # llama-2-7b parameters, from the formula


def test_calculator_reacts_to_method_and_shows_errors_not_tracebacks():
    at = _calc()
    before = [m.value for m in at.metric]
    at.selectbox(key="calc_method").set_value("full").run()
    assert not at.exception
    assert [m.value for m in at.metric] != before
    at.selectbox(key="calc_method").set_value("lora").run()
    at.number_input(key="calc_rank").set_value(4096).run()               # rank 4096 fits q_proj but ...
    at.selectbox(key="calc_model").set_value("llama-3-8b").run()          # ... not k_proj (1024 x 4096) of Llama-3
    assert not at.exception
    assert any("rank" in e.value for e in at.error)


def test_trace_button_shows_formula_next_to_trace():
    at = _calc()
    at.selectbox(key="calc_model").set_value("qwen2.5-0.5b")
    at.number_input(key="calc_seq").set_value(64)
    at.run()
    at.button[0].click().run(timeout=120)
    assert not at.exception
    table = at.dataframe[-1].value
    states = table.loc["model states"]
    assert states.iloc[0] == pytest.approx(states.iloc[1], rel=0.02)   # formula vs traced, GB


def test_trace_button_on_untraceable_method_explains():
    at = _calc()
    at.selectbox(key="calc_method").set_value("prefix").run()
    at.button[0].click().run()
    assert not at.exception and len(at.info) == 1


def test_decision_guide_renders_and_recommends():
    at = AppTest.from_file(str(PAGES / "decision_guide.py"), default_timeout=60)
    at.run()
    assert not at.exception
    assert any("LORA" in m.value.upper() or "QLORA" in m.value.upper() for m in list(at.markdown) + list(at.success))


@pytest.mark.parametrize("gpu,model,kw,expect", [
    (24, "llama-2-70b", {}, "qlora"),
    (48, "llama-2-70b", {}, "qlora"),
    (192, "llama-2-7b", {"best_quality": True, "data": "large"}, "full"),
    (80, "llama-2-13b", {"best_quality": True}, "dora"),
    (80, "llama-2-7b", {}, "lora"),
])
def test_recommend_rules(gpu, model, kw, expect):
    r = recommend(gpu, model, **kw)
    assert r["method"] == expect
    if expect != "qlora" or gpu >= 48:
        assert r["fits"]


def test_recommend_bad_input():
    with pytest.raises(BudgetError) as e:
        recommend(24, "llama-2-7b", task="poetry")
    assert e.value.field == "task"


@pytest.mark.parametrize("page", ["calculator.py", "decision_guide.py"])
def test_pages_in_chinese(page):
    at = AppTest.from_file(str(PAGES / page), default_timeout=60)
    at.session_state["lang"] = "zh"
    at.run()
    assert not at.exception
    assert any("\u4e00" <= ch <= "\u9fff" for ch in at.title[0].value)


def test_decision_guide_wizard_changes_recommendation():
    at = AppTest.from_file(str(PAGES / "decision_guide.py"), default_timeout=60)
    at.run()
    at.selectbox(key="dg_model").set_value("llama-2-70b")        # 70B on a 24 GB card: QLoRA, and it says it won't fit
    at.button[0].click().run()
    assert not at.exception
    assert "QLORA" in at.success[0].value
