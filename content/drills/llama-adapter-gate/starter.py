import math

import torch


def adapter_branch(h: torch.Tensor, prompt: torch.Tensor, Wq: torch.Tensor, Wk: torch.Tensor, Wv: torch.Tensor,
                   Wo: torch.Tensor, gate: torch.Tensor, num_heads: int, cos: torch.Tensor,
                   sin: torch.Tensor) -> torch.Tensor:
    """h (b, t, d), prompt (1, n, d), Wq (H*hd, d), Wk/Wv (kv*hd, d), Wo (d, H*hd), gate (1,),
    cos/sin (b, t, hd)  ->  (b, t, d) = Wo · concat_heads(gate * softmax(RoPE(q) k^T / sqrt(hd)) v)"""
    raise NotImplementedError
