"""Triton twins of `peftlab_kernels.multi_lora`: BGMV (per-row gather) and SGMV (per-segment GEMM).

Each op is one kernel launched twice, shrink then expand, as Punica does:

    shrink   v (T, r)   = s[a] · x (T, in) · A[a]ᵀ         W = A (K, r, in),  APPLY_SCALE
    expand   y (T, out) =        v (T, r)  · B[a]ᵀ         W = B (K, out, r)

    BGMV  grid (T, cdiv(N, BN)):       program (t, n) gathers a = idx[t] and does a matrix-vector
          product over the reduction dim in BK chunks: acc (BN,) += Σ_k W[a, n, k] · x[t, k]
          (`tl.sum` of a (BN, BK) tile; decode rows are single vectors, `tl.dot` would pad them to 16).
    SGMV  grid (S, cdiv(max_len, BM), cdiv(N, BN)): program (i, m, n) owns rows starts[i] + m·BM … of
          segment i and does a tiled GEMM with its adapter: acc (BM, BN) += x (BM, BK) · W[a]ᵀ (BK, BN).

An index of -1 reads adapter 0 (a safe address) and multiplies by 0. Accumulation is fp32; v is kept fp32.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl


@triton.jit
def _bgmv_kernel(x_ptr, w_ptr, idx_ptr, s_ptr, y_ptr, N, KD,
                 sxt, sxk, swa, swn, swk, syt, syn,
                 APPLY_SCALE: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    t = tl.program_id(0)
    rn = tl.program_id(1) * BN + tl.arange(0, BN)                             # (BN,)
    rk = tl.arange(0, BK)                                                     # (BK,)
    a = tl.load(idx_ptr + t)
    a_safe = tl.maximum(a, 0)
    acc = tl.zeros((BN,), dtype=tl.float32)
    # -- gather-matvec over the reduction dim --------------------------------------------------
    for k0 in range(0, KD, BK):
        kk = k0 + rk
        xv = tl.load(x_ptr + t * sxt + kk * sxk, mask=kk < KD, other=0.0).to(tl.float32)          # (BK,)
        w = tl.load(w_ptr + a_safe * swa + rn[:, None] * swn + kk[None, :] * swk,
                    mask=(rn[:, None] < N) & (kk[None, :] < KD), other=0.0).to(tl.float32)      # (BN, BK)
        acc += tl.sum(w * xv[None, :], axis=1)
    # -- epilogue: adapter scale, -1 → 0 -------------------------------------------------------
    if APPLY_SCALE:
        scale = tl.load(s_ptr + a_safe).to(tl.float32)
    else:
        scale = 1.0
    acc = acc * tl.where(a >= 0, scale, 0.0)
    tl.store(y_ptr + t * syt + rn * syn, acc.to(y_ptr.dtype.element_ty), mask=rn < N)


@triton.jit
def _sgmv_kernel(x_ptr, w_ptr, starts_ptr, adapter_ptr, s_ptr, y_ptr, N, KD,
                 sxt, sxk, swa, swn, swk, syt, syn,
                 APPLY_SCALE: tl.constexpr, PRECISION: tl.constexpr,
                 BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    seg = tl.program_id(0)
    start = tl.load(starts_ptr + seg)
    end = tl.load(starts_ptr + seg + 1)
    a = tl.load(adapter_ptr + seg)
    a_safe = tl.maximum(a, 0)
    rm = start + tl.program_id(1) * BM + tl.arange(0, BM)                     # (BM,) rows of this segment
    rn = tl.program_id(2) * BN + tl.arange(0, BN)                             # (BN,)
    rk = tl.arange(0, BK)
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    # -- segment GEMM: x[rows] · W[a]ᵀ ----------------------------------------------------------
    for k0 in range(0, KD, BK):
        kk = k0 + rk
        xt = tl.load(x_ptr + rm[:, None] * sxt + kk[None, :] * sxk,
                     mask=(rm[:, None] < end) & (kk[None, :] < KD), other=0.0)                 # (BM, BK)
        wt = tl.load(w_ptr + a_safe * swa + kk[:, None] * swk + rn[None, :] * swn,
                     mask=(kk[:, None] < KD) & (rn[None, :] < N), other=0.0)                   # (BK, BN)
        acc += tl.dot(xt.to(tl.float32), wt.to(tl.float32), input_precision=PRECISION)
    if APPLY_SCALE:
        scale = tl.load(s_ptr + a_safe).to(tl.float32)
    else:
        scale = 1.0
    acc = acc * tl.where(a >= 0, scale, 0.0)
    tl.store(y_ptr + rm[:, None] * syt + rn[None, :] * syn, acc.to(y_ptr.dtype.element_ty),
             mask=(rm[:, None] < end) & (rn[None, :] < N))


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "") == "1"


def _bgmv_pass(x, W, idx, scaling, out_dtype, apply_scale: bool) -> torch.Tensor:
    T, N, KD = x.shape[0], W.shape[1], W.shape[2]
    y = torch.empty(T, N, dtype=out_dtype, device=x.device)
    bn = 16 if _interpreting() else min(128, max(16, triton.next_power_of_2(N)))
    bk = 32 if _interpreting() else 128
    _bgmv_kernel[(T, triton.cdiv(N, bn))](x, W, idx, scaling, y, N, KD,
                                          x.stride(0), x.stride(1), W.stride(0), W.stride(1), W.stride(2),
                                          y.stride(0), y.stride(1), APPLY_SCALE=apply_scale, BN=bn, BK=bk)
    return y


def bgmv_triton(x, A, B, idx, scaling) -> torch.Tensor:
    v = _bgmv_pass(x, A, idx, scaling, torch.float32, apply_scale=True)       # (T, r) fp32, scaled
    return _bgmv_pass(v, B, idx, scaling, x.dtype, apply_scale=False)         # (T, out)


def _sgmv_pass(x, W, seg_starts, seg_adapter, scaling, out_dtype, apply_scale: bool) -> torch.Tensor:
    T, N, KD = x.shape[0], W.shape[1], W.shape[2]
    y = torch.zeros(T, N, dtype=out_dtype, device=x.device)                   # rows outside segments stay 0
    S = seg_adapter.shape[0]
    if S == 0 or T == 0:
        return y
    max_len = int((seg_starts[1:] - seg_starts[:-1]).max())
    if max_len == 0:
        return y
    bm, bn, bk = (16, 16, 16) if _interpreting() else (64, 64, 32)
    precision = "ieee" if x.dtype in (torch.float32, torch.float64) else "tf32"
    grid = (S, triton.cdiv(max_len, bm), triton.cdiv(N, bn))
    _sgmv_kernel[grid](x, W, seg_starts, seg_adapter, scaling, y, N, KD,
                       x.stride(0), x.stride(1), W.stride(0), W.stride(1), W.stride(2), y.stride(0), y.stride(1),
                       APPLY_SCALE=apply_scale, PRECISION=precision, BM=bm, BN=bn, BK=bk)
    return y


def sgmv_triton(x, A, B, seg_starts, seg_adapter, scaling) -> torch.Tensor:
    v = _sgmv_pass(x, A, seg_starts, seg_adapter, scaling, torch.float32, apply_scale=True)   # (T, r)
    return _sgmv_pass(v, B, seg_starts, seg_adapter, scaling, x.dtype, apply_scale=False)     # (T, out)
