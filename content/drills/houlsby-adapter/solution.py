import torch
import torch.nn.functional as F


def houlsby_adapter(h: torch.Tensor, W_down: torch.Tensor, b_down: torch.Tensor, W_up: torch.Tensor,
                    b_up: torch.Tensor) -> torch.Tensor:
    z = F.gelu(h @ W_down.T + b_down)            # (..., m) the bottleneck
    return h + (z @ W_up.T + b_up)               # (..., d) residual: identity when W_up = b_up = 0
