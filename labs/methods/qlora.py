"""QLoRA: LoRA on a 4-bit NormalFloat base (Dettmers et al. 2023, arXiv:2305.14314).

Two phases, as in gpt-fast's quantization: first compute the new state and swap the modules, then adapt.

    phase 1  every linear except the output head:   nn.Linear(W fp32)  ──►  Linear4bit(NF4(W))
             W is stored as 4-bit codes + one absmax per 64-block (+ double quant of the absmax:
             8-bit codes, ≈ 4.127 bits/param, measured by NF4Tensor.bits_per_param())
    phase 2  LoRA on the targets, A and B in the compute dtype (fp32 here, bf16 on GPU):

        y = x · dequant(W_nf4)ᵀ + b + scaling · (x Aᵀ) Bᵀ      only A, B train; the gradient reaches x
                                                              through the frozen 4-bit weight (linear_4bit)

Merge is honest about precision: W_nf4 cannot absorb a small update, so `merge` dequantizes,
W' = dequant(W_nf4) + s·B A, and leaves a DENSE linear in the compute dtype (4 → 32 bits per weight);
`merge(..., requantize=True)` quantizes W' back to NF4 and reports the error that adds. Note that
dequant(W_nf4) ≠ W0: the adapter was trained against the quantized base, which is what it corrects.
"""
from __future__ import annotations

import torch
from torch import nn

from labs.methods import inject, lora
from labs.methods.linear4bit import Linear4bit, quantize_model  # noqa: F401  (phase 1, re-exported)


def apply(model: nn.Module, r: int = 8, lora_alpha: float = 16, target_modules="all-linear",
          lora_dropout: float = 0.0, use_rslora: bool = False, use_dora: bool = False, init: str = "standard",
          quant_type: str = "nf4", blocksize: int = 64, double_quant: bool = True, loftq_iter: int = 1) -> nn.Module:
    """Quantize the base to 4 bits (phase 1), then add LoRA on `target_modules` (phase 2).
    init="loftq": the targets are quantized by LoftQ itself (it needs their full-precision W), the rest first."""
    quant = {"quant_type": quant_type, "blocksize": blocksize, "double_quant": double_quant}
    if init == "loftq":
        targets = inject.match_targets(model, target_modules)
        others = [n for n in inject.match_targets(model, "all-linear") if n not in targets]
        if others:
            inject.inject(model, others, lambda _n, m: Linear4bit(m, **quant))
        lora.apply(model, r=r, lora_alpha=lora_alpha, target_modules=target_modules, lora_dropout=lora_dropout,
                   use_rslora=use_rslora, use_dora=use_dora, init=init, loftq_iter=loftq_iter, loftq_quant=quant)
    else:
        quantize_model(model, quant_type, blocksize, double_quant)
        lora.apply(model, r=r, lora_alpha=lora_alpha, target_modules=target_modules, lora_dropout=lora_dropout,
                   use_rslora=use_rslora, use_dora=use_dora, init=init, loftq_iter=loftq_iter,
                   linear_types=(Linear4bit,))
    model.peft_lab_config = {**model.peft_lab_config, "method": "qlora", "quant_type": quant_type,
                             "blocksize": blocksize, "double_quant": double_quant}
    return model


def base_bits(model: nn.Module) -> dict:
    """Measured storage of the 4-bit base: {"weights", "bytes", "bits_per_param"} over every Linear4bit."""
    mods = [m for m in model.modules() if isinstance(m, Linear4bit)]
    n = sum(m.logical_numel for m in mods)
    nbytes = sum(m.q.nbytes() for m in mods)
    return {"weights": n, "bytes": nbytes, "bits_per_param": 8.0 * nbytes / max(n, 1)}


def _dense(m4: Linear4bit, weight: torch.Tensor) -> nn.Linear:
    dense = nn.Linear(m4.in_features, m4.out_features, bias=m4.bias is not None, dtype=weight.dtype,
                      device=weight.device)
    with torch.no_grad():
        dense.weight.copy_(weight)
        if m4.bias is not None:
            dense.bias.copy_(m4.bias)
    return dense.requires_grad_(False)


@torch.no_grad()
def merge(model: nn.Module, requantize: bool = False) -> dict:
    """Fold each adapter into its dequantized base and remove the adapter code.

    requantize=False: the merged layers become dense nn.Linear in the compute dtype (exact merge).
    requantize=True:  they are quantized back to 4 bits (Linear4bit); the report gives the error that adds.
    Returns {"precision", "layers", "max_abs_requant_error"} — what precision the merge left behind."""
    worst, precision = 0.0, None
    names = list(lora.lora_layers(model))
    for name, m in lora.lora_layers(model).items():
        if not isinstance(m.base_layer, Linear4bit):
            m.merge()
            inject.replace_module(model, name, m.base_layer)
            continue
        m4 = m.base_layer
        if m.use_dora:
            merged, _ = m.dora.merged_weight(m)                           # (out, in)
        else:
            merged = m4.dequantize() + m.delta_weight().to(m4.compute_dtype)   # (out, in)
        dense = _dense(m4, merged)
        precision = str(m4.compute_dtype).replace("torch.", "")
        if requantize:
            q4 = Linear4bit(dense, m4.q.quant_type, m4.q.blocksize, m4.q.double_quant, m4.compute_dtype)
            worst = max(worst, (q4.dequantize() - merged).abs().max().item())
            inject.replace_module(model, name, q4)
        else:
            inject.replace_module(model, name, dense)
    model.__dict__.pop("peft_lab_config", None)
    precision = "nf4 (requantized)" if requantize else precision
    return {"precision": precision, "layers": len(names), "max_abs_requant_error": worst}


def merge_and_unload(model: nn.Module) -> nn.Module:
    """`merge(model, requantize=False)`: dense linears in the compute dtype again, adapters folded in; the model."""
    merge(model, requantize=False)
    return model
