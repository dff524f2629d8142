"""labs.compare: a small real comparison (3 methods, a few steps) and the claim judging on synthetic rows."""
from __future__ import annotations

import json

import pytest

from labs.compare import METHODS, CompareConfig, code_lines, run_compare, scale_table
from labs.compare_claims import claims, complexity_stars, disagreements, inference_class, judge


@pytest.fixture(scope="module")
def small():
    cfg = CompareConfig(methods=("full", "lora", "prompt"), steps=4, batch_size=4, eval_limit=8,
                        latency_repeats=1, new_tokens=2)
    return run_compare(cfg)


def test_every_column_for_every_method(small):
    json.dumps(small)                                           # JSON-able as the CLI prints it
    assert [r["method"] for r in small["rows"]] == ["full", "lora", "prompt"]
    for r in small["rows"]:
        for key in ("trainable_params", "trainable_percent", "memory", "memory_saving_vs_full", "seconds_per_step",
                    "cpu_seconds_per_step", "latency", "accuracy", "code_lines", "lr"):
            assert r[key] is not None, (r["method"], key)
        full_acc = small["rows"][0]["accuracy"]                 # a ratio to 0 is undefined: None, not a number
        assert (r["accuracy_vs_full"] is None) == (full_acc == 0)
        assert r["memory"]["activations"] > 0
        assert r["memory"]["total"] == sum(r["memory"][k] for k in
                                           ("weights", "quant_constants", "gradients", "optimizer", "activations"))
    assert small["date"] and small["versions"]["torch"] and small["device"]


def test_memory_categories_follow_from_the_tensors(small):
    full, lora, prompt = small["rows"]
    # full FT: one fp32 gradient and two AdamW moments per (unique) parameter
    assert full["trainable_params"] == full["total_params"]
    assert full["memory"]["gradients"] == 4 * full["trainable_params"]
    T = full["trainable_params"]
    assert 8 * T <= full["memory"]["optimizer"] < 8.01 * T      # exp_avg + exp_avg_sq (+ a 4-byte step per tensor)
    # an adapter: gradients only for its own parameters, and the whole run saves memory vs full FT
    assert lora["memory"]["gradients"] == 4 * lora["trainable_params"]
    assert 0 < lora["memory_saving_vs_full"] < 1 and 0 < prompt["memory_saving_vs_full"] < 1
    assert full["memory_saving_vs_full"] == 0
    assert prompt["trainable_params"] == 10 * 256                # p · d on the bundled model (hidden 256)


def test_lora_merges_and_soft_prompt_grows_the_cache(small):
    full, lora, prompt = small["rows"]
    assert lora["mergeable"] and not prompt["mergeable"]
    assert lora["latency"]["cache_len"] == full["latency"]["cache_len"]   # merged: the base's exact compute
    assert prompt["latency"]["cache_len"] == full["latency"]["cache_len"] + 10


def test_code_lines_counts_code_not_comments(tmp_path, monkeypatch):
    import labs.compare as cmp

    (tmp_path / "m.py").write_text('"""doc\nstring"""\n\n# comment\nx = 1\n\ndef f():\n    """doc"""\n    return x\n')
    monkeypatch.setattr(cmp, "ROOT", tmp_path)
    assert code_lines(["m.py"]) == 3
    assert code_lines([]) == 0


def test_bad_config_names_the_field():
    with pytest.raises(ValueError, match="methods"):
        CompareConfig(methods=("lora", "nope"))
    with pytest.raises(ValueError, match="full"):
        CompareConfig(methods=("lora",))
    with pytest.raises(ValueError, match="steps"):
        CompareConfig(steps=2)


def test_scale_columns_shrink_adapters_share():
    s = scale_table(CompareConfig())
    for model in ("llama-2-7b", "llama-2-13b", "llama-2-70b"):
        assert set(s[model]) == set(METHODS)
        assert s[model]["full"]["memory_saving_vs_full"] == 0
        assert 0 < s[model]["qlora"]["memory_saving_vs_full"] and \
            s[model]["qlora"]["memory_gb"]["total"] < s[model]["lora"]["memory_gb"]["total"]
    assert s["llama-2-70b"]["lora"]["trainable_percent"] < s["llama-2-7b"]["lora"]["trainable_percent"]


