"""8-bit blockwise quantization with the dynamic map: the second level of QLoRA's double quantization.

QLoRA §3 "Double Quantization": the fp32 absmax of every 64-weight block costs 32/64 = 0.5 bit per
parameter. Quantize those constants too:

    c      = absmax (n_blocks,) fp32
    offset = mean(c)                                    one fp32 scalar
    c'     = c − offset                                 centred, so the signed 8-bit map is used fully
    per group g of 256 constants:  a_g = max |c'_g|,    q = Q₈(c' / a_g)       (uint8 codes)
    dequantize:                   ĉ = D[q] · a_g + offset

cost: 8/64 + 32/(64·256) ≈ 0.127 bit per parameter instead of 0.5.

Q₈ as bitsandbytes' CPU kernel computes it (found by probing its output; tests assert bit-equality):
z = c'/a_g ∈ [−1, 1] falls in one of 65536 uniform cells, `cell = ⌊(z + 1)·32767.5 + ½⌋`, and each
cell maps to the dynamic-map level nearest the cell's centre. That is nearest-level rounding up to a
resolution of 1/32767.5, which is coarser than the map's finest steps near 0 (5.5e-7): constants
within ±1.5e-5·a_g of the mean all land on ±2.1e-5, which costs nothing measurable.
A group whose constants all equal the mean (a_g = 0) gets code 0 and decodes to `offset`.
"""
from __future__ import annotations

import functools

import torch

from peftlab_kernels.codebooks import dynamic_map

DQ_BLOCKSIZE = 256                # constants per group, as bitsandbytes' `compress_statistics`
_HALF_CELLS = 32767.5             # 65535 / 2: cells of width 1/32767.5 over [−1, 1]


@functools.lru_cache(maxsize=None)
def _cell_table() -> torch.Tensor:
    """(65536,) uint8: for each cell, the index of the dynamic-map level nearest its centre."""
    code = dynamic_map()                                                       # (256,)
    centres = (torch.arange(65536, dtype=torch.float64) / _HALF_CELLS - 1).float()
    return (centres[:, None] - code[None, :]).abs().argmin(1).to(torch.uint8)


def _groups(x: torch.Tensor, blocksize: int) -> tuple[torch.Tensor, int]:
    n = x.numel()
    n_groups = -(-n // blocksize)
    padded = torch.nn.functional.pad(x, (0, n_groups * blocksize - n))     # (G·bs,)
    return padded.view(n_groups, blocksize), n


def quantize_blockwise8(x: torch.Tensor, blocksize: int = DQ_BLOCKSIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """x: (n,) fp32 → (codes (n,) uint8, absmax (ceil(n/bs),) fp32)."""
    xg, n = _groups(x.float().reshape(-1), blocksize)                      # (G, bs)
    absmax = xg.abs().amax(1)                                              # (G,)
    z = xg / absmax[:, None]                                               # (G, bs) in [−1, 1]; 0/0 → nan
    cell = torch.floor((z + 1) * _HALF_CELLS + 0.5)
    cell = torch.nan_to_num(cell, nan=0.0).clamp_(0, 65535).long()
    codes = _cell_table().to(x.device)[cell].reshape(-1)[:n]
    return codes, absmax


def dequantize_blockwise8(codes: torch.Tensor, absmax: torch.Tensor, blocksize: int = DQ_BLOCKSIZE) -> torch.Tensor:
    """codes (n,) uint8, absmax (G,) fp32 → (n,) fp32 = D[codes] · absmax[group]."""
    vals, n = _groups(dynamic_map().to(codes.device)[codes.long()], blocksize)  # (G, bs)
    return (vals * absmax[:, None]).reshape(-1)[:n]


def double_quantize(absmax: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """absmax (n_blocks,) fp32 → (qabsmax uint8, absmax_scale (G,) fp32, offset () fp32)."""
    offset = absmax.mean()
    qabsmax, scale = quantize_blockwise8(absmax - offset)
    return qabsmax, scale, offset


def double_dequantize(qabsmax: torch.Tensor, absmax_scale: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """Inverse of `double_quantize`: (n_blocks,) fp32 absmax, as bitsandbytes rebuilds it."""
    return dequantize_blockwise8(qabsmax, absmax_scale) + offset
