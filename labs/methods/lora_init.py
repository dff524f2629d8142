"""Data-aware LoRA inits: PiSSA and LoftQ. Both start B·A from the SVD of a weight instead of from B = 0.

PiSSA (Meng et al. 2024, arXiv:2404.02948): train the principal part, freeze the residual.

    W (out, in) = U S Vᵀ                              full SVD, singular values sorted
    B = U_r √(S_r / s)      (out, r)                  s = scaling = lora_alpha / r (or / √r, rsLoRA)
    A = √(S_r / s) V_rᵀ     (r, in)                   so s·B·A = U_r S_r V_rᵀ, the best rank-r part of W
    W_res = W − s·B·A                                  the frozen base keeps only the small singular values
    ⇒ W_res + s·B·A = W: the model starts exactly at the base, but the gradient flows into the directions
      that carry most of W (PEFT's init_lora_weights="pissa", the same formula, peft/tuners/lora/layer.py
      `pissa_init`). On a 4-bit base the residual is re-quantized (QPiSSA, §4.4): its error is smaller
      than quantizing W itself, because the large singular values are no longer in it.

LoftQ (Li et al. 2023, arXiv:2310.08659, Algorithm 1): a 4-bit base plus an adapter that corrects it.

    R₀ = W
    for t = 1..T (loftq_iter):
        Q_t   = NF4(W − s·B_{t−1}A_{t−1})                quantize what the adapter does not carry
        B_t, A_t = rank-r SVD of (W − deq(Q_t)) / s     the adapter carries the quantization error
    base ← Q_T,  lora ← (A_T, B_T)
    ‖W − (deq(Q_T) + s·B_T A_T)‖_F ≤ ‖W − deq(NF4(W))‖_F        (T = 1: the best rank-r fix of QLoRA's error)

QLoRA's own init (B = 0) starts at deq(NF4(W)) — the quantized model, off the base by the whole
quantization error. LoftQ starts closer to W. Unlike PEFT (which ignores lora_alpha in loftq_init and
expects lora_alpha = r), the singular values here are divided by s, so any lora_alpha gives s·B·A = L·R.
"""
from __future__ import annotations

import torch
from torch import nn

DEFAULT_QUANT = {"quant_type": "nf4", "blocksize": 64, "double_quant": True}


def svd_split(w: torch.Tensor, r: int, scaling: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(B (out, r), A (r, in)) with scaling·B·A = the rank-r truncated SVD of w (fp32, full SVD)."""
    U, S, Vh = torch.linalg.svd(w.float(), full_matrices=False)     # (out, k), (k,), (k, in)
    Sr = S[:r] / scaling                                             # (r,)
    root = torch.sqrt(Sr)
    A = root[:, None] * Vh[:r]                                       # (r, in) = diag(√S_r) V_rᵀ
    B = U[:, :r] * root[None, :]                                     # (out, r) = U_r diag(√S_r)
    return B, A


def _quantized(base: nn.Module, weight: torch.Tensor, quant: dict) -> nn.Module:
    """A Linear4bit holding NF4(weight), with `base`'s bias."""
    from labs.methods.linear4bit import Linear4bit

    dense = nn.Linear(weight.shape[1], weight.shape[0], bias=base.bias is not None, dtype=weight.dtype,
                      device=weight.device)
    with torch.no_grad():
        dense.weight.copy_(weight)
        if base.bias is not None:
            dense.bias.copy_(base.bias)
    return Linear4bit(dense, compute_dtype=getattr(base, "compute_dtype", None) or weight.dtype, **quant)


def _quant_settings(base: nn.Module, quant: dict | None) -> dict:
    q = getattr(base, "q", None)
    if q is not None:                                                # keep a 4-bit base's own format
        return {"quant_type": q.quant_type, "blocksize": q.blocksize, "double_quant": q.double_quant}
    return {**DEFAULT_QUANT, **(quant or {})}


@torch.no_grad()
def pissa_init(layer) -> None:
    """In place on a LoraLinear: A, B ← principal part of W; base ← residual (re-quantized if the base is 4-bit)."""
    base = layer.base_layer
    w = layer.base_weight().float()                                  # (out, in); dequantized if 4-bit
    B, A = svd_split(w, layer.r, layer.scaling)
    layer.lora_A.weight.copy_(A)
    layer.lora_B.weight.copy_(B)
    residual = w - layer.scaling * (B @ A)                           # (out, in)
    if layer.is_quantized:
        layer.base_layer = _quantized(base, residual.to(base.compute_dtype), _quant_settings(base, None))
    else:
        base.weight.copy_(residual.to(base.weight.dtype))


@torch.no_grad()
def loftq(w: torch.Tensor, base: nn.Module, r: int, scaling: float, loftq_iter: int = 1,
          quant: dict | None = None) -> tuple[nn.Module, torch.Tensor, torch.Tensor, list[float]]:
    """Algorithm 1 on one weight w (out, in): (Linear4bit of Q_T, B_T, A_T, ‖W − deq(Q_t) − s·B_tA_t‖_F per t)."""
    w = w.float()
    quant = _quant_settings(base, quant)
    target = w                                                        # W − s·B_{t−1}A_{t−1}; B_0 A_0 = 0
    errors: list[float] = []
    for _ in range(loftq_iter):
        q4 = _quantized(base, target, quant)
        deq = q4.dequantize().float()                                 # (out, in)
        B, A = svd_split(w - deq, r, scaling)
        approx = scaling * (B @ A)
        errors.append(torch.linalg.matrix_norm(w - deq - approx).item())
        target = w - approx
    return q4, B, A, errors


@torch.no_grad()
def loftq_init(layer, loftq_iter: int = 1, quant: dict | None = None) -> list[float]:
    """In place on a LoraLinear over a full-precision linear: the base becomes the 4-bit Q_T, A/B its correction."""
    if layer.is_quantized:
        raise TypeError("init='loftq' needs the full-precision weight: apply it to a dense base "
                        "(lora.apply(..., init='loftq') or qlora.apply(..., init='loftq'), which quantizes for you)")
    q4, B, A, errors = loftq(layer.base_layer.weight, layer.base_layer, layer.r, layer.scaling, loftq_iter, quant)
    layer.lora_A.weight.copy_(A)
    layer.lora_B.weight.copy_(B)
    layer.base_layer = q4
    layer.loftq_errors = errors
    return errors


@torch.no_grad()
def reconstruction_error(w: torch.Tensor, layer) -> dict:
    """‖W − (deq(base) + s·B·A)‖_F of a LoraLinear against the original weight w, and relative to ‖W‖_F."""
    approx = layer.base_weight().float() + layer.delta_weight().float()
    err = torch.linalg.matrix_norm(w.float() - approx).item()
    return {"fro": err, "relative": err / max(torch.linalg.matrix_norm(w.float()).item(), 1e-30)}
