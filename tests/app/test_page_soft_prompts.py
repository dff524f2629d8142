"""The soft-prompts page: the instant picture's widgets, starting the lab, and drawing a stored finished run."""
import pytest

from tests.app.conftest import app_page, drawn_run, metric

TINY = {"steps": 1, "eval_every": 1, "eval_limit": 8, "batch_size": 2, "num_virtual_tokens": 3,
        "encoder_hidden_size": 4, "lora_r": 1, "new_tokens": 1, "latency_repeats": 1}


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_page_renders_in_both_languages(data_dir, lang):
    at = app_page("soft_prompts", lang).run()
    assert not at.exception, at.exception
    assert not at.error
    assert len(at.metric) == 3
    assert any("flashcards?card=" in m.value for m in at.markdown)


def test_picture_counts_follow_model_and_method(data_dir):
    at = app_page("soft_prompts").run()
    at.selectbox(key="sp.model").set_value("llama-3-8b")
    at.radio(key="sp.method").set_value("prefix")
    at.slider(key="sp.p").set_value(20)
    at.run()
    assert not at.exception, at.exception
    assert metric(at, "trainable") == "1,310,720"                 # 20 · 32 · 2 · (8 KV heads · 128)
    assert any("5,242,880" in c.value for c in at.caption)        # the hidden-size formula, 4× more
    at.selectbox(key="sp.model").set_value("llama-2-7b")
    at.radio(key="sp.method").set_value("prompt")
    at.run()
    assert metric(at, "trainable") == "81,920"                    # 20 · 4096


def test_request_longer_than_the_context_is_an_error(data_dir):
    at = app_page("soft_prompts").run()
    at.selectbox(key="sp.model").set_value("llama-65b").run()     # 2048 positions
    at.slider(key="sp.p").set_value(512)
    at.slider(key="sp.n").set_value(2000)
    at.run()
    assert not at.exception
    assert any("p + n" in e.value and "2,048" in e.value for e in at.error)


def test_finished_run_is_drawn(data_dir):
    at, rid, result = drawn_run(app_page("soft_prompts"), "soft-prompts", TINY)
    tables = [df.value for df in at.dataframe]
    params = next(t for t in tables if "formula value" in t.columns)
    assert list(params["trainable (counted)"]) == [v["trainable_params"] for v in result["variants"].values()]
    latency = next(t for t in tables if "extra positions" in t.columns)
    assert list(latency["extra positions"]) == [0, 3, 3, 3, 0]     # base, prompt, prefix, P-tuning v2, LoRA
    assert any("cannot be merged" in m.value for m in at.markdown)
