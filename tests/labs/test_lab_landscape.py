"""Lab `landscape`: a tiny real run of every method on the bundled model; the measured figures hang together."""
from __future__ import annotations

import pytest

from labs.experiments import get_lab
from labs.params import ParamError

TINY = {"steps": 2, "batch_size": 2, "eval_limit": 16, "r": 4, "lora_alpha": 8.0, "vera_r": 32, "galore_gap": 1}


@pytest.fixture(scope="module")
def result(tiny_run):
    assert TINY == get_lab("landscape").tiny
    return tiny_run("landscape")[0]          # the session's one tiny run (tests/conftest.py)


def test_every_method_is_measured(result):
    got = result["methods"]
    assert list(got) == ["full", "lora", "pissa", "qlora", "loftq", "galore", "ia3", "vera"]
    assert result["skipped"] == []
    for m, r in got.items():
        mem = r["memory"]
        assert mem["total"] == sum(v for k, v in mem.items() if k != "total"), m
        assert mem["optimizer"] > 0 and r["seconds_per_step"] > 0 and len(r["loss_curve"]) == TINY["steps"], m
        assert 0.0 <= r["final"]["eval_accuracy"] <= 1.0
    tp = {m: r["trainable_params"] for m, r in got.items()}
    assert tp["ia3"] < tp["vera"] < tp["lora"] == tp["pissa"] == tp["qlora"] == tp["loftq"] < tp["full"] == tp["galore"]
    assert got["qlora"]["memory"]["quant_constants"] > 0 and got["lora"]["memory"]["quant_constants"] == 0
    assert got["galore"]["memory"]["optimizer"] < 0.6 * got["full"]["memory"]["optimizer"]
    assert 0 < result["galore_optimizer_ratio"] < 0.6
    for m in ("full", "lora", "pissa", "galore"):                        # counted on the trained dense weights
        it = got[m]["intruders"]
        assert it["matrices"] == 28 and 0 <= it["total"] <= it["k"] * it["matrices"], m
    assert "intruders" not in got["qlora"]


def test_inits_start_where_they_should(result):
    got = result["methods"]
    for m in ("full", "lora", "galore", "ia3", "vera"):
        assert got[m]["start"]["max_abs_logit_diff"] == 0.0, m
    assert 0 < got["pissa"]["start"]["max_abs_logit_diff"] <= 1e-4        # exact up to float rounding
    assert got["qlora"]["start"]["kl_to_base"] > got["loftq"]["start"]["kl_to_base"] > 0
    gap = result["quant_gap"]
    assert gap["of"] > 0 and gap["lower_on"] == gap["of"]                  # every targeted matrix
    assert all(row["loftq"] < row["qlora"] for row in gap["matrices"])
    assert 0 < gap["kl_gap_closed"] < 1


def test_presets_and_bad_values():
    lab = get_lab("landscape")
    with pytest.raises(ParamError, match="methods"):
        lab.validate({"methods": "everything"})
    with pytest.raises(ParamError, match=r"loftq_iter = 0 .*1\.\.10"):
        lab.validate({"loftq_iter": 0})
    from labs.experiments.landscape import PRESETS, available

    assert available(PRESETS["smallest"]) == ["lora", "ia3", "vera"]
    assert lab.validate({"methods": "lora-inits"}, quick=True)["steps"] == lab.quick["steps"]
