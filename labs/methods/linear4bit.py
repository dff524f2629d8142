"""Phase 1 of QLoRA, on its own: a frozen linear whose weight is stored in 4 bits (NF4 / FP4 / INT4).

    nn.Linear(W fp32)  ──quantize_4bit──►  Linear4bit: packed codes (out·in / 2 bytes) + absmax per block
                                           (+ double quant: qabsmax, absmax_scale, absmax_offset)
    y = x · dequant(W_4bit)ᵀ + b          (peftlab_kernels.linear4bit.linear_4bit: no fp32 copy of W kept)

Below `lora`, `lora_init` (LoftQ) and `qlora`, so none of them needs the others to build a 4-bit base.
"""
from __future__ import annotations

import torch
from torch import nn

from peftlab_kernels.linear4bit import linear_4bit
from peftlab_kernels.nf4 import NF4Tensor, dequantize_4bit, quantize_4bit
from labs.methods import inject

QUANT_STATE = ("packed", "absmax", "qabsmax", "absmax_scale", "absmax_offset")   # the NF4Tensor buffers
QUANT_CONSTANTS = QUANT_STATE[1:]                # everything but the 4-bit codes: the quantization constants


class Linear4bit(nn.Module):
    """A frozen linear whose weight is an NF4Tensor, kept as buffers (they move with .to() and save)."""

    def __init__(self, linear: nn.Linear, quant_type: str = "nf4", blocksize: int = 64, double_quant: bool = True,
                 compute_dtype: torch.dtype | None = None):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.compute_dtype = compute_dtype or linear.weight.dtype
        q = quantize_4bit(linear.weight.data, quant_type, blocksize, double_quant)
        self._meta = dict(shape=q.shape, dtype=q.dtype, blocksize=q.blocksize, quant_type=q.quant_type)
        for k, v in q.state_tensors().items():
            self.register_buffer(k, v)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.data.clone(), requires_grad=False)
        self.logical_numel = q.numel()                       # out·in weights, whatever the storage

    @property
    def q(self) -> NF4Tensor:
        return NF4Tensor(**self._meta, **{k: getattr(self, k) for k in QUANT_STATE if hasattr(self, k)})

    def dequantize(self) -> torch.Tensor:
        return dequantize_4bit(self.q, self.compute_dtype)   # (out, in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        return linear_4bit(x, self.q, bias)

    def extra_repr(self) -> str:
        q = self.q
        return (f"in_features={self.in_features}, out_features={self.out_features}, {q.quant_type}, "
                f"blocksize={q.blocksize}, double_quant={q.double_quant}, bits/param={q.bits_per_param():.3f}")


def quantize_model(model: nn.Module, quant_type: str = "nf4", blocksize: int = 64, double_quant: bool = True,
                   compute_dtype: torch.dtype | None = None) -> list[str]:
    """Phase 1: every nn.Linear except the output head becomes a frozen Linear4bit, in place."""
    make = lambda _n, m: Linear4bit(m, quant_type, blocksize, double_quant, compute_dtype)  # noqa: E731
    return inject.inject(model, "all-linear", make)
