"""The 4-bit and 8-bit codebooks, constructed (not pasted) the way the papers and bitsandbytes do.

NF4 (QLoRA, Dettmers et al. 2023, §3 "4-bit NormalFloat"): each of the 2^k levels is a quantile of
N(0, 1), so every level is used equally often by normally distributed weights. With the outer
quantile δ = 0.9677083 (chosen by bitsandbytes so the extreme levels are not wasted on tails):

    positive half:  q_i = Φ⁻¹(p_i),  p = linspace(δ, 1/2, 9)[:-1]     8 levels
    negative half: −q_j = −Φ⁻¹(p_j), p = linspace(δ, 1/2, 8)[:-1]     7 levels
    plus an exact 0, sort, divide by the max  →  16 levels in [−1, 1], asymmetric (8 > 0, 7 < 0).

`p` is built in float32 (as bitsandbytes' `torch.linspace`), Φ⁻¹ is `torch.special.ndtri` in
float64, the result is rounded to float32 and normalised in float32: this reproduces bitsandbytes'
table bit for bit (tests assert it).

FP4: bitsandbytes' E2M1 layout, indexed by the raw 4-bit code `s e1 e0 m` (sign, 2 exponent bits,
1 mantissa bit), exponent field e ≥ 1 decodes to 2^(4−e)·(1 + m/2), e = 0 to m·2^−4; divided by the
largest magnitude (12). INT4: the symmetric grid k/7, k = −8 … 7 (−8/7 is never chosen because
|x/absmax| ≤ 1, so only 15 levels are used).

The 8-bit *dynamic* map (Dettmers 2016, "8-Bit Approximations for Parallelism") quantizes the
absmax constants in double quantization: a sign, a run of zeros giving a decimal exponent
10^(i−6), then the remaining bits as a linear fraction in [0.1, 1].
"""
from __future__ import annotations

import functools

import torch

NF4_OFFSET = 0.9677083  # bitsandbytes' `create_normal_map(offset=...)`


@functools.lru_cache(maxsize=None)
def _nf4() -> torch.Tensor:
    p_pos = torch.linspace(NF4_OFFSET, 0.5, 9)[:-1].double()           # (8,)
    p_neg = torch.linspace(NF4_OFFSET, 0.5, 8)[:-1].double()           # (7,)
    levels = torch.cat([torch.special.ndtri(p_pos), torch.zeros(1, dtype=torch.float64),
                        -torch.special.ndtri(p_neg)]).float()          # (16,)
    levels = levels.sort().values
    return levels / levels.max()


def nf4_codebook() -> torch.Tensor:
    """The 16 NF4 levels, sorted ascending, float32, code[7] == 0 exactly."""
    return _nf4().clone()


@functools.lru_cache(maxsize=None)
def _fp4() -> torch.Tensor:
    vals = []
    for code in range(16):
        sign, e, m = code >> 3, (code >> 1) & 0b11, code & 1
        mag = m * 2.0**-4 if e == 0 else 2.0 ** (4 - e) * (1 + m / 2)
        vals.append(-mag if sign and mag else mag)        # code 0b1000 decodes to +0.0, as in bitsandbytes
    t = torch.tensor(vals, dtype=torch.float32)                        # (16,) in code order
    return t / t.abs().max()


def fp4_codebook() -> torch.Tensor:
    """The 16 FP4 values in *code* order (index = the 4-bit pattern), as bitsandbytes decodes them."""
    return _fp4().clone()


@functools.lru_cache(maxsize=None)
def _int4() -> torch.Tensor:
    return torch.arange(-8, 8, dtype=torch.float32) / 7


def int4_codebook() -> torch.Tensor:
    """Symmetric INT4: k/7 for k = −8 … 7, index = k + 8 (offset binary), sorted ascending."""
    return _int4().clone()


@functools.lru_cache(maxsize=None)
def _dynamic(max_exponent_bits: int = 7, total_bits: int = 8) -> torch.Tensor:
    data: list[float] = []
    non_sign_bits = total_bits - 1
    for i in range(max_exponent_bits):
        fraction_items = int(2 ** (i + non_sign_bits - max_exponent_bits) + 1)
        bounds = torch.linspace(0.1, 1, fraction_items, dtype=torch.float32)
        means = (bounds[:-1] + bounds[1:]) / 2.0
        scale = 10 ** (-(max_exponent_bits - 1) + i)
        data += (scale * means).tolist()
        data += (-scale * means).tolist()
    data += [0.0, 1.0]
    if len(data) != 2**total_bits:
        raise AssertionError(f"dynamic map has {len(data)} entries, expected {2**total_bits}")
    return torch.tensor(sorted(data), dtype=torch.float32)


def dynamic_map() -> torch.Tensor:
    """The signed 8-bit dynamic map (256 sorted values in [−0.993, 1]) used for the absmax constants."""
    return _dynamic().clone()


def sorted_with_order(code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rounding boundaries for nearest-level quantization: midpoints of the sorted levels.

    Returns (midpoints (15,), order (16,)) with `order[i]` = code index of the i-th smallest level,
    computed with the same float32 ops as bitsandbytes' CPU `quantize_4bit` (bit-exact ties).
    """
    order = torch.argsort(code)
    return (code[order[:-1]] + code[order[1:]]) / 2, order


CODEBOOKS = {"nf4": _nf4, "fp4": _fp4, "int4": _int4}
