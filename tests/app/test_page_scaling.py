"""Page `scaling`: renders in both languages with the calculator's 7B/13B/70B × 1/2/8-GPU figures computed by
labs.budget, and shows a finished `fsdp` run (the shared tiny run) with its checks next to the calculator."""
import pytest

from labs.budget import estimate
from tests.app.conftest import app_page, drawn_run
from tests.conftest import FSDP_TINY


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_page_renders_with_the_calculator_table(data_dir, lang):
    at = app_page("scaling", lang).run()
    assert not at.exception, at.exception
    assert at.title[0].value == {"en": "Scaling out", "zh": "多卡与 FSDP"}[lang]
    table = at.dataframe[0].value
    assert len(table) == 3 * 3 * 3                                   # models × GPU counts × methods
    per_gpu = table.columns[3]
    row = table[(table.iloc[:, 0] == "llama-2-70b") & (table.iloc[:, 1] == 2) & (table.iloc[:, 2] == "qlora")]
    assert row[per_gpu].item() == round(estimate("llama-2-70b", "qlora", gpus=2, zero=3)["memory_bytes"]["total"]
                                        / 1e9, 1)
    text = " ".join(m.value for m in at.markdown)
    assert "ZeRO" in text and ("多卡" in text if lang == "zh" else "all-gather" in text)


def test_switching_the_zero_stage_recomputes_the_table(data_dir):
    at = app_page("scaling").run()
    at.radio(key="scaling.pic.zero").set_value(1).run()
    table = at.dataframe[0].value
    row = table[(table.iloc[:, 0] == "llama-2-7b") & (table.iloc[:, 1] == 8) & (table.iloc[:, 2] == "full")]
    assert row[table.columns[3]].item() == round(estimate("llama-2-7b", "full", gpus=8, zero=1)["memory_bytes"]
                                                 ["total"] / 1e9, 1)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_finished_run_shows_checks_against_the_calculator(data_dir, fsdp_tiny_run, lang):
    at, rid, res = drawn_run(app_page("scaling", lang), "fsdp", FSDP_TINY, result=fsdp_tiny_run[0])
    values = [m.value for m in at.metric]
    assert f"{res['max_loss_diff']:.1e}" in values and f"{res['world_size']} (gloo)" in values
    tables = [d.value for d in at.dataframe]
    checks = next(tb for tb in tables if len(tb) == len(res["memory_check"]))
    assert list(checks.iloc[:, 1]) == [f"{e['measured']:,}" for e in res["memory_check"]]
    assert (checks.iloc[:, 4] == "✅").all()
    label = {"en": "FSDP ×2 · full (ZeRO-3): gradients per rank", "zh": "FSDP ×2 · full (ZeRO-3): 每个 rank 的梯度"}
    assert label[lang] in list(checks.iloc[:, 0])


def test_calculator_shows_comm_and_says_its_multi_gpu_figures_are_checked(data_dir):
    at = app_page("calculator").run()
    assert not any("/scaling" in c.value for c in at.caption)              # one GPU: nothing to check
    next(n for n in at.number_input if n.label == "GPUs").set_value(8).run()
    at.selectbox[[i for i, b in enumerate(at.selectbox) if list(b.options) == ["0", "1", "2", "3"]][0]] \
        .set_value(3).run()
    assert not at.exception, at.exception
    note = next(c.value for c in at.caption if "/scaling" in c.value)
    comm = estimate("llama-2-7b", "lora", gpus=8, zero=3)["comm_bytes_per_step"]
    assert f"{comm['total'] / 1e9:.2f} GB" in note and "2 %" in note
