"""Lab `merging` at tiny settings: references and every merge scored on both tasks, the sweep covers the densities,
DARE is reproducible from its seed, the exact merge is saved in PEFT format, LoRA alone leaves the new token rows
untouched while trainable tokens / modules_to_save move them, bad params name their field."""
import json

import pytest

from labs.experiments import get_lab, run_lab
from labs.experiments import merging as M
from labs.params import ParamError

TINY = {"task_a": "topic", "task_b": "sentiment", "r": 2, "steps": 3, "batch_size": 4, "eval_limit": 8,
        "densities": "0.5,1.0", "new_token_steps": 2, "lr": 1e-2}


@pytest.fixture(scope="module")
def tiny_run(tiny_run):
    assert TINY == get_lab("merging").tiny
    return tiny_run("merging")               # the session's one tiny run (tests/conftest.py)


def test_every_row_scores_both_tasks(tiny_run):
    res = tiny_run[0]
    methods = [r["method"] for r in res["rows"]]
    assert methods == ["base", "only:topic", "only:sentiment", *M.MAIN_METHODS]
    for row in res["rows"] + res["sweep"]:
        for task in ("topic", "sentiment"):
            assert 0.0 <= row[task]["choice_accuracy"] <= 1.0 and row[task]["eval_loss"] > 0
    assert [(r["method"], r["density"]) for r in res["sweep"]] == [(m, d) for m in M.SWEPT for d in (0.5, 1.0)]
    base = res["rows"][0]
    assert base["sparsity"]["norm"] == 0.0
    only_a = res["rows"][1]
    assert only_a["topic"]["eval_loss"] == pytest.approx(res["adapters"]["topic"]["final"]["eval_loss"], abs=1e-4)


def test_trim_sparsity_follows_density(tiny_run):
    res = tiny_run[0]
    ties = {r["density"]: r for r in res["sweep"] if r["method"] == "ties"}
    # each trim keeps half of its τ; an entry is 0 when both dropped it: ≈ (1 − 0.5)² for unrelated task vectors
    assert 0.15 <= ties[0.5]["sparsity"]["zero_fraction"] <= 0.5
    assert ties[1.0]["sparsity"]["zero_fraction"] < 0.05
    dare_full = next(r for r in res["sweep"] if r["method"] == "dare_linear" and r["density"] == 1.0)
    ta = next(r for r in res["rows"] if r["method"] == "task_arithmetic")
    assert dare_full["sparsity"]["norm"] == pytest.approx(ta["sparsity"]["norm"], rel=1e-6)   # p = 0: no drop


def test_interference_and_dare_seed(tiny_run):
    inter = tiny_run[0]["interference"]["all"]
    assert -1.0 <= inter["cosine"] <= 1.0 and 0.0 <= inter["sign_conflict_fraction"] <= 1.0
    assert inter["kept_by_both"] > 0


def test_new_tokens_lora_alone_never_moves_the_rows(tiny_run):
    runs = tiny_run[0]["new_tokens"]["runs"]
    assert set(runs) == set(M.TOKEN_VARIANTS)
    assert all(v == 0.0 for v in runs["lora"]["row_change"].values())
    assert runs["lora"]["user_assistant_cosine"] > 0.999            # mean-resized rows: one vector, twice
    for variant in ("trainable_tokens", "modules_to_save"):
        assert all(v > 0 for v in runs[variant]["row_change"].values()), variant
    lora_p = runs["lora"]["trainable_params"]
    assert runs["trainable_tokens"]["trainable_params"] - lora_p == 3 * 256          # n new rows × hidden
    assert runs["modules_to_save"]["trainable_params"] - lora_p == (4096 + 3) * 256  # the whole (tied) embedding


def test_saved_merge_is_peft_format_and_json(tiny_run):
    res, events, out = tiny_run
    cfg = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["r"] == 2 * TINY["r"] == cfg["lora_alpha"]     # cat: r_a + r_b
    json.dumps(res)
    assert {e["series"] for e in events if e["type"] == "step"} >= {"adapter:topic", "merge", "tokens:lora"}
    assert max(e["progress"] for e in events if "progress" in e) == pytest.approx(1.0, abs=0.02)


def test_bad_params_name_their_field():
    with pytest.raises(ParamError) as err:
        run_lab("merging", {**TINY, "task_b": "topic"})
    assert err.value.field == "task_b"
    with pytest.raises(ParamError) as err:
        M.parse_densities("0.5,2")
    assert err.value.field == "densities"
    with pytest.raises(ParamError):
        get_lab("merging").validate({"density": 0.0})
