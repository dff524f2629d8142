"""Lab `dora` at tiny settings: all three start at the base, DoRA's extra parameters are exactly one per output
feature, merges are lossless, ΔM/ΔD points and slopes are there and JSON, bad params name their field."""
import json

import pytest
import torch

from labs.experiments import dora as D
from tests.conftest import shared_tiny_run

TINY = D.LAB.tiny


tiny_run = shared_tiny_run("dora")


def test_every_method_starts_at_the_base(tiny_run):
    runs = tiny_run[0]["runs"]
    base = runs["full-ft"]["base"]["eval_loss"]
    assert runs["lora"]["base"]["eval_loss"] == pytest.approx(base, abs=1e-5)
    assert runs["dora"]["base"]["eval_loss"] == pytest.approx(base, abs=1e-5)   # m = ||W0||, B = 0 → W' = W0


def test_dora_extra_params_are_one_magnitude_per_output_feature(tiny_run):
    cost = tiny_run[0]["cost"]
    # q_proj: out = hidden; v_proj: out = kv heads × head dim (GQA) — summed over layers by the lab
    assert cost["extra_params"] == cost["expected_extra_params"] > 0
    assert cost["lora_s_per_step"] > 0 and cost["dora_s_per_step"] > 0


def test_merges_are_lossless_and_adapter_saved(tiny_run):
    res, _, out = tiny_run
    for m in ("lora", "dora"):
        assert res["runs"][m]["merge_max_abs_diff"] < 1e-4, m
    cfg = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert cfg["use_dora"] is True and cfg["r"] == TINY["r"]


def test_points_cover_every_matrix_and_checkpoint(tiny_run):
    res = tiny_run[0]
    n_targets = res["runs"]["lora"]["targets"]
    for m in D.METHODS:
        mine = [p for p in res["points"] if p["method"] == m]
        assert len(mine) == n_targets * TINY["checkpoints"], m
        assert {p["type"] for p in mine} == {"q_proj", "v_proj"}
        assert all(p["dm"] >= 0 and p["dd"] >= 0 for p in mine)
        assert max(p["dd"] for p in mine) > 0, f"{m} never moved a direction"
        assert set(res["slopes"][m]) == {"all", "q_proj", "v_proj"}
    # LoRA does not train a magnitude: its ΔM comes only through the update W0 + sBA, which moves both
    assert max(p["dm"] for p in res["points"] if p["method"] == "lora") > 0


def test_events_are_tagged_by_method(tiny_run):
    res, events, _ = tiny_run
    steps = [e for e in events if e["type"] == "step"]
    assert len(steps) == 3 * TINY["steps"]
    assert {e["series"] for e in steps} == set(D.METHODS)
    assert [e["progress"] for e in events][-1] == 1.0
    assert set(res["accuracy"]) == set(D.METHODS)


def test_fit_slope_recovers_a_line_and_refuses_a_point():
    fit = D.fit_slope([0.0, 1.0, 2.0, 3.0], [1.0, 0.5, 0.0, -0.5])
    assert fit["slope"] == pytest.approx(-0.5) and fit["intercept"] == pytest.approx(1.0)
    assert fit["pearson_r"] == pytest.approx(-1.0)
    assert D.fit_slope([1.0], [2.0])["slope"] is None


def test_picture_lora_couples_dora_decouples():
    w0 = torch.randn(48, 32, generator=torch.Generator().manual_seed(0))
    pic = D.decomposition_picture(w0, r=2, size=0.3, magnitude_change=0.0, cloud=12)
    (dm_l, dd_l), (dm_d, dd_d) = pic["lora"], pic["dora"]
    assert dm_l > 0 and dd_l > 0
    assert dm_d == 0.0 and dd_d == pytest.approx(dd_l)          # same direction, magnitude held at m0
    assert pic["cloud_slope"]["lora"]["slope"] > 0                # bigger update → both grow together
    still = D.decomposition_picture(w0, r=2, size=0.0, magnitude_change=0.0, cloud=2)
    assert still["lora"] == (0.0, pytest.approx(0.0, abs=1e-6))

