"""The NF4 page's MiniLM switch: the picture on MiniLM's real weights, the labs started with model = minilm,
and stored finished MiniLM runs drawn with the model they used."""
import pytest

from labs import jobs
from tests.app.conftest import app_page, click_start, drawn_run, finished_run, metric


def test_model_switch_is_offered_in_chinese_too(data_dir):
    at = app_page("nf4", "zh").run()
    assert not at.exception, at.exception
    assert any("真实预训练" in o for o in at.radio(key="pic.model").options)


def test_picture_switches_to_minilm_weights(data_dir):
    at = app_page("nf4").run()
    at.radio(key="pic.model").set_value("minilm").run()
    assert not at.exception, at.exception
    assert not at.error
    names = at.selectbox(key="pic.matrix.minilm").options
    assert len(names) == 36 and names[0].startswith("encoder.layer.0.attention.self.query")
    for fmt in ("NF4", "FP4", "INT4"):
        assert float(metric(at, fmt)) == pytest.approx(4.127, abs=0.002)


def test_start_buttons_queue_minilm_runs(data_dir, no_worker):
    at = app_page("nf4").run()
    at.selectbox(key="nf4.model").set_value("minilm").run()
    click_start(at, "nf4")
    cls = click_start(at, "minilm-cls")
    nf4 = jobs.list_runs("nf4")
    assert len(nf4) == 1 and nf4[0].params["model"] == "minilm" and nf4[0].status == "queued"
    assert len(cls) == 1 and cls[0].params["steps"] == 20


def test_finished_minilm_runs_are_drawn_with_their_model(data_dir):
    p_nf4 = {"model": "minilm", "layers": "attention", "bnb_check": False}
    p_cls = {"methods": "lora", "steps": 1, "topics": 2, "batch_size": 4, "max_length": 16}
    at, rid, _ = drawn_run(app_page("nf4"), "nf4", p_nf4)
    assert any("all-MiniLM-L6-v2" in c.value for c in at.caption)
    assert any("heavier-tailed than a Gaussian" in c.value for c in at.caption)
    rid2, _ = finished_run("minilm-cls", p_cls)
    at = app_page("nf4")
    at.session_state["run.minilm-cls"] = rid2
    at.run()
    assert not at.exception, at.exception
    assert sum("all-MiniLM-L6-v2" in c.value for c in at.caption) >= 1
