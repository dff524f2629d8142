"""Lab `adalora` at tiny settings: the budget follows the cubic schedule exactly at every update, the final
allocation sums to target_r × matrices, LoRA at r = target_r is the baseline, results are JSON, and the
cross-field schedule rules name the field to change."""

import pytest
from transformers import AutoConfig

from labs.base import model_dir
from labs.experiments import get_lab, run_lab
from labs.experiments import adalora as A
from labs.params import ParamError
from tests.conftest import shared_tiny_run

TINY = A.LAB.tiny


tiny_run = shared_tiny_run("adalora")


def test_schedule_is_the_cubic_of_the_paper():
    s = A.schedule(steps=20, init_r=8, target_r=2, n_matrices=3, tinit=4, tfinal=6, deltaT=2)
    b0, bT = 8 * 3, 2 * 3
    assert [x["budget"] for x in s[:4]] == [b0] * 4                      # warm-up at the full budget
    assert all(x["budget"] == bT for x in s[14:])                         # final stretch at the target
    t = 7                                                                 # inside the descent: closed form
    assert s[t - 1]["budget"] == int((b0 - bT) * (1 - (t - 4) / (20 - 4 - 6)) ** 3 + bT)
    budgets = [x["budget"] for x in s]
    assert budgets == sorted(budgets, reverse=True)
    assert [x["step"] for x in s if x["update"]] == [6, 8, 10, 12, 14]   # every deltaT in the descent + T - tfinal


def test_budget_is_met_exactly_and_final_allocation_sums_to_target(tiny_run):
    a = tiny_run[0]["adalora"]
    n = tiny_run[0]["n_matrices"]
    assert n == len(a["modules"]) > 0
    assert a["kept_equals_budget_at_updates"]
    assert a["kept"][-1] == a["budget"][-1] == TINY["target_r"] * n
    assert sum(a["allocation"]["by_type"].values()) == TINY["target_r"] * n
    assert sum(a["allocation"]["by_layer"].values()) == TINY["target_r"] * n
    assert all(0 <= r <= TINY["init_r"] for row in a["ranks"] for r in row)
    assert len(a["ranks"]) == len(a["history_steps"]) and len(a["ranks"][0]) == n


def test_both_start_at_base_and_lora_has_the_final_budget(tiny_run):
    res = tiny_run[0]
    a, lora = res["adalora"], res["lora"]
    assert a["base"]["eval_loss"] == pytest.approx(lora["base"]["eval_loss"], abs=1e-5)   # Λ = 0 and B = 0
    assert lora["r"] == TINY["target_r"]
    # each kept triplet carries d_in + d_out + 1 numbers (P column, λ, Q row); LoRA r = target_r has d_in + d_out
    # per rank in every matrix. Dimensions from the model's config: q_proj (h → h), v_proj (h → kv heads × head dim)
    cfg = AutoConfig.from_pretrained(model_dir(), local_files_only=True)
    h = cfg.hidden_size
    kv = cfg.num_key_value_heads * (h // cfg.num_attention_heads)
    by_type = a["allocation"]["by_type"]
    assert a["final_budget_params"] == by_type.get("q_proj", 0) * (2 * h + 1) + by_type.get("v_proj", 0) * (h + kv + 1)
    assert lora["trainable_params"] == cfg.num_hidden_layers * TINY["target_r"] * ((2 * h) + (h + kv))
    assert a["trainable_params"] > lora["trainable_params"]
    assert all(x is not None and x >= 0 for x in a["orth"])


def test_events_are_tagged_and_the_adapter_saved(tiny_run):
    res, events, out = tiny_run
    steps = [e for e in events if e["type"] == "step"]
    assert {e["series"] for e in steps} == {"adalora", f"lora r={TINY['target_r']}"}
    assert [e["progress"] for e in events][-1] == 1.0
    assert (out / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize("values,field", [({"init_r": 2, "target_r": 4}, "target_r"),
                                          ({"steps": 10, "tinit": 5, "tfinal": 5}, "tinit")])
def test_schedule_rules_name_the_field(values, field):
    p = get_lab("adalora").validate(values, quick=True)
    with pytest.raises(ParamError) as err:
        A.check(p)
    assert err.value.field == field
    with pytest.raises(ParamError):
        run_lab("adalora", values, quick=True)

