"""AdaLoRA page: the schedule widgets reshape b(t) and feed the lab, impossible schedules are refused with the
field named, the start button queues a run with the shaped schedule, a finished run renders its heatmap."""
import pytest

from tests.app.conftest import app_page, click_start, drawn_run

TINY = {"task": "facts", "init_r": 4, "target_r": 2, "tinit": 1, "tfinal": 1, "deltaT": 1, "steps": 4,
        "batch_size": 2, "eval_limit": 8, "target_modules": "q,v"}


def _caption_with(at, text):
    return next(c.value for c in at.caption if text in c.value)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_schedule_widgets_shape_the_plot(data_dir, lang):
    at = app_page("adalora", lang).run()
    assert not at.exception, at.exception
    at.number_input(key="ada.init_r").set_value(12)
    at.number_input(key="ada.target_r").set_value(3)
    at.selectbox(key="ada.target_modules").set_value("q,v")
    at.run()
    assert not at.exception
    cap = _caption_with(at, "init_r × 8")             # 4 layers × (q_proj, v_proj) in the bundled model
    assert "= 96" in cap and "= 24" in cap
    toy = at.slider[0]
    toy.set_value(toy.max).run()
    assert not at.exception


def test_impossible_schedule_names_the_field_and_disables_start(data_dir):
    at = app_page("adalora").run()
    at.number_input(key="ada.tinit").set_value(70)
    at.number_input(key="ada.tfinal").set_value(20)
    at.run()
    assert not at.exception
    assert any("tinit" in e.value for e in at.error)
    assert at.button(key="start.adalora").disabled
    at.number_input(key="ada.tinit").set_value(6)
    at.number_input(key="ada.tfinal").set_value(10)
    at.number_input(key="ada.target_r").set_value(20)
    at.run()
    assert any("target_r" in e.value for e in at.error)


def test_start_button_queues_the_shaped_schedule(data_dir, no_worker):
    at = app_page("adalora").run()
    at.number_input(key="ada.deltaT").set_value(2).run()
    runs = click_start(at, "adalora")
    assert len(runs) == 1 and runs[0].params["deltaT"] == 2


def test_finished_run_renders_heatmap_and_allocation(data_dir):
    at, rid, result = drawn_run(app_page("adalora"), "adalora", TINY)
    scrub = at.slider(key=f"ada.scrub.{rid}")
    assert scrub.value == scrub.max == len(result["adalora"]["history_steps"])
    scrub.set_value(1).run()
    assert not at.exception
    assert len(at.dataframe) >= 1
