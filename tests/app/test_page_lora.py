"""The LoRA page: the instant picture reacts to its widgets, the start button queues a run, and a finished
run's result is drawn. Runs are queued without spawning a worker (no training in the page tests) except
the one tiny lab run whose real result the render test draws."""
import pytest
from streamlit.testing.v1 import AppTest

from tests.app.conftest import app_page, finished_run

TINY = {"part": "init", "task": "facts", "r": 2, "steps": 2, "batch_size": 2, "eval_every": 2,
        "latency_repeats": 3, "eval_limit": 4}

pytestmark = pytest.mark.usefixtures("data_dir", "no_worker")


def page(lang="en", **query) -> AppTest:
    at = app_page("lora", lang)
    for k, v in query.items():
        at.query_params[k] = v
    return at.run()


def metric(at, label_part: str) -> str:
    return next(m.value for m in at.metric if label_part in m.label)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_picture_measures_rank_and_b_zero_blanks_it(lang):
    at = page(lang)
    assert not at.exception, at.exception
    rank_label = "rank(BA)"
    assert metric(at, rank_label) == "8"
    at.slider(key="pic.r").set_value(3).run()
    assert metric(at, rank_label) == "3"
    assert metric(at, "r(d+k)") == f"{3 * (256 + 256):,}"
    at.checkbox(key="pic.b_zero").check().run()
    assert metric(at, rank_label) == "0"
    names = at.selectbox(key="pic.matrix").options
    k_proj = next(n for n in names if "k_proj" in n)
    at.selectbox(key="pic.matrix").select(k_proj.split(" (")[0]).run()
    assert not at.exception, at.exception
    assert metric(at, "d·k") == f"{128 * 256:,}"


def test_finished_run_is_drawn(tmp_path):
    from labs.experiments import Context, run_lab

    rid, _ = finished_run("lora", TINY, run_lab("lora", TINY, ctx=Context(out_dir=str(tmp_path))))
    at = page(run=str(rid))
    assert not at.exception, at.exception
    assert metric(at, "max |merged − unmerged| logit")
    assert any("init" in str(df.value.columns.tolist()) for df in at.dataframe)
    zh = page("zh", run=str(rid))
    assert not zh.exception, zh.exception
    assert metric(zh, "max |合并 − 未合并| logit")
