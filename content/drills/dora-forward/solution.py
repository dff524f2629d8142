import torch


def dora_forward(x: torch.Tensor, W0: torch.Tensor, A: torch.Tensor, B: torch.Tensor, m: torch.Tensor,
                 alpha: float, r: int) -> torch.Tensor:
    s = alpha / r
    with torch.no_grad():                                   # DoRA §4.3: the norm is a constant in backward
        norm = torch.linalg.vector_norm(W0 + s * (B @ A), dim=1)          # (d,) one per output row
    y = x @ W0.T + s * ((x @ A.T) @ B.T)                    # (..., d) = x Vᵀ without forming V
    return (m / norm) * y                                   # (..., d)
