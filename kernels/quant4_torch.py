"""4-bit blockwise quantization in PyTorch: a plain reference and the fast CPU path, bit-exact twins.

Quantize (blocks of `bs` consecutive elements of the flattened tensor, n = numel):

    a_b = max_{i∈b} |w_i|                       absmax, fp32, stored per block
    s_i = w_i · fl(1 / max(a_b, 1e-38))         full blocks (reciprocal, then multiply: bitsandbytes)
    s_i = w_i / max(a_b, 1e-38)                 the last, partial block (a division: bitsandbytes)
    k_i = #{ j : m_j < s_i }                    nearest level; m_j = fp32 midpoints of sorted levels,
                                                a tie s_i = m_j rounds *down* (torch.bucketize)
    byte_i = code[2i] << 4 | code[2i+1]         element 2i in the high nibble; odd n pads a 0

Dequantize: ŵ_i = round_dtype( fl32(level[code_i] · a_b) ).

Fast path, same numbers, no binary search:
  * bucket: every fp32 s has a 16-bit *key* (sign, exponent, 7 mantissa bits). One key covers an
    interval of reals narrower than the gap between two midpoints, so it holds at most one midpoint
    t(key): k = below(key) + [s > t(key)], two lookups in 64 Ki-entry tables (256 KiB, cache-resident).
  * unpack: a uint16 view of the packed buffer (2 bytes = 4 codes) indexes a 64 Ki × 4 table of
    levels, one gather yields four values; the per-block multiply writes the output dtype directly.
  * both run in chunks of 2^18 elements so the temporaries stay in L2.
"""
from __future__ import annotations

import functools
import sys

import torch

from kernels.codebooks import CODEBOOKS, sorted_with_order

_CHUNK = 1 << 18          # elements per chunk; a multiple of every allowed blocksize (≤ 4096)
_TINY = 1e-38             # bitsandbytes' clamp: an all-zero block gets scale 1e38, codes for 0


# ---------------------------------------------------------------------------------------------
# Reference: the formula, line by line (slow: torch.bucketize is a binary search per element)
# ---------------------------------------------------------------------------------------------
def _scaled(flat: torch.Tensor, blocksize: int) -> tuple[torch.Tensor, torch.Tensor]:
    """flat (n,) any float dtype → (s (n,) fp32, absmax (n_blocks,) fp32)."""
    a = flat.float()
    n = a.numel()
    full = n - n % blocksize
    blocks = a[:full].view(-1, blocksize)                                   # (B, bs)
    absmax = blocks.abs().amax(1)                                           # (B,)
    s = torch.empty(n, dtype=torch.float32, device=a.device)
    torch.mul(blocks, (1.0 / absmax.clamp(min=_TINY))[:, None], out=s[:full].view(-1, blocksize))
    if full < n:
        tail_max = a[full:].abs().amax().clamp(min=_TINY)                   # stored clamped
        torch.div(a[full:], tail_max, out=s[full:])
        absmax = torch.cat([absmax, tail_max[None]])
    return s, absmax


def _pack(codes: torch.Tensor) -> torch.Tensor:
    """codes (n,) uint8 in [0, 16) → (ceil(n/2),) uint8, element 2i in the high nibble."""
    if codes.numel() % 2:
        raise AssertionError("pad codes to even length before packing")
    pairs = codes.view(-1, 2)                                               # (n/2, 2)
    return (pairs[:, 0] << 4) | pairs[:, 1]


def quantize_4bit_reference(w: torch.Tensor, blocksize: int, quant_type: str) -> tuple[torch.Tensor, torch.Tensor]:
    bounds, order = sorted_with_order(CODEBOOKS[quant_type]().to(w.device))
    s, absmax = _scaled(w.reshape(-1), blocksize)
    if s.numel() % 2:
        s = torch.nn.functional.pad(s, (0, 1))                              # s = 0 → the zero level
    k = torch.bucketize(s, bounds)                                          # (n,) rank among sorted levels
    return _pack(order[k].to(torch.uint8)), absmax


def dequantize_4bit_reference(packed, absmax, shape, dtype, blocksize, quant_type) -> torch.Tensor:
    n = shape.numel()
    codes = torch.stack([packed >> 4, packed & 0xF], 1).reshape(-1)[:n]     # (n,)
    vals = CODEBOOKS[quant_type]().to(packed.device)[codes.long()]          # (n,) fp32
    block = torch.arange(n, device=packed.device) // blocksize
    return (vals * absmax[block]).to(dtype).reshape(shape)


