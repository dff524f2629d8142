import math

import torch

NF4_LEVELS = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0])


def dequantize_nf4_dq(packed: torch.Tensor, qabsmax: torch.Tensor, absmax_scale: torch.Tensor,
                      absmax_offset: torch.Tensor, code8: torch.Tensor, shape: tuple,
                      blocksize: int = 64) -> torch.Tensor:
    n = math.prod(shape)
    codes = torch.stack([packed >> 4, packed & 0xF], dim=1).reshape(-1)[:n].long()   # (n,) high nibble first
    n_blocks = qabsmax.numel()
    group = torch.arange(n_blocks) // 256                                              # second-level groups
    absmax = code8[qabsmax.long()] * absmax_scale[group] + absmax_offset               # (n_blocks,) fp32
    block = torch.arange(n) // blocksize
    return (NF4_LEVELS[codes] * absmax[block]).reshape(shape)
