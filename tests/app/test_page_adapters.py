"""The adapters page: the instant picture's widgets (Houlsby counter, LLaMA-Adapter gate on real weights),
starting the lab, and drawing a stored finished run."""
import pytest

from tests.app.conftest import app_page, drawn_run, metric

TINY = {"steps": 2, "eval_every": 2, "eval_limit": 8, "batch_size": 2, "bottleneck": 2, "adapter_layers": 1,
        "adapter_len": 2, "lora_r": 1, "latency_batch": 2, "new_tokens": 1, "latency_repeats": 1}


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_page_renders_in_both_languages(data_dir, lang):
    at = app_page("adapters", lang).run()
    assert not at.exception, at.exception
    assert not at.error
    assert any("flashcards?card=" in m.value for m in at.markdown)


def test_houlsby_counter_follows_the_formula(data_dir):
    at = app_page("adapters").run()
    at.selectbox(key="ad.model").set_value("llama-2-7b")
    at.slider(key="ad.m").set_value(64)
    at.run()
    assert not at.exception, at.exception
    assert metric(at, "approximation") == "33,554,432"             # 4 · 32 · 4096 · 64, the math section's example
    assert metric(at, "adapter parameters") == f"{32 * (4 * 4096 * 64 + 2 * 4096 + 2 * 64):,}"


def test_llama_adapter_gate_on_real_weights(data_dir):
    at = app_page("adapters").run()
    at.radio(key="ad.design").set_value("llama-adapter").run()
    assert not at.exception, at.exception
    closed = next(c.value for c in at.caption if "prompts" in c.value)
    assert "0.000 = g" in closed and " 0.0% " in closed             # a closed gate: the prompts add nothing
    at.slider(key="ad.gate").set_value(0.5).run()
    opened = next(c.value for c in at.caption if "prompts" in c.value)
    assert "0.500 = g" in opened and " 0.0% " not in opened
    at.selectbox(key="ad.model").set_value("llama-2-7b").run()
    at.slider(key="ad.layers").set_value(30).run()
    assert metric(at, "parameters") == f"{1_228_800 + 30:,}"        # the paper's 1.2M for LLaMA-7B


def test_finished_run_is_drawn(data_dir):
    at, rid, _ = drawn_run(app_page("adapters"), "adapters", TINY)
    tables = [df.value for df in at.dataframe]
    params = next(t for t in tables if "formula value" in t.columns)
    assert list(params["method"]) == ["Houlsby", "LLaMA-Adapter", "LoRA"]
    latency = next(t for t in tables if "vs merged LoRA" in t.columns)
    assert sorted(set(latency["batch"])) == [1, 2]
    assert any("gates after every step" in m.value for m in at.markdown)
