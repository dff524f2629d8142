import math

import torch


def _scaling(alpha: float, r: int, use_rslora: bool) -> float:
    return alpha / math.sqrt(r) if use_rslora else alpha / r


def merge(W0: torch.Tensor, A: torch.Tensor, B: torch.Tensor, alpha: float, r: int,
          use_rslora: bool = False) -> torch.Tensor:
    """W0 + s · B A: (d, r) @ (r, k) -> (d, k), added in the weight's dtype."""
    return W0 + (_scaling(alpha, r, use_rslora) * (B @ A)).to(W0.dtype)


def unmerge(W: torch.Tensor, A: torch.Tensor, B: torch.Tensor, alpha: float, r: int,
            use_rslora: bool = False) -> torch.Tensor:
    """W - s · B A: exactly what merge added."""
    return W - (_scaling(alpha, r, use_rslora) * (B @ A)).to(W.dtype)
