"""Lab `lora` at tiny settings: the init findings hold exactly, merge is lossless, results are JSON, bad
params name their field. One run of the init part (shared by the tests) on the bundled base model."""
import copy
import json
import math

import pytest
import torch

from labs.experiments import get_lab
from labs.experiments import lora as L
from tests.conftest import shared_tiny_run

TINY = L.LAB.tiny


@pytest.fixture(scope="module", autouse=True)
def cached_base():
    """Load the bundled base once for the module; every run gets a fresh copy of it."""
    from labs.base import load_base

    model, tok = load_base()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(L, "load_base", lambda: (copy.deepcopy(model), tok))
        yield


init_run = shared_tiny_run("lora")          # the init part


def by_init(res):
    return {v["init"]: v for v in res["variants"]}


def test_standard_and_mirror_start_exactly_at_base_both_random_does_not(init_run):
    v = by_init(init_run[0])
    assert v["standard"]["step0_logit_diff"] == 0.0
    assert v["a_zero_b_random"]["step0_logit_diff"] == 0.0
    assert v["both_zero"]["step0_logit_diff"] == 0.0
    assert v["both_random"]["step0_logit_diff"] > 1e-2
    base = init_run[0]["base"]["eval_loss"]
    assert v["standard"]["step0_eval_loss"] == pytest.approx(base, abs=1e-5)
    assert v["both_random"]["step0_eval_loss"] != pytest.approx(base, abs=1e-3)


def test_gradients_at_step1_explain_which_factor_moves(init_run):
    v = by_init(init_run[0])
    # B = 0: dL/dA = s Bᵀ g xᵀ = 0, dL/dB = s g (Ax)ᵀ ≠ 0 — and the mirror image for A = 0
    assert v["standard"]["grad_A_step1"] == 0.0 and v["standard"]["grad_B_step1"] > 0
    assert v["a_zero_b_random"]["grad_B_step1"] == 0.0 and v["a_zero_b_random"]["grad_A_step1"] > 0
    assert v["both_random"]["grad_A_step1"] > 0 and v["both_random"]["grad_B_step1"] > 0


def test_both_zero_never_learns(init_run):
    res = init_run[0]
    z = res["findings"]["init"]["both_zero"]
    assert z["grad_A_step1"] == 0.0 and z["grad_B_step1"] == 0.0
    assert z["max_change_A"] == 0.0 and z["max_change_B"] == 0.0
    assert z["eval_loss_range"] == 0.0
    assert by_init(res)["standard"]["max_change_B"] > 0     # the same loop does move a standard adapter


def test_merge_is_lossless_and_adapter_is_saved(init_run):
    res, _, out = init_run
    mg = res["merge"]
    assert mg["series"] == "init=standard"
    assert mg["max_abs_diff_merged_vs_unmerged"] < 1e-4
    assert mg["max_abs_diff_unmerged_vs_base"] > mg["max_abs_diff_merged_vs_unmerged"]
    assert set(mg["latency_ms"]) == {"base", "unmerged", "merged"} and all(x > 0 for x in mg["latency_ms"].values())
    cfg = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert cfg["r"] == TINY["r"] and mg["adapter_bytes"] > 0


def test_events_are_tagged_by_init_scheme(init_run):
    res, events, _ = init_run
    steps = [e for e in events if e["type"] == "step"]
    assert len(steps) == 4 * TINY["steps"]
    assert {e["series"] for e in steps} == {f"init={s}" for s in L.INIT_SCHEMES}
    assert [e["progress"] for e in events if "progress" in e][-1] == 1.0
    assert all(0 < v["trainable_percent"] < 100 for v in res["variants"])


def test_plan_per_part():
    p = get_lab("lora").validate({"ranks": "4/16/64/128"})
    rank = L.plan(dict(p, part="rank"))
    assert [(v["r"], v["use_rslora"]) for v in rank] == [(r, rs) for r in (4, 16, 64, 128) for rs in (False, True)]
    assert [v["ratio"] for v in L.plan(dict(p, part="loraplus"))] == [1.0, 16.0]
    assert [v["target"] for v in L.plan(dict(p, part="targets"))] == list(L.TARGETS)
    assert len(L.plan(dict(p, part="all"))) == 4 + 8 + 2 + 3


def test_rank_findings_pick_where_alpha_over_r_stops_improving():
    rows = [{"part": "rank", "r": r, "use_rslora": rs, "scaling": 16 / (math.sqrt(r) if rs else r),
             "final_eval_loss": loss} for r, rs, loss in
            [(1, False, 3.0), (4, False, 2.0), (16, False, 2.5), (1, True, 3.0), (4, True, 1.8), (16, True, 1.2)]]
    f = L.findings(rows)["rank"]
    assert f["stall_rank_alpha_r"] == 4 and f["alpha/sqrt(r)"]["best_rank"] == 16
    assert f["gap_at_largest_rank"] == pytest.approx(1.3)


def test_picture_update_has_rank_r_and_b_zero_is_blank():
    up = L.lowrank_update(48, 32, 5, 16.0, False, False)
    assert up["rank"] == 5 and int((up["singular_values"] > 1e-4 * up["singular_values"][0]).sum()) == 5
    assert up["lora_params"] == 5 * (48 + 32) and up["full_params"] == 48 * 32
    assert up["scaling"] == 16.0 / 5 and L.lowrank_update(48, 32, 5, 16.0, True, False)["scaling"] == 16 / math.sqrt(5)
    blank = L.lowrank_update(48, 32, 5, 16.0, False, True)
    assert blank["rank"] == 0 and float(blank["delta"].abs().max()) == 0.0


def test_rank_r_error_matches_truncated_svd():
    torch.manual_seed(0)
    W = torch.randn(20, 12)
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    err = L.rank_r_error(S)
    for r in (0, 3, 12):
        Wr = U[:, :r] @ torch.diag(S[:r]) @ Vh[:r]
        assert float(err[r]) == pytest.approx(float((W - Wr).norm() / W.norm()), abs=1e-5)
    spec = L.spectrum(W)
    assert float(spec["sv_weight"][0]) == 1.0 and float(spec["sv_gauss"][0]) == 1.0
