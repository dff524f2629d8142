"""Lab `qlora` at tiny settings on the bundled base: memory is measured by category from real tensors, the
4-bit base is ~4.127 bits/weight, merges behave as the page says, the adapter is saved in PEFT format."""
import json

import pytest

from labs.experiments import get_lab
from tests.conftest import shared_tiny_run

TINY = get_lab("qlora").tiny


tiny_run = shared_tiny_run("qlora")


def test_memory_by_category_is_measured(tiny_run):
    v = tiny_run[0]["variants"]
    q, lo, full = v["qlora"]["memory"], v["lora"]["memory"], v["full"]["memory"]
    assert q["quant_constants"] > 0 and lo["quant_constants"] == 0
    assert q["trainable"] == lo["trainable"] == 4 * v["lora"]["trainable_params"]   # fp32 A, B on CPU
    assert q["gradients"] == lo["gradients"] == q["trainable"]
    assert q["optimizer"] >= 2 * q["trainable"]                                      # AdamW: m and v
    assert q["weights"] < lo["weights"]                                              # 4-bit codes
    assert full["trainable"] > 20 * lo["trainable"] and full["optimizer"] >= 2 * full["trainable"]
    bits = v["qlora"]["base_bits"]
    assert 4.12 < bits["bits_per_param"] < 4.13


def test_qlora_starts_off_the_fp32_base_lora_does_not(tiny_run):
    v = tiny_run[0]["variants"]
    assert v["lora"]["base"]["eval_loss"] == pytest.approx(v["full"]["base"]["eval_loss"], abs=1e-5)
    assert v["qlora"]["base"]["eval_loss"] != pytest.approx(v["lora"]["base"]["eval_loss"], abs=1e-5)
    assert all(x["seconds_per_step"] > 0 and len(x["loss_curve"]) == TINY["steps"] for x in v.values())


def test_merges_dequantized_exact_requantized_and_fp32_base_are_not(tiny_run):
    m = tiny_run[0]["merge"]
    assert m["dequantized"]["precision"] == "float32" and m["dequantized"]["max_abs_logit_diff"] < 1e-3
    assert m["requantized"]["precision"].startswith("nf4")
    assert m["requantized"]["max_abs_logit_diff"] > 10 * m["dequantized"]["max_abs_logit_diff"]
    assert m["fp32_base"]["max_abs_logit_diff"] > 10 * m["dequantized"]["max_abs_logit_diff"]


def test_adapter_is_saved_in_peft_format(tiny_run):
    res, _, out = tiny_run
    cfg = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["r"] == TINY["r"]
    lab = json.loads((out / "adapter" / "peft_lab_config.json").read_text())
    assert lab["method"] == "qlora" and lab["quant_type"] == "nf4"
    assert res["adapter"]["bytes"] > 0


def test_adapter_loads_into_peft_on_the_base(tiny_run):
    peft = pytest.importorskip("peft")
    from labs.base import load_base

    base, _ = load_base()
    model = peft.PeftModel.from_pretrained(base, str(tiny_run[2] / "adapter"))
    assert sum(p.numel() for n, p in model.named_parameters() if "lora_" in n) == \
        tiny_run[0]["variants"]["qlora"]["trainable_params"]


def test_events_tagged_and_paging_is_honest(tiny_run):
    res, events, _ = tiny_run
    steps = [e for e in events if e["type"] == "step"]
    assert {e["series"] for e in steps} == {"qlora", "lora", "full", "merge"}
    assert steps[-1]["progress"] == 1.0
    assert res["paging"]["possible"] is False and "cpu" in res["paging"]["why"]
