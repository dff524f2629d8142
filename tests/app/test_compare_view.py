"""The measured trade-off section of the decision-guide page: three tables, disagreements, re-run through the engine."""
import pytest

import labs.compare as cmp
from labs.methods.registry import SPECS
from tests.app.conftest import app_page, click_start, finished_run, open_run


def fake_result() -> dict:
    """A comparison result with every field the view reads; LoRA's share is far above the notes' 0.1–1%."""
    cfg = cmp.CompareConfig()
    rows = []
    for i, m in enumerate(cmp.METHODS):
        total = 1000 if m == "full" else 400 + 10 * i
        rows.append({"method": m, "label": SPECS[m].label["en"], "lr": cfg.lr[m], "trainable_params": 100 if m != "full" else 1000,
                     "total_params": 1000, "trainable_percent": 10.0 if m != "full" else 100.0,
                     "memory": {"weights": total // 2, "quant_constants": 0, "gradients": total // 8,
                                "optimizer": total // 4, "activations": total - total // 2 - total // 8 - total // 4,
                                "total": total},
                     "memory_saving_vs_full": 1 - total / 1000, "seconds_per_step": 0.1, "cpu_seconds_per_step": 0.09,
                     "latency": {"ms_per_token": 10.0 + i, "ms_per_token_q25": 9.0, "ms_per_token_q75": 11.0,
                                 "cache_len": 20, "overhead_vs_base": i / 10},
                     "accuracy": 0.9 - 0.05 * i, "accuracy_vs_full": (0.9 - 0.05 * i) / 0.9, "mergeable": SPECS[m].mergeable,
                     "code_lines": {"method": 10 * i, "kernels": 0, "files": []}})
    return {"task": "facts", "chance": 0.1, "device": "cpu", "device_name": "CPU: test", "date": "2026-01-01T00:00:00+00:00",
            "versions": {"torch": "x"}, "config": {"steps": 60, "batch_size": 16, "seed": 0}, "eval_examples": 40,
            "base_latency": {"ms_per_token": 10.0, "ms_per_token_q25": 9.0, "ms_per_token_q75": 11.0, "cache_len": 20},
            "rows": rows, "scale": cmp.scale_table(cfg), "seconds": 1.0, "cpu_seconds": 1.0}


@pytest.fixture()
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PEFTLAB_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(cmp, "DATA", tmp_path / "compare")
    cmp.save(fake_result())
    return tmp_path


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_three_tables_and_disagreements(data_dir, lang):
    at = app_page("decision_guide", lang).run()
    assert not at.exception, at.exception
    tables = [df.value for df in at.dataframe]
    ours = next(t for t in tables if len(t) == len(cmp.METHODS) and "▲" in " ".join(map(str, t.iloc[:, 2])))
    assert list(ours.iloc[:, 0]) == [SPECS[m].label["en"] for m in cmp.METHODS]
    assert any(any("70B" in str(c) for c in t.columns) for t in tables)      # the calculator's columns
    assert any(len(t) == len(cmp.METHODS) and t.iloc[1, 1] == "0.1%~1%" for t in tables)   # the notes' claims
    assert len(at.expander) >= 1                                             # disagreements, explained
    assert at.get("header")[-1].value == ("The trade-off table, measured" if lang == "en" else "实测 Trade-off 对比表")


def test_no_saved_result_is_an_info_not_a_crash(tmp_path, monkeypatch):
    monkeypatch.setenv("PEFTLAB_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(cmp, "DATA", tmp_path / "none")
    at = app_page("decision_guide").run()
    assert not at.exception, at.exception
    assert any("python -m labs compare" in i.value for i in at.info)


def test_start_button_queues_a_compare_run(data_dir, no_worker):
    runs = click_start(app_page("decision_guide").run(), "compare")
    assert len(runs) == 1 and runs[0].status == "queued" and runs[0].params["steps"] == cmp.QUICK["steps"]


def test_finished_run_is_drawn(data_dir):
    result = {**fake_result(), "final": {"eval_accuracy": 0.9}}
    result["rows"][0]["label"] = "Full FT (run)"
    rid, _ = finished_run("compare", {}, result, quick=True)
    at = open_run(app_page("decision_guide"), rid)
    assert not at.exception, at.exception
    assert any("Full FT (run)" in list(df.value.iloc[:, 0]) for df in at.dataframe)
