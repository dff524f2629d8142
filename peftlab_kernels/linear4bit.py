"""4-bit linear: y = x Ŵᵀ + b with Ŵ = dequantize(q) frozen, gradient to x only (QLoRA's base layer).

        x (…, in) ──► [ Ŵ = level[code] · absmax ]ᵀ ──► + b ──► y (…, out)
                        4-bit, frozen, never stored dequantized between calls

QLoRA §3: "we dequantize the storage data type to the computation data type to perform the forward
and backward pass, but we only compute weight gradients for the LoRA parameters":

    forward   y  = x Ŵᵀ + b                       (N, out)
    backward  ∂L/∂x = (∂L/∂y) Ŵ                    (N, in)   Ŵ dequantized again, not saved
              ∂L/∂Ŵ, ∂L/∂b: none (frozen; LoRA's A and B carry the update)

Compute dtype: bf16 on CUDA, fp32 on CPU unless `compute_dtype` says otherwise; x is cast to it and
y cast back to x.dtype, as bitsandbytes' `Linear4bit(compute_dtype=...)` does. On CPU the result is
bitwise that of `bnb.nn.Linear4bit` for the same weight (same dequantized Ŵ, same `F.linear`).
On CUDA the forward is one Triton kernel that dequantizes each weight tile inside the K-loop of the
matmul (`peftlab_kernels.quant4_triton.matmul_4bit_triton`); the full Ŵ is never materialized.
"""
from __future__ import annotations

import torch

from peftlab_kernels._dispatch import use_triton
from peftlab_kernels.nf4 import DTYPES, NF4Tensor, dequantize_4bit

COMPUTE_DTYPES = DTYPES + (torch.float64,)   # float64 for gradcheck: Ŵ is exact in it


def _dequant(q: NF4Tensor, dtype: torch.dtype) -> torch.Tensor:
    return dequantize_4bit(q, torch.float32).to(dtype) if dtype == torch.float64 else dequantize_4bit(q, dtype)


def _check(x, q, bias) -> None:
    if not isinstance(q, NF4Tensor):
        raise TypeError(f"linear_4bit: q must be an NF4Tensor (from quantize_nf4), got {type(q).__name__}")
    if len(q.shape) != 2:
        raise ValueError(f"linear_4bit: q.shape={tuple(q.shape)} must be 2-D (out_features, in_features)")
    if not isinstance(x, torch.Tensor) or x.dtype not in COMPUTE_DTYPES:
        got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
        raise TypeError(f"linear_4bit: x must be a float tensor ({COMPUTE_DTYPES}), got {got}")
    if x.dim() < 1 or x.shape[-1] != q.shape[1]:
        raise ValueError(f"linear_4bit: x.shape={tuple(x.shape)} must end in in_features={q.shape[1]}")
    if x.numel() == 0:
        raise ValueError(f"linear_4bit: x is empty, shape={tuple(x.shape)}")
    if x.device != q.device:
        raise ValueError(f"linear_4bit: x is on {x.device} but the weight is on {q.device}")
    if bias is not None:
        if bias.shape != (q.shape[0],):
            raise ValueError(f"linear_4bit: bias.shape={tuple(bias.shape)}; expected ({q.shape[0]},)")
        if bias.requires_grad:
            raise ValueError("linear_4bit: bias is frozen here; call .requires_grad_(False) on it")


class Linear4bitFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x2, bias, q: NF4Tensor):
        """x2: (N, in) in the compute dtype → (N, out)."""
        ctx.q = q
        if use_triton(x2):
            from peftlab_kernels.quant4_triton import matmul_4bit_triton

            return matmul_4bit_triton(x2, q.packed, q.block_absmax(), q.shape, q.blocksize, q.quant_type, bias)
        w = _dequant(q, x2.dtype)                                  # (out, in), freed after use
        return torch.nn.functional.linear(x2, w, bias)

    @staticmethod
    def backward(ctx, gy):
        if not ctx.needs_input_grad[0]:
            return None, None, None
        w = _dequant(ctx.q, gy.dtype)                              # (out, in) again, not saved
        return gy @ w, None, None                                         # (N, in)


def linear_4bit(x: torch.Tensor, q: NF4Tensor, bias: torch.Tensor | None = None,
                compute_dtype: torch.dtype | None = None) -> torch.Tensor:
    """y = x Ŵᵀ + b for a frozen 4-bit Ŵ; any leading dims on x; grad flows to x only."""
    _check(x, q, bias)
    if compute_dtype is None:
        compute_dtype = torch.bfloat16 if x.is_cuda else torch.float32
    if compute_dtype not in COMPUTE_DTYPES:
        raise TypeError(f"linear_4bit: compute_dtype={compute_dtype}; allowed: {COMPUTE_DTYPES}")
    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1]).to(compute_dtype)                     # (N, in)
    b = bias.to(compute_dtype) if bias is not None else None
    y = Linear4bitFn.apply(x2, b, q)                                      # (N, out)
    return y.reshape(*lead, q.shape[0]).to(x.dtype)
