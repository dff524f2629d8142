"""Lab `soft-prompts` at tiny settings: counts equal the formulas (KV width under GQA), the extra positions
are p, merged LoRA changes nothing, the prefix share varies per token, events are tagged, bad params named."""
import json

import pytest

from labs.experiments import run_lab
from labs.experiments.soft_prompts import LAB, formula, geometry
from labs.params import ParamError
from tests.conftest import shared_tiny_run

TINY = LAB.tiny
P = TINY["num_virtual_tokens"]


ran = shared_tiny_run("soft-prompts", 2)


def test_result_is_json_and_counts_match_the_formulas(ran):
    result, _ = ran
    json.dumps(result)
    g = result["geometry"]
    assert g["kv_dim"] == g["kv_heads"] * g["head_dim"]
    v = result["variants"]
    assert v["prompt"]["trainable_params"] == P * g["hidden"] == v["prompt"]["formula"]["train"]
    assert v["prefix"]["trainable_params"] == P * g["layers"] * 2 * g["kv_dim"] == v["prefix"]["formula"]["train"]
    assert v["ptuning-v2"]["trainable_params"] == v["ptuning-v2"]["formula"]["train"]
    assert v["ptuning-v2"]["formula"]["kept"] == v["prefix"]["trainable_params"]   # the MLP is dropped after training
    if g["kv_heads"] < g["heads"]:                                                 # GQA: the hidden-size formula overcounts
        assert v["prefix"]["formula"]["hidden_formula"] == v["prefix"]["trainable_params"] * g["heads"] // g["kv_heads"]


def test_inference_cost_positions_and_merge(ran):
    result, _ = ran
    lat = result["latency"]
    assert set(lat) == {"base", "prompt", "prefix", "ptuning-v2", "lora"}
    for m in ("prompt", "prefix", "ptuning-v2"):
        assert lat[m]["extra_positions"] == P                                      # p more positions / KV entries per layer
        assert lat[m]["kv_cache_bytes"] > lat["base"]["kv_cache_bytes"]
    assert lat["lora"]["extra_positions"] == 0
    assert all(r["ms_per_token"] > 0 for r in lat.values())
    assert result["merge"]["lora_max_abs_logit_change"] < 1e-3
    layers = result["merge"]["prefix_share"]["layers"]
    assert len(layers) == result["geometry"]["layers"]
    assert all(0 < x["min"] < x["max"] < 1 for x in layers)                        # the share differs token by token


def test_events_carry_series_and_progress(ran):
    _, events = ran
    steps = [e for e in events if e["type"] == "step"]
    assert {e["series"] for e in steps} == {"prompt tuning", "prefix tuning", "P-tuning v2", "LoRA"}
    progress = [e["progress"] for e in steps]
    assert progress == sorted(progress) and 0 < progress[0] and progress[-1] <= 1


def test_formula_uses_kv_width():
    cfg = type("C", (), dict(num_hidden_layers=32, hidden_size=4096, num_attention_heads=32,
                             num_key_value_heads=8, head_dim=128, vocab_size=1, max_position_embeddings=8192))
    assert formula("prefix", geometry(cfg), 20, 1)["train"] == 1_310_720            # Llama-3-8B, p = 20
    assert formula("prefix", geometry(cfg), 20, 1)["hidden_formula"] == 5_242_880
    assert formula("prompt", geometry(cfg), 20, 1)["train"] == 81_920


@pytest.mark.parametrize("values, field", [({"prompt": False, "prefix": False, "ptuning_v2": False}, "prompt")])
def test_bad_params_name_the_field(values, field):
    with pytest.raises(ParamError) as err:
        run_lab("soft-prompts", {**TINY, **values})
    assert err.value.field == field and field in str(err.value)
