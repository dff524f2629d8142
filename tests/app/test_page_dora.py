"""DoRA page: the picture's widgets drive the metrics, the start button queues a run, and a finished run
(a real tiny run of the lab) renders its accuracy table, ΔD–ΔM scatter and slopes."""
import pytest

from tests.app.conftest import app_page, drawn_run, metric

TINY = {"task": "facts", "r": 2, "target_modules": "q,v", "steps": 2, "batch_size": 2,
        "checkpoints": 2, "eval_limit": 8}


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_picture_responds_to_its_sliders(data_dir, lang):
    at = app_page("dora", lang).run()
    assert not at.exception, at.exception
    assert float(metric(at, "LoRA ΔM")) > 0
    at.slider(key="dora.pic.size").set_value(0.0).run()
    assert float(metric(at, "LoRA ΔM")) == 0.0 and float(metric(at, "LoRA ΔD")) == pytest.approx(0.0, abs=1e-4)
    at.slider(key="dora.pic.size").set_value(0.5)
    at.slider(key="dora.pic.mag").set_value(0.0)
    at.run()
    assert float(metric(at, "DoRA ΔM")) == 0.0                 # DoRA holds the length while the direction turns
    assert float(metric(at, "DoRA ΔD")) == pytest.approx(float(metric(at, "LoRA ΔD")))
    at.selectbox(key="dora.pic.matrix").set_value(at.selectbox(key="dora.pic.matrix").options[-1]).run()
    assert not at.exception


def test_finished_run_renders_result(data_dir):
    at, rid, _ = drawn_run(app_page("dora"), "dora", TINY)
    assert len(at.dataframe) >= 2                              # accuracy/cost table and slopes table
    inspect = at.selectbox(key=f"dora.inspect.{rid}")
    assert inspect.value == "q_proj"
    inspect.set_value("all").run()
    assert not at.exception
