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
    t(key): k = below(key) + [s > t(key)], one lookup in a 64 Ki-entry table (512 KiB, in L2).
  * unpack: each byte indexes a 256-entry table of level pairs (2 KiB, L1-resident), one gather
    yields both values; multiply by absmax in fp32 in place, then one cast to the output dtype
    (two vectorized passes beat one mixed-dtype multiply by 4x).
  * both run in chunks of 2^22 elements: temporaries stay bounded (16 MiB) and the op count stays
    low, which matters more than cache reuse when the cores are shared (measured, see RESULTS.md).
"""
from __future__ import annotations

import functools
import sys

import torch

from peftlab_kernels.codebooks import CODEBOOKS, sorted_with_order

_CHUNK = 1 << 22          # elements per chunk (a multiple of every blocksize): few, large ops
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
def _key_table(quant_type: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """((65536,) complex64 = (cut, below) per 16-bit key of an fp32, order (16,) uint8).

    `below` = midpoints under the key's interval, `cut` = the one midpoint inside it (or +inf).
    Stored as complex64 so a single 8-byte `index_select` fetches both.
    """
    bounds, order = sorted_with_order(CODEBOOKS[quant_type]())
    keys = torch.arange(65536, dtype=torch.int64)
    ends = torch.stack([keys << 16, (keys << 16) | 0xFFFF], 1).to(torch.int32).view(torch.float32)
    lo = ends.amin(1).nan_to_num(nan=0.0)                                  # (65536,) interval start
    hi = ends.amax(1).nan_to_num(nan=0.0)                                  # (65536,) interval end
    below = (bounds[None, :] < lo[:, None]).sum(1).float()                 # midpoints under the interval
    inside = (bounds[None, :] >= lo[:, None]) & (bounds[None, :] <= hi[:, None])
    if int(inside.sum(1).max()) > 1:
        raise AssertionError(f"{quant_type}: a 16-bit key interval holds two midpoints")
    cut = torch.where(inside.any(1), (bounds[None, :] * inside).sum(1), torch.tensor(float("inf")))
    table = torch.stack([cut, below], 1).contiguous().view(torch.complex64).view(-1)
    return table.to(device), order.to(torch.uint8).to(device)


@functools.lru_cache(maxsize=None)
def _unpack_table(quant_type: str, device: torch.device) -> torch.Tensor:
    """(256,) complex64: the two fp32 levels (high nibble, low nibble) coded by each byte.

    Two floats per entry viewed as one 8-byte complex64, so `index_select` copies them as one
    element; 2 KiB, so it stays in L1 (a 64 Ki-entry table of four levels per uint16 word was
    measured 3x slower: random reads over 1 MiB miss L1)."""
    v = torch.arange(256)
    nibbles = torch.stack([v >> 4, v & 0xF], 1)                             # (256, 2)
    return CODEBOOKS[quant_type]()[nibbles].contiguous().view(torch.complex64).view(-1).to(device)


def _keys(s: torch.Tensor) -> torch.Tensor:
    """The top 16 bits of each fp32, as int32 in [0, 65536)."""
    if sys.byteorder == "little":
        return s.view(torch.uint16)[1::2].to(torch.int32)
    return (s.view(torch.int32) >> 16) & 0xFFFF


def quantize_4bit_fast(w: torch.Tensor, blocksize: int, quant_type: str) -> tuple[torch.Tensor, torch.Tensor]:
    table, order = _key_table(quant_type, w.device)
    flat = w.reshape(-1)
    n = flat.numel()
    full = n - n % blocksize
    n_even = n + n % 2
    packed = torch.empty(n_even // 2, dtype=torch.uint8, device=w.device)
    absmax = torch.empty(-(-n // blocksize), dtype=torch.float32, device=w.device)
    s = torch.empty(min(_CHUNK, n_even), dtype=torch.float32, device=w.device)   # reused per chunk
    for c0 in range(0, n_even, _CHUNK):
        c1 = min(c0 + _CHUNK, n_even)
        sc = s[:c1 - c0]
        f1 = min(c1, full)
        if f1 > c0:                                                         # whole blocks: w · (1/a)
            v = sc[:f1 - c0].view(-1, blocksize)                            # (b, bs) fp32
            v.copy_(flat[c0:f1].view(-1, blocksize))                        # exact upcast, vectorized
            am = torch.maximum(v.amax(1), v.amin(1).neg_()).abs_()          # (b,) = max |w|, exact
            absmax[c0 // blocksize:f1 // blocksize] = am
            v.mul_((1.0 / am.clamp_(min=_TINY))[:, None])
        if c1 > full:                                                       # the partial block: w / a
            tail = flat[full:].float()
            tail_max = tail.abs().amax().clamp(min=_TINY)                   # stored clamped
            absmax[-1] = tail_max
            torch.div(tail, tail_max, out=sc[full - c0:n - c0])
            sc[n - c0:] = 0.0                                               # odd n: the pad element
        cut_below = table.index_select(0, _keys(sc)).view(torch.float32).view(-1, 2)   # (c, 2)
        rank = cut_below[:, 1] + (sc > cut_below[:, 0])                 # (c,) fp32 rank in [0, 15]
        if quant_type == "fp4":
            rank = order[rank.long()].float()
        pairs = rank.view(-1, 2)                                            # (c/2, 2): element 2i, 2i+1
        packed[c0 // 2:c1 // 2].copy_(torch.add(pairs[:, 1], pairs[:, 0], alpha=16))  # hi·16 + lo
    return packed, absmax


def dequantize_4bit_fast(packed, absmax, shape, dtype, blocksize, quant_type) -> torch.Tensor:
    n = shape.numel()
    table = _unpack_table(quant_type, packed.device)
    out = torch.empty(n, dtype=dtype, device=packed.device)
    full = n - n % blocksize
    step = _CHUNK // 2                                                      # bytes per chunk
    for b0 in range(0, packed.numel(), step):
        vals = table.index_select(0, packed[b0:b0 + step].to(torch.int32)).view(torch.float32)  # (2c,)
        e0 = b0 * 2
        e1 = min(e0 + vals.numel(), n)
        f1 = min(e1, full)
        if f1 > e0:                                                         # whole blocks in this chunk
            v = vals[:f1 - e0].view(-1, blocksize)
            torch.mul(v, absmax[e0 // blocksize:f1 // blocksize, None], out=v)   # fp32, in place
        if e1 > full:                                                       # the partial last block
            lo = max(e0, full)
            vals[lo - e0:e1 - e0].mul_(absmax[-1])
        out[e0:e1].copy_(vals[:e1 - e0])                                    # one rounding to dtype
    return out.view(shape)
