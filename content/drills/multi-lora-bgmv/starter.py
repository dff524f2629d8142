import torch


def bgmv(x: torch.Tensor, A: torch.Tensor, B: torch.Tensor, idx: torch.Tensor, scaling: torch.Tensor) -> torch.Tensor:
    """x (T, k), A (K, r, k), B (K, d, r), idx (T,) int64 in [-1, K), scaling (K,)  ->  (T, d)
    y_t = scaling[a] * B[a] @ (A[a] @ x_t), a = idx[t];  y_t = 0 where idx[t] == -1."""
    raise NotImplementedError
