import math

import torch


def lora_forward(x: torch.Tensor, W0: torch.Tensor, b: torch.Tensor | None, A: torch.Tensor, B: torch.Tensor,
                 alpha: float, r: int, use_rslora: bool = False) -> torch.Tensor:
    """y = x W0ᵀ + b + s · (x Aᵀ) Bᵀ, s = alpha / r (rsLoRA: alpha / √r)."""
    s = alpha / math.sqrt(r) if use_rslora else alpha / r
    y = x @ W0.T                                   # (..., d)   frozen path
    if b is not None:
        y = y + b
    u = x @ A.T                                    # (..., r)   rank-r bottleneck first: O(r(d + k))
    return y + s * (u @ B.T)                       # (..., d)
