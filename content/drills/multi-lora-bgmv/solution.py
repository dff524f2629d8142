import torch


def bgmv(x: torch.Tensor, A: torch.Tensor, B: torch.Tensor, idx: torch.Tensor, scaling: torch.Tensor) -> torch.Tensor:
    y = x.new_zeros(x.shape[0], B.shape[1])                  # (T, d); rows with idx = -1 stay 0
    for a in idx.unique().tolist():                          # one group per adapter: its weights read once
        if a < 0:
            continue
        rows = (idx == a).nonzero().squeeze(1)               # (T_a,)
        v = x[rows] @ A[a].T                                 # (T_a, r)  shrink
        y[rows] = scaling[a] * (v @ B[a].T)                  # (T_a, d)  expand
    return y
