import torch


def lora_backward(x: torch.Tensor, A: torch.Tensor, B: torch.Tensor, dy: torch.Tensor,
                  scaling: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of y = scaling · (x Aᵀ) Bᵀ, by hand (no autograd).

    x (..., k), A (r, k), B (d, r), dy = dL/dy (..., d)
    returns (dA (r, k), dB (d, r), dx (..., k))
    """
    raise NotImplementedError
