"""More PEFT methods page: renders in both languages, the picture's widgets drive its metrics, the start button
queues a `landscape` run, and a finished run (a real tiny run of the lab) renders every result block."""
import pytest

from tests.app.conftest import app_page, drawn_run, metric

TINY = {"methods": "lora-inits", "steps": 2, "batch_size": 2, "eval_limit": 16, "r": 2, "lora_alpha": 4.0}


@pytest.mark.parametrize("lang, title", [("en", "More PEFT methods"), ("zh", "更多 PEFT 方法")])
def test_page_renders_with_its_picture(data_dir, lang, title):
    at = app_page("more_methods", lang).run()
    assert not at.exception, at.exception
    assert at.title[0].value == title
    heads = [s.value for s in at.subheader]
    assert len(heads) >= 6                                       # why, math, picture, lab, seen, interview, cards
    text = " ".join(m.value for m in at.markdown)
    assert ("2410.21228" in text) and ("disable_adapter" in text)
    q_err = float(metric(at, "QLoRA"))
    loftq = float(metric(at, "LoftQ"))
    assert 0 < loftq < q_err                                      # LoftQ's init is closer to W on this matrix


def test_picture_follows_its_rank(data_dir):
    at = app_page("more_methods").run()
    share = lambda: float(metric(at, "Share").rstrip("%"))        # noqa: E731
    before = share()
    at.slider(key="more.pic.r").set_value(32).run()
    assert not at.exception and share() > before                 # more singular values in B·A
    at.selectbox(key="more.pic.matrix").set_value(at.selectbox(key="more.pic.matrix").options[-1]).run()
    assert not at.exception


def test_finished_run_renders_result(data_dir):
    at, rid, res = drawn_run(app_page("more_methods", "zh"), "landscape", TINY)
    assert len(at.dataframe) >= 3                                 # summary, LoftQ per matrix, intruders
    gap = res["quant_gap"]
    assert metric(at, "LoftQ 误差更低的矩阵数") == f"{gap['lower_on']} / {gap['of']}"