# ---------------------------------------------------------------------------------------------
# Fast path: the same numbers through lookup tables (see module docstring)
# ---------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _key_tables(quant_type: str, device: torch.device):
    """(below (65536,) uint8, cut (65536,) fp32, order (16,) uint8) for the 16-bit key of an fp32."""
    bounds, order = sorted_with_order(CODEBOOKS[quant_type]())
    keys = torch.arange(65536, dtype=torch.int64)
    ends = torch.stack([keys << 16, (keys << 16) | 0xFFFF], 1).to(torch.int32).view(torch.float32)
    lo = ends.amin(1).nan_to_num(nan=0.0)                                  # (65536,) interval start
    hi = ends.amax(1).nan_to_num(nan=0.0)                                  # (65536,) interval end
    below = (bounds[None, :] < lo[:, None]).sum(1)                         # midpoints under the interval
    inside = (bounds[None, :] >= lo[:, None]) & (bounds[None, :] <= hi[:, None])
    if int(inside.sum(1).max()) > 1:
        raise AssertionError(f"{quant_type}: a 16-bit key interval holds two midpoints")
    cut = torch.where(inside.any(1), (bounds[None, :] * inside).sum(1), torch.tensor(float("inf")))
    return below.to(torch.uint8).to(device), cut.to(device), order.to(torch.uint8).to(device)


@functools.lru_cache(maxsize=None)
def _unpack_table(quant_type: str, device: torch.device) -> torch.Tensor:
    """(65536, 4) fp32: the four levels coded by a little-endian uint16 (byte0 = low 8 bits)."""
    v = torch.arange(65536)
    nibbles = torch.stack([(v >> 4) & 0xF, v & 0xF, (v >> 12) & 0xF, (v >> 8) & 0xF], 1)
    return CODEBOOKS[quant_type]()[nibbles].to(device)


def _keys(s: torch.Tensor) -> torch.Tensor:
    """The top 16 bits of each fp32, as int32 in [0, 65536)."""
    if sys.byteorder == "little":
        return s.view(torch.int16)[1::2].to(torch.int32) & 0xFFFF
    return (s.view(torch.int32) >> 16) & 0xFFFF


def quantize_4bit_fast(w: torch.Tensor, blocksize: int, quant_type: str) -> tuple[torch.Tensor, torch.Tensor]:
    below, cut, order = _key_tables(quant_type, w.device)
    flat = w.reshape(-1)
    n = flat.numel()
    full = n - n % blocksize
    blocks = flat[:full].view(-1, blocksize)                                # (B, bs) input dtype
    absmax = torch.maximum(blocks.amax(1).float(), blocks.amin(1).float().neg()).abs()  # (B,) exact
    recip = 1.0 / absmax.clamp(min=_TINY)
    s = torch.empty(n + n % 2, dtype=torch.float32, device=w.device)       # (n [+1],)
    bpc = _CHUNK // blocksize                                               # blocks per chunk
    for b0 in range(0, blocks.shape[0], bpc):
        b1 = min(b0 + bpc, blocks.shape[0])
        torch.mul(blocks[b0:b1], recip[b0:b1, None], out=s[b0 * blocksize:b1 * blocksize].view(-1, blocksize))
    if full < n:
        tail = flat[full:].float()
        tail_max = tail.abs().amax().clamp(min=_TINY)
        torch.div(tail, tail_max, out=s[full:n])
        absmax = torch.cat([absmax, tail_max[None]])
    if n % 2:
        s[n] = 0.0
    packed = torch.empty(s.numel() // 2, dtype=torch.uint8, device=w.device)
    for c0 in range(0, s.numel(), _CHUNK):
        sc = s[c0:c0 + _CHUNK]
        key = _keys(sc)
        code = below[key] + (sc > cut[key])                                 # (c,) uint8 rank
        if quant_type == "fp4":
            code = order[code.long()]
        packed[c0 // 2:(c0 + sc.numel()) // 2] = _pack(code)
    return packed, absmax


def dequantize_4bit_fast(packed, absmax, shape, dtype, blocksize, quant_type) -> torch.Tensor:
    n = shape.numel()
    table = _unpack_table(quant_type, packed.device)
    if packed.numel() % 2:
        packed = torch.nn.functional.pad(packed, (0, 1))
    words = packed.view(torch.int16)                                        # 4 codes per word
    out = torch.empty(n, dtype=dtype, device=packed.device)
    full = n - n % blocksize
    step = _CHUNK // 4                                                      # words per chunk
    for w0 in range(0, words.numel(), step):
        vals = table.index_select(0, words[w0:w0 + step].to(torch.int32) & 0xFFFF).view(-1)  # (4c,)
        e0 = w0 * 4
        e1 = min(e0 + vals.numel(), n)
        f1 = min(e1, full)
        if f1 > e0:                                                         # whole blocks in this chunk
            torch.mul(vals[:f1 - e0].view(-1, blocksize), absmax[e0 // blocksize:f1 // blocksize, None],
                      out=out[e0:f1].view(-1, blocksize))
        if e1 > full:                                                       # the partial last block
            lo = max(e0, full)
            torch.mul(vals[lo - e0:e1 - e0], absmax[-1], out=out[lo:e1])
    return out.view(shape)
