"""The NF4 page's MiniLM switch: the picture on MiniLM's real weights, the labs started with model = minilm,
and stored finished MiniLM runs drawn with the model they used."""
import functools
import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from labs import jobs

PAGE = str(Path(__file__).resolve().parents[2] / "app" / "pages" / "nf4.py")


def page(lang="en") -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=90)
    at.session_state["lang"] = lang
    return at


def metric(at, prefix: str) -> str:
    return next(m.value for m in at.metric if m.label.startswith(prefix))


def test_model_switch_is_offered_in_chinese_too(data_dir):
    at = page("zh").run()
    assert not at.exception, at.exception
    assert any("真实预训练" in o for o in at.radio(key="pic.model").options)


def test_picture_switches_to_minilm_weights(data_dir):
    at = page().run()
    at.radio(key="pic.model").set_value("minilm").run()
    assert not at.exception, at.exception
    assert not at.error
    names = at.selectbox(key="pic.matrix.minilm").options
    assert len(names) == 36 and names[0].startswith("encoder.layer.0.attention.self.query")
    for fmt in ("NF4", "FP4", "INT4"):
        assert float(metric(at, fmt)) == pytest.approx(4.127, abs=0.002)


def store(lab: str, params: dict, result: dict) -> int:
    rid = jobs.submit(lab, params, spawn=False)
    with jobs.connect() as con:
        con.execute("UPDATE runs SET status='done', started=?, finished=?, result=? WHERE id=?",
                    (1.0, 2.0, json.dumps(jobs._clean(result)), rid))
    return rid


def test_start_buttons_queue_minilm_runs(data_dir, monkeypatch):
    monkeypatch.setattr(jobs, "submit", functools.partial(jobs.submit, spawn=False))
    at = page().run()
    at.selectbox(key="nf4.model").set_value("minilm").run()
    at.button(key="start.nf4").click().run()
    at.button(key="start.minilm-cls").click().run()
    assert not at.exception, at.exception
    nf4, cls = jobs.list_runs("nf4"), jobs.list_runs("minilm-cls")
    assert len(nf4) == 1 and nf4[0].params["model"] == "minilm" and nf4[0].status == "queued"
    assert len(cls) == 1 and cls[0].params["steps"] == 20


def test_finished_minilm_runs_are_drawn_with_their_model(data_dir):
    from labs.experiments import run_lab

    p_nf4 = {"model": "minilm", "layers": "attention", "bnb_check": False}
    p_cls = {"methods": "lora", "steps": 1, "topics": 2, "batch_size": 4, "max_length": 16}
    rid = store("nf4", p_nf4, run_lab("nf4", p_nf4))
    at = page()
    at.query_params["run"] = str(rid)
    at.run()
    assert not at.exception, at.exception
    assert any("all-MiniLM-L6-v2" in c.value for c in at.caption)
    assert any("heavier-tailed than a Gaussian" in c.value for c in at.caption)
    rid2 = store("minilm-cls", p_cls, run_lab("minilm-cls", p_cls))
    at = page()
    at.session_state["run.minilm-cls"] = rid2
    at.run()
    assert not at.exception, at.exception
    assert sum("all-MiniLM-L6-v2" in c.value for c in at.caption) >= 1
