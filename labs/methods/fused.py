"""The one call into `peftlab_kernels.lora.lora_linear`, made autocast-aware.

`torch.autocast` casts the inputs of nn.Linear but not those of a custom autograd Function, and under
bf16 autocast on CUDA the attention output arrives in bf16 while the frozen weight is fp32. Do what
autocast would do for a linear: compute in the autocast dtype (the LoRA grads flow back through the cast
to the fp32 A and B); without autocast, compute in the weight's dtype.
"""
from __future__ import annotations

import torch

from peftlab_kernels.lora import lora_linear


def compute_dtype(x: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    kind = x.device.type
    if torch.is_autocast_enabled(kind):
        return torch.get_autocast_dtype(kind)
    return weight.dtype


def fused_lora(x, weight, bias, lora_A, lora_B, scaling: float) -> torch.Tensor:
    """y = x Wᵀ + b + scaling · (x Aᵀ) Bᵀ (one fused kernel), all operands in one dtype."""
    dt = compute_dtype(x, weight)

    def cast(t):
        return t if t is None or t.dtype == dt else t.to(dt)

    return lora_linear(cast(x), cast(weight), cast(bias), cast(lora_A), cast(lora_B), scaling)
