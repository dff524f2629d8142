import torch


def houlsby_adapter(h: torch.Tensor, W_down: torch.Tensor, b_down: torch.Tensor, W_up: torch.Tensor,
                    b_up: torch.Tensor) -> torch.Tensor:
    """h (..., d), W_down (m, d), b_down (m,), W_up (d, m), b_up (d,) -> (..., d)
    = h + up(gelu(down(h)))   (exact GELU)"""
    raise NotImplementedError
