"""Triton twins of `peftlab_kernels.quant4_torch`: 4-bit quantize, dequantize, and a fused 4-bit matmul.

Same math as the PyTorch reference (see its docstring); the tests run each kernel under
TRITON_INTERPRET=1 on CPU at small shapes and compare with the reference bit for bit (quantize,
dequantize) or to fp32 tolerance (matmul: a different summation order).

quantize   one program = ROWS blocks; each block is loaded as its even and odd elements, so the two
           nibbles of a byte are computed side by side and packed without a reshape.
           absmax → scale (reciprocal, IEEE `div_rn`; a division for the partial last block) →
           rank = Σ_j [s > m_j] over the 15 midpoints (== torch.bucketize) → code = order[rank].
dequantize one program = BLOCK bytes → 2·BLOCK outputs, level[nibble] · absmax[block] in fp32, then
           one rounding to the output dtype (bf16: round-to-nearest-even on the bits, written out
           because the interpreter's fp32→bf16 cast truncates while the GPU's rounds).
matmul     y = x Ŵᵀ (+ b), tiles (BM × BN), K-loop in steps of BK: the weight tile is read as BK/2
           packed bytes per row, unpacked to its even-k and odd-k halves, scaled by the block absmax
           and cast to x's dtype, then two `tl.dot`s against x's even and odd columns. Ŵ never exists
           in memory outside one (BN × BK) tile in registers.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from peftlab_kernels.codebooks import CODEBOOKS, sorted_with_order

_TILE = 4096                      # elements per quantize program


def _interpreting() -> bool:
    import os

    return os.environ.get("TRITON_INTERPRET", "") == "1"


@triton.jit
def _quant4_kernel(x_ptr, packed_ptr, absmax_ptr, bounds_ptr, order_ptr, n, n_blocks,
                   BLOCKSIZE: tl.constexpr, ROWS: tl.constexpr, N_BOUNDS: tl.constexpr):
    # -- stage 1: this program's ROWS blocks, as (even, odd) element pairs -----------------
    rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)          # (ROWS,)
    pair = tl.arange(0, BLOCKSIZE // 2)                                       # (bs/2,)
    e0 = rows[:, None] * BLOCKSIZE + 2 * pair[None, :]                        # (ROWS, bs/2)
    m0 = e0 < n
    m1 = (e0 + 1) < n
    x0 = tl.load(x_ptr + e0, mask=m0, other=0.0).to(tl.float32)
    x1 = tl.load(x_ptr + e0 + 1, mask=m1, other=0.0).to(tl.float32)
    # -- stage 2: absmax and the scaled values in [-1, 1] -----------------------------------
    am = tl.maximum(tl.max(tl.abs(x0), axis=1), tl.max(tl.abs(x1), axis=1))  # (ROWS,)
    safe = tl.where(am > 0, am, 1.0)
    one = tl.full(safe.shape, 1.0, tl.float32)
    recip = tl.math.div_rn(one, safe)                                         # (ROWS,)
    partial = (rows + 1) * BLOCKSIZE > n
    s0 = tl.where(partial[:, None], tl.math.div_rn(x0, safe[:, None]), x0 * recip[:, None])
    s1 = tl.where(partial[:, None], tl.math.div_rn(x1, safe[:, None]), x1 * recip[:, None])
    s0 = tl.where(am[:, None] > 0, s0, 0.0)                                   # all-zero block → 0
    s1 = tl.where(am[:, None] > 0, s1, 0.0)
    # -- stage 3: rank among the sorted levels, then the code ------------------------------
    r0 = tl.zeros(s0.shape, tl.int32)
    r1 = tl.zeros(s1.shape, tl.int32)
    for j in tl.static_range(N_BOUNDS):
        m = tl.load(bounds_ptr + j)
        r0 += (s0 > m).to(tl.int32)
        r1 += (s1 > m).to(tl.int32)
    c0 = tl.load(order_ptr + r0)
    c1 = tl.load(order_ptr + r1)
    # -- stage 4: pack (element 2i high nibble) and store ----------------------------------
    tl.store(packed_ptr + e0 // 2, ((c0 << 4) | c1).to(tl.uint8), mask=m0)
    tl.store(absmax_ptr + rows, am, mask=rows < n_blocks)


@triton.jit
def _dequant4_kernel(packed_ptr, absmax_ptr, code_ptr, out_ptr, n,
                     BLOCKSIZE: tl.constexpr, BLOCK: tl.constexpr, OUT_BF16: tl.constexpr):
    j = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)           # (BLOCK,) byte index
    e0 = 2 * j
    m0 = e0 < n
    m1 = (e0 + 1) < n
    byte = tl.load(packed_ptr + j, mask=m0, other=0).to(tl.int32)
    a = tl.load(absmax_ptr + e0 // BLOCKSIZE, mask=m0, other=0.0)            # both nibbles: same block
    v0 = tl.load(code_ptr + (byte >> 4)) * a
    v1 = tl.load(code_ptr + (byte & 15)) * a
    if OUT_BF16:   # round-to-nearest-even by hand: out_ptr is the int16 view of a bf16 tensor
        b0 = v0.to(tl.uint32, bitcast=True)
        b1 = v1.to(tl.uint32, bitcast=True)
        tl.store(out_ptr + e0, ((b0 + 0x7FFF + ((b0 >> 16) & 1)) >> 16).to(tl.int16), mask=m0)
        tl.store(out_ptr + e0 + 1, ((b1 + 0x7FFF + ((b1 >> 16) & 1)) >> 16).to(tl.int16), mask=m1)
    else:
        tl.store(out_ptr + e0, v0.to(out_ptr.dtype.element_ty), mask=m0)
        tl.store(out_ptr + e0 + 1, v1.to(out_ptr.dtype.element_ty), mask=m1)


@triton.jit
def _matmul4_kernel(x_ptr, packed_ptr, absmax_ptr, code_ptr, bias_ptr, y_ptr, M, N, K, stride_xm, stride_ym,
                    HAS_BIAS: tl.constexpr, BLOCKSIZE: tl.constexpr, PRECISION: tl.constexpr,
                    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    rm = tl.program_id(0) * BM + tl.arange(0, BM)                             # (BM,)
    rn = tl.program_id(1) * BN + tl.arange(0, BN)                             # (BN,)
    half = tl.arange(0, BK // 2)                                              # (BK/2,)
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for k0 in range(0, K, BK):
        ke = k0 + 2 * half                                                    # even k of the tile
        mk = ke < K
        x_even = tl.load(x_ptr + rm[:, None] * stride_xm + ke[None, :],
                         mask=(rm[:, None] < M) & mk[None, :], other=0.0)     # (BM, BK/2)
        x_odd = tl.load(x_ptr + rm[:, None] * stride_xm + ke[None, :] + 1,
                        mask=(rm[:, None] < M) & mk[None, :], other=0.0)
        flat = rn[:, None].to(tl.int64) * K + ke[None, :]                     # (BN, BK/2), even
        mw = (rn[:, None] < N) & mk[None, :]
        byte = tl.load(packed_ptr + flat // 2, mask=mw, other=0).to(tl.int32)
        a = tl.load(absmax_ptr + flat // BLOCKSIZE, mask=mw, other=0.0)       # (BN, BK/2)
        w_even = (tl.load(code_ptr + (byte >> 4)) * a).to(x_ptr.dtype.element_ty)
        w_odd = (tl.load(code_ptr + (byte & 15)) * a).to(x_ptr.dtype.element_ty)
        acc += tl.dot(x_even, tl.trans(w_even), input_precision=PRECISION)
        acc += tl.dot(x_odd, tl.trans(w_odd), input_precision=PRECISION)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + rn, mask=rn < N, other=0.0).to(tl.float32)[None, :]
    tl.store(y_ptr + rm[:, None] * stride_ym + rn[None, :], acc.to(y_ptr.dtype.element_ty),
             mask=(rm[:, None] < M) & (rn[None, :] < N))


# ---------------------------------------------------------------------------------------------
# Launchers
# ---------------------------------------------------------------------------------------------
_TABLES: dict = {}


def _tables(quant_type: str, device):
    key = (quant_type, str(device))
    if key not in _TABLES:
        code = CODEBOOKS[quant_type]()
        bounds, order = sorted_with_order(code)
        _TABLES[key] = (bounds.to(device), order.to(torch.int32).to(device), code.to(device))
    return _TABLES[key]


def quantize_4bit_triton(w: torch.Tensor, blocksize: int, quant_type: str) -> tuple[torch.Tensor, torch.Tensor]:
    bounds, order, _ = _tables(quant_type, w.device)
    flat = w.reshape(-1)
    n = flat.numel()
    n_blocks = -(-n // blocksize)
    packed = torch.empty((n + 1) // 2, dtype=torch.uint8, device=w.device)
    absmax = torch.empty(n_blocks, dtype=torch.float32, device=w.device)
    rows = max(1, _TILE // blocksize)
    _quant4_kernel[(triton.cdiv(n_blocks, rows),)](flat, packed, absmax, bounds, order, n, n_blocks,
                                                   BLOCKSIZE=blocksize, ROWS=rows, N_BOUNDS=bounds.numel())
    if n % blocksize:                                                         # bitsandbytes stores the
        absmax[-1:].clamp_(min=1e-38)                                         # tail's absmax clamped
    return packed, absmax


def dequantize_4bit_triton(packed, absmax, shape, dtype, blocksize, quant_type) -> torch.Tensor:
    _, _, code = _tables(quant_type, packed.device)
    n = shape.numel()
    out = torch.empty(n, dtype=dtype, device=packed.device)
    block = 256 if _interpreting() else 1024
    bf16 = dtype == torch.bfloat16
    _dequant4_kernel[(triton.cdiv(packed.numel(), block),)](packed, absmax.float().contiguous(), code,
                                                            out.view(torch.int16) if bf16 else out, n,
                                                            BLOCKSIZE=blocksize, BLOCK=block, OUT_BF16=bf16)
    return out.view(shape)


def matmul_4bit_triton(x2, packed, absmax, shape, blocksize, quant_type, bias=None) -> torch.Tensor:
    """x2 (M, K) @ Ŵᵀ, Ŵ (N, K) 4-bit → (M, N) in x2.dtype. Odd K falls back to dequantize + matmul."""
    N, K = shape
    if K % 2:
        w = dequantize_4bit_triton(packed, absmax, shape, x2.dtype, blocksize, quant_type)
        return torch.nn.functional.linear(x2, w, bias)
    _, _, code = _tables(quant_type, x2.device)
    x2 = x2.contiguous()
    M = x2.shape[0]
    y = torch.empty(M, N, dtype=x2.dtype, device=x2.device)
    bm, bn, bk, warps, stages = (16, 32, 32, 4, 1) if _interpreting() else (64, 128, 64, 4, 3)
    grid = (triton.cdiv(M, bm), triton.cdiv(N, bn))
    precision = "ieee" if x2.dtype == torch.float32 else "tf32"               # fp32: no TF32 rounding
    _matmul4_kernel[grid](x2, packed, absmax.float().contiguous(), code, bias if bias is not None else x2, y,
                          M, N, K, x2.stride(0), y.stride(0), HAS_BIAS=bias is not None, BLOCKSIZE=blocksize,
                          PRECISION=precision, BM=bm, BN=bn, BK=bk, num_warps=warps, num_stages=stages)
    return y
