"""Serving page: the picture's widgets drive its numbers, the start button queues a run, a bad value shows a
field error, and a finished run (a real tiny run of the lab) renders its table, memory and sweep charts."""
import pytest

from tests.app.conftest import app_page, drawn_run, metric

TINY = {"adapters": 4, "r": 2, "batch_size": 2, "requests": 4, "prompt_len": 4, "new_tokens": 2,
        "cache_slots": 2, "sweep": True}


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_picture_responds_to_its_widgets(data_dir, lang):
    at = app_page("serving", lang).run()
    assert not at.exception, at.exception
    assert len(at.get("plotly_chart")) >= 1
    if lang == "zh":
        return
    merged16 = metric(at, "K merged copies")
    at.slider(key="serving.pic.adapters").set_value(32).run()
    assert metric(at, "K merged copies") != merged16                  # merged copies grow with K
    at.slider(key="serving.pic.slots").set_value(1).run()
    low = float(metric(at, "Cache hit rate (LRU)").rstrip("%"))
    at.slider(key="serving.pic.slots").set_value(32).run()
    high = float(metric(at, "Cache hit rate (LRU)").rstrip("%"))
    assert high > low                                                   # the working set fits: hits jump
    at.selectbox(key="serving.pic.model").set_value("bundled").run()
    assert not at.exception


def test_finished_run_renders_result(data_dir):
    at, rid, _ = drawn_run(app_page("serving"), "serving", TINY, quick=True)
    assert any(df.value.shape[0] == 3 for df in at.dataframe)            # one row per strategy
    assert len(at.get("plotly_chart")) >= 4                             # picture, memory, vs K, vs batch
