import torch


def dora_forward(x: torch.Tensor, W0: torch.Tensor, A: torch.Tensor, B: torch.Tensor, m: torch.Tensor,
                 alpha: float, r: int) -> torch.Tensor:
    """DoRA: x (..., k), W0 (d, k), A (r, k), B (d, r), m (d,) -> (..., d) = x W'ᵀ,

    W' = m * V / ||V||_row,  V = W0 + (alpha / r) B A;  ||V||_row (d,) is a constant in backward.
    """
    raise NotImplementedError
