import torch


def lora_backward(x: torch.Tensor, A: torch.Tensor, B: torch.Tensor, dy: torch.Tensor,
                  scaling: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """y = s · u Bᵀ with u = x Aᵀ; the chain rule through the rank-r bottleneck."""
    k, d = A.shape[1], B.shape[0]
    x2 = x.reshape(-1, k)                          # (N, k)
    g = dy.reshape(-1, d)                          # (N, d)
    u = x2 @ A.T                                   # (N, r)
    dB = scaling * (g.T @ u)                       # (d, r)
    du = scaling * (g @ B)                         # (N, r)
    dA = du.T @ x2                                 # (r, k)
    dx = (du @ A).reshape(x.shape)                 # (..., k)
    return dA, dB, dx
