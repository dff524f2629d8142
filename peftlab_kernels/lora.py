"""Fused LoRA linear: one autograd Function, hand-written backward.

        x ──► W (frozen) ──────────────┐
        │                              (+) ──► y
        └─► A (r×in) ─► B (out×r) ─► ×s ┘        B = 0, A ~ N(0, σ²) at init (Hu et al. 2021, §4.1)

Forward (x: (N, in), W: (out, in), A: (r, in), B: (out, r), s = scaling):

    u = x Aᵀ                        (N, r)     the rank-r bottleneck, kept for backward
    y = x Wᵀ + b + s · u Bᵀ         (N, out)

Backward, by the chain rule with g = ∂L/∂y (N, out):

    ∂L/∂B = s · gᵀ u                (out, r)
    ∂L/∂u = s · g B                 (N, r)
    ∂L/∂A = (∂L/∂u)ᵀ x              (r, in)
    ∂L/∂x = g W + (∂L/∂u) A         (N, in)
    ∂L/∂W, ∂L/∂b: none (frozen).

Why one Function: autograd on the unfused formula stores x twice and the (N, out) product of the
LoRA branch; here only x and u (N, r) are saved, and the Triton twin fuses `x Wᵀ + s·u Bᵀ` into one
GEMM pass over the output tile (K-loop over `in`, then a short r-loop for the LoRA term).

PEFT equivalent: `base(x) + lora_B(lora_A(dropout(x))) * scaling` (peft/tuners/lora/layer.py).
"""
from __future__ import annotations

import torch

from peftlab_kernels._dispatch import use_triton

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _check(x, weight, bias, lora_A, lora_B, scaling) -> None:
    for name, t in (("x", x), ("weight", weight), ("lora_A", lora_A), ("lora_B", lora_B)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"lora_linear: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype not in _FLOATS:
            raise TypeError(f"lora_linear: {name}.dtype={t.dtype}; allowed: {_FLOATS}")
        if t.dtype != x.dtype:
            raise TypeError(f"lora_linear: {name}.dtype={t.dtype} differs from x.dtype={x.dtype}; cast first")
    if weight.dim() != 2 or lora_A.dim() != 2 or lora_B.dim() != 2:
        raise ValueError(
            f"lora_linear: weight, lora_A, lora_B must be 2-D, got {tuple(weight.shape)}, "
            f"{tuple(lora_A.shape)}, {tuple(lora_B.shape)}"
        )
    out_f, in_f = weight.shape
    r = lora_A.shape[0]
    if x.dim() < 1 or x.shape[-1] != in_f:
        raise ValueError(f"lora_linear: x.shape={tuple(x.shape)} must end in in_features={in_f}")
    if x.numel() == 0:
        raise ValueError(f"lora_linear: x is empty, shape={tuple(x.shape)}")
    if lora_A.shape != (r, in_f) or r < 1:
        raise ValueError(f"lora_linear: lora_A.shape={tuple(lora_A.shape)}; expected (r>=1, {in_f})")
    if lora_B.shape != (out_f, r):
        raise ValueError(f"lora_linear: lora_B.shape={tuple(lora_B.shape)}; expected ({out_f}, {r})")
    if bias is not None and (bias.shape != (out_f,) or bias.dtype != x.dtype):
        raise ValueError(
            f"lora_linear: bias shape/dtype {tuple(bias.shape)}/{bias.dtype}; expected ({out_f},)/{x.dtype}"
        )
    if weight.requires_grad or (bias is not None and bias.requires_grad):
        raise ValueError("lora_linear: weight and bias are frozen; call .requires_grad_(False) on them")
    if not isinstance(scaling, (int, float)) or isinstance(scaling, bool):
        raise TypeError(f"lora_linear: scaling must be a float, got {type(scaling).__name__}")


# ---------------------------------------------------------------------------------------------
# PyTorch reference (also the CPU path)
# ---------------------------------------------------------------------------------------------
def lora_forward_torch(x2, weight, bias, lora_A, lora_B, scaling):
    """x2: (N, in) -> (y (N, out), u (N, r))."""
    u = x2 @ lora_A.t()                                   # (N, r)
    y = torch.addmm(bias, x2, weight.t()) if bias is not None else x2 @ weight.t()  # (N, out)
    y = torch.addmm(y, u, lora_B.t(), alpha=scaling)      # (N, out)  y += s · u Bᵀ
    return y, u


def lora_backward_torch(g, x2, u, weight, lora_A, lora_B, scaling, need_x: bool):
    """g: (N, out) -> (dx (N, in) or None, dA (r, in), dB (out, r))."""
    dB = scaling * (g.t() @ u)                            # (out, r)
    du = scaling * (g @ lora_B)                           # (N, r)
    dA = du.t() @ x2                                      # (r, in)
    dx = torch.addmm(du @ lora_A, g, weight) if need_x else None   # (N, in)
    return dx, dA, dB


class LoRALinearFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, lora_A, lora_B, scaling):
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1])                   # (N, in)
        if use_triton(x):
            from peftlab_kernels.lora_triton import lora_forward_triton

            y, u = lora_forward_triton(x2, weight, bias, lora_A, lora_B, scaling)
        else:
            y, u = lora_forward_torch(x2, weight, bias, lora_A, lora_B, scaling)
        ctx.save_for_backward(x2, u, weight, lora_A, lora_B)
        ctx.scaling = float(scaling)
        ctx.lead = lead
        return y.reshape(*lead, weight.shape[0])

    @staticmethod
    def backward(ctx, gy):
        x2, u, weight, lora_A, lora_B = ctx.saved_tensors
        g = gy.reshape(-1, weight.shape[0])               # (N, out)
        need_x = ctx.needs_input_grad[0]
        if use_triton(g):
            from peftlab_kernels.lora_triton import lora_backward_triton

            dx, dA, dB = lora_backward_triton(g, x2, u, weight, lora_A, lora_B, ctx.scaling, need_x)
        else:
            dx, dA, dB = lora_backward_torch(g, x2, u, weight, lora_A, lora_B, ctx.scaling, need_x)
        if dx is not None:
            dx = dx.reshape(*ctx.lead, weight.shape[1])
        dA = dA if ctx.needs_input_grad[3] else None
        dB = dB if ctx.needs_input_grad[4] else None
        return dx, None, None, dA, dB, None


def lora_linear(x, weight, bias, lora_A, lora_B, scaling: float) -> torch.Tensor:
    """y = x Wᵀ + b + scaling · (x Aᵀ) Bᵀ, any leading dims on x; grads flow to x, lora_A, lora_B."""
    _check(x, weight, bias, lora_A, lora_B, scaling)
    return LoRALinearFn.apply(x, weight, bias, lora_A, lora_B, float(scaling))


def lora_linear_reference(x, weight, bias, lora_A, lora_B, scaling: float) -> torch.Tensor:
    """The unfused formula, autograd does the backward: the oracle the fused op is tested against."""
    y = x @ weight.t() + scaling * ((x @ lora_A.t()) @ lora_B.t())
    return y + bias if bias is not None else y
