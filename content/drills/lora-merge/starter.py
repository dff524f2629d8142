import math

import torch


def merge(W0: torch.Tensor, A: torch.Tensor, B: torch.Tensor, alpha: float, r: int,
          use_rslora: bool = False) -> torch.Tensor:
    """W0 (d, k), A (r, k), B (d, r) -> merged weight (d, k) = W0 + s · B A, s = alpha/r (alpha/√r if use_rslora)."""
    raise NotImplementedError


def unmerge(W: torch.Tensor, A: torch.Tensor, B: torch.Tensor, alpha: float, r: int,
            use_rslora: bool = False) -> torch.Tensor:
    """W (d, k) merged -> the base weight (d, k) = W - s · B A."""
    raise NotImplementedError
