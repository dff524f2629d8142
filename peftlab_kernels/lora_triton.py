"""Triton twin of `peftlab_kernels.lora`: one GEMM kernel with the rank-r LoRA term fused into its epilogue.

    C (M × N) = X (M × K) · Y (K × N)  +  U (M × R) · V (R × N)  [+ bias (N,)]

used twice (shapes from `peftlab_kernels.lora`'s docstring, s = scaling, u = x Aᵀ, g = ∂L/∂y):

    forward   y  = x Wᵀ + (s·u) Bᵀ + b        X = x, Y = Wᵀ (a strided view), U = s·u, V = Bᵀ
    backward  dx = g W  + du A                X = g, Y = W,                   U = du = s·g B, V = A

The K-loop is the usual tiled matmul (Triton tutorial 03); after it, one short loop over R (padded to
a power of two ≥ 16 for `tl.dot`) adds the LoRA product to the same fp32 accumulator, so the
(M × N) LoRA output is never written to memory, and neither is the sum. The small products
u = x Aᵀ (M × r), du = s·g B (M × r), ∂L/∂A = duᵀ x (r × in) and ∂L/∂B = s·gᵀ u (out × r) are
cuBLAS calls: each is one pass over an (M × K) or (M × N) operand, which no fusion would save.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _gemm_lora_kernel(x_ptr, y_ptr, u_ptr, v_ptr, bias_ptr, c_ptr, M, N, K, R,
                      sxm, sxk, syk, syn, sum_, sur, svr, svn, scm, scn,
                      HAS_BIAS: tl.constexpr, PRECISION: tl.constexpr,
                      BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, BR: tl.constexpr):
    rm = tl.program_id(0) * BM + tl.arange(0, BM)                             # (BM,)
    rn = tl.program_id(1) * BN + tl.arange(0, BN)                             # (BN,)
    rk = tl.arange(0, BK)                                                     # (BK,)
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    # -- main loop: X Y over K -----------------------------------------------------------------
    for k0 in range(0, K, BK):
        kk = k0 + rk
        a = tl.load(x_ptr + rm[:, None] * sxm + kk[None, :] * sxk,
                    mask=(rm[:, None] < M) & (kk[None, :] < K), other=0.0)    # (BM, BK)
        b = tl.load(y_ptr + kk[:, None] * syk + rn[None, :] * syn,
                    mask=(kk[:, None] < K) & (rn[None, :] < N), other=0.0)    # (BK, BN)
        acc += tl.dot(a, b, input_precision=PRECISION)
    # -- epilogue: + U V (rank r), + bias ------------------------------------------------------
    rr = tl.arange(0, BR)
    for r0 in range(0, R, BR):
        r = r0 + rr
        u = tl.load(u_ptr + rm[:, None] * sum_ + r[None, :] * sur,
                    mask=(rm[:, None] < M) & (r[None, :] < R), other=0.0)     # (BM, BR)
        v = tl.load(v_ptr + r[:, None] * svr + rn[None, :] * svn,
                    mask=(r[:, None] < R) & (rn[None, :] < N), other=0.0)     # (BR, BN)
        acc += tl.dot(u, v, input_precision=PRECISION)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + rn, mask=rn < N, other=0.0).to(tl.float32)[None, :]
    tl.store(c_ptr + rm[:, None] * scm + rn[None, :] * scn, acc.to(c_ptr.dtype.element_ty),
             mask=(rm[:, None] < M) & (rn[None, :] < N))


def _interpreting() -> bool:
    import os

    return os.environ.get("TRITON_INTERPRET", "") == "1"


def gemm_lora(x, y, u, v, bias=None) -> torch.Tensor:
    """x (M, K) @ y (K, N) + u (M, R) @ v (R, N) [+ bias]: any strides, one kernel, fp32 accumulate."""
    M, K = x.shape
    N = y.shape[1]
    R = u.shape[1]
    c = torch.empty(M, N, dtype=x.dtype, device=x.device)
    if _interpreting():
        bm, bn, bk, warps, stages = 16, 16, 16, 4, 1
    else:
        bm, bn, bk, warps, stages = 128, 128, 64, 8, 3
    br = max(16, triton.next_power_of_2(R))
    precision = "ieee" if x.dtype in (torch.float32, torch.float64) else "tf32"
    grid = (triton.cdiv(M, bm), triton.cdiv(N, bn))
    _gemm_lora_kernel[grid](x, y, u, v, bias if bias is not None else x, c, M, N, K, R,
                            x.stride(0), x.stride(1), y.stride(0), y.stride(1), u.stride(0), u.stride(1),
                            v.stride(0), v.stride(1), c.stride(0), c.stride(1),
                            HAS_BIAS=bias is not None, PRECISION=precision, BM=bm, BN=bn, BK=bk, BR=br,
                            num_warps=warps, num_stages=stages)
    return c


def lora_forward_triton(x2, weight, bias, lora_A, lora_B, scaling):
    """x2 (N, in) → (y (N, out), u (N, r)); same contract as `lora_forward_torch`."""
    u = x2 @ lora_A.t()                                                       # (N, r) cuBLAS
    y = gemm_lora(x2, weight.t(), u * scaling, lora_B.t(), bias)              # (N, out) one kernel
    return y, u


def lora_backward_triton(g, x2, u, weight, lora_A, lora_B, scaling, need_x: bool):
    """g (N, out) → (dx (N, in) or None, dA (r, in), dB (out, r))."""
    g = g.contiguous()
    du = scaling * (g @ lora_B)                                               # (N, r)
    dB = scaling * (g.t() @ u)                                                # (out, r)
    dA = du.t() @ x2                                                          # (r, in)
    dx = gemm_lora(g, weight, du, lora_A) if need_x else None                 # (N, in) one kernel
    return dx, dA, dB
