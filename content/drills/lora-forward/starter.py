import math

import torch


def lora_forward(x: torch.Tensor, W0: torch.Tensor, b: torch.Tensor | None, A: torch.Tensor, B: torch.Tensor,
                 alpha: float, r: int, use_rslora: bool = False) -> torch.Tensor:
    """One LoRA linear layer.

    x  (..., k)   any leading dims (or none)
    W0 (d, k)     frozen base weight, (out, in)
    b  (d,)       bias, or None
    A  (r, k)     LoRA down-projection
    B  (d, r)     LoRA up-projection
    returns (..., d) = x W0ᵀ + b + s · (x Aᵀ) Bᵀ,  s = alpha / r  (alpha / √r if use_rslora), dtype of x
    """
    raise NotImplementedError("write the LoRA forward pass")
