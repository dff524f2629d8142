"""QLoRA: NF4 base (peftlab_kernels.nf4) + LoRA. Oracle: peft's LoRA on bitsandbytes' Linear4bit (CPU), same bytes."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from labs.methods import lora, qlora, trainable_report
from tests.methods.helpers import batch, max_diff, randomize_, twins

TOL = 1e-5


def _bnb_quantize_(model):
    """Replace every linear except lm_head with bitsandbytes' Linear4bit (nf4, blocksize 64, double quant)."""
    bnb = pytest.importorskip("bitsandbytes")
    for name, mod in list(model.named_modules()):
        if isinstance(mod, nn.Linear) and name != "lm_head":
            q = bnb.nn.Linear4bit(mod.in_features, mod.out_features, bias=mod.bias is not None,
                                  compute_dtype=torch.float32, quant_type="nf4", compress_statistics=True)
            q.weight = bnb.nn.Params4bit(mod.weight.data.clone(), requires_grad=False, quant_type="nf4",
                                         compress_statistics=True, blocksize=64)
            if mod.bias is not None:
                q.bias = nn.Parameter(mod.bias.data.clone(), requires_grad=False)
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, q.to("cpu"))
    return model


@pytest.mark.parametrize("arch,cfg", [("llama", dict(r=4, lora_alpha=8, target_modules="all-linear")),
                                      ("qwen2", dict(r=4, lora_alpha=8, target_modules=["q_proj", "o_proj"]))])
def test_parity_with_peft_on_bitsandbytes(arch, cfg):
    from peft import LoraConfig, get_peft_model

    ours, theirs = twins(arch)
    ids, mask = batch()
    # train() on purpose: bitsandbytes' CPU Linear4bit, once switched from train to eval, repacks the weight for
    # an approximate inference kernel (≈3e-3 off its own dequantize-then-matmul). lora_dropout=0: same function.
    pm = get_peft_model(_bnb_quantize_(theirs), LoraConfig(**cfg)).train()
    randomize_([p for n, p in pm.named_parameters() if "lora_" in n])
    qlora.apply(ours, **cfg).eval()
    with torch.no_grad():
        for name, m in lora.lora_layers(ours).items():
            pmod = pm.base_model.model.get_submodule(name)
            m.lora_A.weight.copy_(pmod.lora_A["default"].weight)
            m.lora_B.weight.copy_(pmod.lora_B["default"].weight)
    assert trainable_report(ours)["trainable"] == pm.get_nb_trainable_parameters()[0]
    assert trainable_report(ours)["total"] == pm.get_nb_trainable_parameters()[1]
    assert max_diff(ours(input_ids=ids, attention_mask=mask).logits,
                    pm(input_ids=ids, attention_mask=mask).logits) <= TOL


def test_storage_is_4bit_and_trains_end_to_end():
    m, _ = twins()
    ids, mask = batch()
    qlora.apply(m, r=4, lora_alpha=8)
    bits = qlora.base_bits(m)
    assert bits["weights"] == sum(p.numel() for n, p in twins()[0].named_parameters()
                                  if n.endswith("proj.weight"))
    assert 4.0 < bits["bits_per_param"] < 4.2                          # NF4 + double-quantized absmax
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    m.train()
    for _ in range(8):
        loss = m(input_ids=ids, attention_mask=mask, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05
    assert all(".lora_" in n for n, p in m.named_parameters() if p.requires_grad)


@pytest.mark.parametrize("use_dora", [False, True])
def test_merge_dequantizes_and_says_precision(use_dora):
    m, _ = twins()
    ids, mask = batch()
    qlora.apply(m, r=4, lora_alpha=8, target_modules=["q_proj", "down_proj"], use_dora=use_dora).eval()
    randomize_([p for n, p in m.named_parameters() if "lora_B" in n])
    adapted = m(input_ids=ids, attention_mask=mask).logits
    report = qlora.merge(m)
    assert report == {"precision": "float32", "layers": 4, "max_abs_requant_error": 0.0}
    assert isinstance(m.model.layers[0].self_attn.q_proj, nn.Linear)
    assert isinstance(m.model.layers[0].self_attn.k_proj, qlora.Linear4bit)   # untouched: still 4-bit
    assert max_diff(m(input_ids=ids, attention_mask=mask).logits, adapted) <= 1e-4


def test_merge_requantize_reports_error():
    m, _ = twins()
    qlora.apply(m, r=4, lora_alpha=8, target_modules=["v_proj"])
    randomize_([p for n, p in m.named_parameters() if "lora_B" in n])
    report = qlora.merge(m, requantize=True)
    assert report["precision"] == "nf4 (requantized)" and report["max_abs_requant_error"] > 0
    assert isinstance(m.model.layers[1].self_attn.v_proj, qlora.Linear4bit)
