import math

import torch
import torch.nn.functional as F


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def adapter_branch(h: torch.Tensor, prompt: torch.Tensor, Wq: torch.Tensor, Wk: torch.Tensor, Wv: torch.Tensor,
                   Wo: torch.Tensor, gate: torch.Tensor, num_heads: int, cos: torch.Tensor,
                   sin: torch.Tensor) -> torch.Tensor:
    b, t, _ = h.shape
    n = prompt.shape[1]
    hd = Wq.shape[0] // num_heads
    q = (h @ Wq.T).view(b, t, num_heads, hd).transpose(1, 2)                  # (b, H, t, hd)
    q = q * cos.unsqueeze(1) + _rotate_half(q) * sin.unsqueeze(1)             # RoPE on the queries only
    k = (prompt @ Wk.T).view(1, n, -1, hd).transpose(1, 2)                    # (1, kv, n, hd)
    v = (prompt @ Wv.T).view(1, n, -1, hd).transpose(1, 2)                    # (1, kv, n, hd)
    groups = num_heads // k.shape[1]
    k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)   # (1, H, n, hd)
    scores = q @ k.transpose(2, 3) / math.sqrt(hd)                            # (b, H, t, n)
    p = gate * F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)     # zero-init gate
    ctx = (p @ v).transpose(1, 2).reshape(b, t, -1)                           # (b, t, H*hd)
    return ctx @ Wo.T                                                         # (b, t, d)