# ---------------------------------------------------------------------------------- judging (no training)
def _row(method, pct=0.5, saving=0.6, ms=10.0, acc=1.0, lines=100):
    return {"method": method, "label": method, "trainable_percent": pct, "memory_saving_vs_full": saving,
            "latency": {"ms_per_token": ms}, "accuracy_vs_full": acc, "code_lines": {"method": lines, "kernels": 0}}


BASE = {"ms_per_token": 10.0, "ms_per_token_q25": 9.0, "ms_per_token_q75": 11.0}


def test_judge_reads_ranges_and_tolerance():
    result = {"base_latency": BASE, "rows": [_row("full", 100, 0.0, 10, 1.0), _row("lora", 5.0, 0.3, 10, 0.97)]}
    v = judge(result)["lora"]
    assert v["trainable"] == "higher"                 # 5% > the claimed 0.1–1%
    assert v["memory"] == "lower"                     # 30% < 60% − 10 points
    assert v["inference"] == "agrees"                 # inside the base's spread: zero
    assert v["quality"] == "agrees"                   # 97% within 95–99%
    assert judge(result)["full"]["trainable"] == "agrees"
    cells = {(d["method"], d["column"]) for d in disagreements(result)}
    assert ("lora", "trainable") in cells and ("lora", "memory") in cells and ("lora", "quality") not in cells
    assert all(d["explanation"] for d in disagreements(result))


def test_inference_classes_from_the_base_spread():
    assert inference_class(_row("x", ms=10.9), BASE) == "zero"           # inside the base's own spread
    assert inference_class(_row("x", ms=11.5), BASE) == "present"        # above its 75th percentile
    result = {"base_latency": BASE, "rows": [_row("full", 100, 0.0, 10, 1.0), _row("houlsby", 1.0, 0.5, 10.5, 0.96),
                                             _row("prompt", 0.001, 0.75, 14, 0.9)]}
    v = judge(result)
    assert v["houlsby"]["inference"] == "lower"                          # claimed serial latency, none measured
    assert v["prompt"]["inference"] == "agrees"                          # "tiny" is not falsifiable here


def test_complexity_terciles_and_claims_cover_every_method():
    rows = [_row("full", lines=0)] + [_row(m, lines=i) for i, m in enumerate(METHODS[1:])]
    stars = complexity_stars(rows)
    assert stars["lora"] == 1 and stars["llama-adapter"] == 3
    assert set(METHODS) <= set(claims()["methods"])
    assert claims()["methods"]["ptuning-v2"]["quality"] == claims()["methods"]["prefix"]["quality"]


def test_cli_rejects_bad_arguments(capsys):
    from labs.cli import main

    assert main(["compare", "--task", "nope"]) == 2
    assert "--task" in capsys.readouterr().err
    assert main(["compare", "--steps", "1"]) == 2
    assert "--steps" in capsys.readouterr().err


def test_equal_line_counts_share_a_star():
    rows = [_row("full", lines=0)] + [_row(m, lines=10) for m in ("prompt", "prefix", "ptuning-v2")] + \
        [_row("lora", lines=50), _row("qlora", lines=90), _row("dora", lines=60)]
    stars = complexity_stars(rows)
    assert stars["prompt"] == stars["prefix"] == stars["ptuning-v2"] == 1
    assert stars["qlora"] == 3


def test_lab_rejects_bad_params_naming_the_field():
    from labs.experiments import get_lab
    from labs.params import ParamError

    lab = get_lab("compare")
    from labs.compare import QUICK

    assert lab.validate({}, quick=True)["steps"] == QUICK["steps"]
    with pytest.raises(ParamError) as err:
        lab.validate({"steps": 1}, quick=True)
    assert err.value.field == "steps" and "4..400" in str(err.value)
    with pytest.raises(ParamError) as err:
        lab.validate({"task": "nope"})
    assert err.value.field == "task"
