"""Merging page: the picture's controls drive its metrics in both languages, the start button queues a run, and a
finished run (the session's real tiny run of the lab) renders its table, charts and new-token table."""
import pytest

from tests.app.conftest import app_page, finished_run, metric, open_run


@pytest.mark.parametrize("lang, zero, title", [("en", "entries exactly 0", "Merging adapters"),
                                               ("zh", "恰为 0 的元素", "适配器合并")])
def test_picture_responds_to_its_controls(data_dir, lang, zero, title):
    at = app_page("merging", lang).run()
    assert not at.exception, at.exception
    assert at.title[0].value == title
    assert at.selectbox(key="merging.pic.method").value == "ties"
    assert metric(at, zero) != "0%"                                 # TIES at density 0.3 trims
    at.selectbox(key="merging.pic.method").set_value("task_arithmetic").run()
    assert metric(at, zero) == "0%"
    assert float(metric(at, "cos(")) == pytest.approx(0.70, abs=0.05)   # τ_a + τ_b with unrelated tasks
    at.slider(key="merging.pic.overlap").set_value(0.9).run()
    assert float(metric(at, "cos(")) > 0.95
    assert not at.exception


@pytest.mark.parametrize("lang", ["zh"])
def test_finished_run_renders_result(data_dir, lang, tiny_run):
    from labs.experiments import get_lab

    rid, res = finished_run("merging", get_lab("merging").tiny, result=tiny_run("merging")[0])   # the session's run
    at = open_run(app_page("merging", lang), rid)
    assert not at.exception, at.exception
    frames = [d.value for d in at.dataframe]                        # the merges table, the new-token table, history
    merges = next(f for f in frames if "only:topic" in set(f.iloc[:, 0]))
    assert len(merges) == 3 + 6                                     # base, two single adapters, six merges
    tokens = next(f for f in frames if "modules_to_save" in set(f.iloc[:, 0]))
    assert list(tokens.iloc[:, 0]) == ["lora", "trainable_tokens", "modules_to_save"]
    assert tokens.iloc[0, 4] == 0.0 and tokens.iloc[1, 4] > 0      # LoRA alone never moves the new rows
