"""Multi-LoRA: many adapters in one batch over one shared base (Punica's BGMV and SGMV, Chen et al. 2023).

    row t ──► x_t ──► W0 (shared, one GEMM for the whole batch) ───────────────┐
              │                                                               (+) ──► y_t
              └─► A[a_t] (r × in) ─► v_t ─► B[a_t] (out × r) ─► × s[a_t] ─────┘
                  shrink                     expand                     a_t = idx[t], -1 → no adapter

This file is the LoRA half only (`y_delta`); the base GEMM `x W0ᵀ` is the caller's, done once for all rows.
Shapes: x (T, in), A (K, r, in), B (K, out, r), scaling (K,), idx (T,) int64 in [-1, K).

    shrink   v_t = s[a_t] · A[a_t] x_t          (T, r)       -1 rows: v_t = 0
    expand   y_t = B[a_t] v_t                   (T, out)

Two batch layouts, two kernels (the names are Punica's):

    BGMV  batched gather matrix-vector: every row gathers its own adapter (decode: one token per request)
    SGMV  segmented gather matrix-vector: rows come in contiguous segments that share one adapter
          (prefill: a request's whole prompt), segment i = rows seg_starts[i] : seg_starts[i+1]

Mixed ranks: stack adapters of ranks r_k ≤ r_max by zero padding (`stack_adapters`): rows r_k.. of A[k]
and columns r_k.. of B[k] are 0, so the padded product B[k] A[k] is exactly the unpadded one; the
padded work (r_max − r_k)/r_max per adapter is wasted, which is what S-LoRA's heterogeneous kernels avoid.

CPU path (PyTorch). Gathering A[idx] and B[idx] copies T·r·(in+out) weights per call, and a loop over
adapter groups pays two tiny matmuls plus indexing per group. Measured faster (bench/bench_multi_lora.py):
place each row into a padded (K, M, ·) grid — slot `idx·M + rank of the row within its adapter`, M the
largest group — then ONE `bmm` against the stacked A and ONE against the stacked B, reading each adapter
once, no weight copies. Empty slots compute rows that are never read (rows of a matmul are independent).
C path (CPU, fp32, `peftlab_kernels/csrc/multi_lora_cpu.c`, when a C compiler built it): rows grouped by adapter
inside one call, each group reading its adapter once (4 rows per pass over A; B transposed once per
group through 16 × 16 register tiles, 8 rows per pass over it): no per-group op overhead, no weight copies, no empty slots. The grid path above is the
fallback (no compiler, other dtypes).
Triton path (CUDA): one program per (row, out-tile) for BGMV, per (segment, row-tile, out-tile) for SGMV,
each loading only its adapter's weights by pointer offset, as Punica's kernels do. Inference only: no autograd.
"""
from __future__ import annotations

import torch

from peftlab_kernels._dispatch import use_native, use_triton

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _check(x, A, B, scaling) -> None:
    for name, t in (("x", x), ("A", A), ("B", B), ("scaling", scaling)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"multi_lora: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype not in _FLOATS:
            raise TypeError(f"multi_lora: {name}.dtype={t.dtype}; allowed: {_FLOATS}")
    if x.dim() != 2 or A.dim() != 3 or B.dim() != 3:
        raise ValueError(f"multi_lora: x (T, in), A (K, r, in), B (K, out, r) expected; got x {tuple(x.shape)}, "
                         f"A {tuple(A.shape)}, B {tuple(B.shape)}")
    K, r, d_in = A.shape
    if x.shape[1] != d_in:
        raise ValueError(f"multi_lora: x.shape={tuple(x.shape)} must end in A's in_features={d_in}")
    if B.shape[0] != K or B.shape[2] != r:
        raise ValueError(f"multi_lora: B.shape={tuple(B.shape)}; expected ({K}, out, {r}) to match A {tuple(A.shape)}")
    if scaling.shape != (K,):
        raise ValueError(f"multi_lora: scaling.shape={tuple(scaling.shape)}; expected ({K},), one per adapter")
    if A.dtype != x.dtype or B.dtype != x.dtype:
        raise TypeError(f"multi_lora: A.dtype={A.dtype}, B.dtype={B.dtype} differ from x.dtype={x.dtype}; cast first")


def _check_index(name: str, idx: torch.Tensor, n: int, K: int, values: bool = True) -> None:
    if not isinstance(idx, torch.Tensor) or idx.dtype != torch.int64 or idx.shape != (n,):
        got = f"{idx.dtype} {tuple(idx.shape)}" if isinstance(idx, torch.Tensor) else type(idx).__name__
        raise ValueError(f"multi_lora: {name} must be an int64 tensor of shape ({n},), got {got}")
    if n and values:
        lo, hi = (int(v) for v in torch.aminmax(idx))
        if lo < -1 or hi >= K:
            raise ValueError(f"multi_lora: {name} values in [{lo}, {hi}]; allowed -1 (no adapter) .. {K - 1}")


def stack_adapters(As: list, Bs: list, scalings: list, r_max: int | None = None):
    """[(r_k, in)], [(out, r_k)], [s_k] → A (K, r_max, in), B (K, out, r_max), scaling (K,): zero-padded ranks."""
    if not As or len(As) != len(Bs) or len(As) != len(scalings):
        raise ValueError(f"stack_adapters: need equal, non-empty lists; got {len(As)} A, {len(Bs)} B, "
                         f"{len(scalings)} scalings")
    ranks = [a.shape[0] for a in As]
    r_max = r_max or max(ranks)
    if r_max < max(ranks):
        raise ValueError(f"stack_adapters: r_max={r_max} < largest rank {max(ranks)}")
    d_in, d_out = As[0].shape[1], Bs[0].shape[0]
    A = As[0].new_zeros(len(As), r_max, d_in)                     # (K, r_max, in)
    B = Bs[0].new_zeros(len(Bs), d_out, r_max)                    # (K, out, r_max)
    for k, (a, b) in enumerate(zip(As, Bs)):
        A[k, : a.shape[0]] = a
        B[k, :, : b.shape[1]] = b
    return A, B, torch.tensor([float(s) for s in scalings], dtype=A.dtype, device=A.device)


# ---------------------------------------------------------------------------------------------
# PyTorch: the per-request reference (the oracle) and the CPU paths
# ---------------------------------------------------------------------------------------------
def bgmv_reference(x, A, B, idx, scaling) -> torch.Tensor:
    """One request at a time: y_t = s[a] · B[a] (A[a] x_t). Slow and obviously right."""
    y = x.new_zeros(x.shape[0], B.shape[1])                       # (T, out)
    for t, a in enumerate(idx.tolist()):
        if a >= 0:
            y[t] = scaling[a] * (B[a] @ (A[a] @ x[t]))
    return y


def bgmv_grouped_loop(x, A, B, idx, scaling) -> torch.Tensor:
    """Rows grouped by adapter, one shrink and one expand matmul per group (the baseline the bench beats)."""
    y = x.new_zeros(x.shape[0], B.shape[1])                       # (T, out)
    for a in torch.unique(idx).tolist():
        if a < 0:
            continue
        rows = (idx == a).nonzero().squeeze(1)                    # (n_a,)
        v = x.index_select(0, rows) @ A[a].t()                    # (n_a, r)
        y.index_copy_(0, rows, (v @ B[a].t()) * scaling[a])       # (n_a, out)
    return y


def bgmv_torch(x, A, B, idx, scaling) -> torch.Tensor:
    """Padded-grid BGMV: rows → slots of a (K, M, in) grid, two `bmm`s over all K adapters, rows back."""
    K = A.shape[0]
    seen = [0] * K
    slot_of_row = []                                              # (adapter, position within its group)
    for a in idx.tolist():                                        # T small ints: cheaper in Python than 6 ops
        slot_of_row.append((a, seen[a] if a >= 0 else -1))
        if a >= 0:
            seen[a] += 1
    M = max(seen)                                                 # largest group
    if M == 0:                                                    # every row is -1
        return x.new_zeros(x.shape[0], B.shape[1])
    rows = [t for t, (a, _) in enumerate(slot_of_row) if a >= 0]
    slot = torch.tensor([a * M + j for a, j in slot_of_row if a >= 0], device=x.device)   # (T',)
    full = len(rows) == x.shape[0]
    rows_t = None if full else torch.tensor(rows, device=x.device)
    xv = x if full else x.index_select(0, rows_t)                 # (T', in)
    xp = x.new_zeros(K * M, x.shape[1]).index_copy_(0, slot, xv)  # (K·M, in)
    v = torch.bmm(xp.view(K, M, -1), A.transpose(1, 2))           # (K, M, r)   shrink
    v *= scaling.view(K, 1, 1)
    yp = torch.bmm(v, B.transpose(1, 2)).view(K * M, -1)          # (K·M, out) expand
    if full:
        return yp.index_select(0, slot)                           # (T, out)
    return x.new_zeros(x.shape[0], B.shape[1]).index_copy_(0, rows_t, yp.index_select(0, slot))  # -1 rows: 0


def sgmv_torch(x, A, B, seg_starts, seg_adapter, scaling) -> torch.Tensor:
    """One matmul pair per contiguous segment: prefill segments are long, so the loop costs little."""
    y = x.new_zeros(x.shape[0], B.shape[1])                       # (T, out)
    bounds = seg_starts.tolist()
    for i, a in enumerate(seg_adapter.tolist()):
        lo, hi = bounds[i], bounds[i + 1]
        if a >= 0 and hi > lo:
            y[lo:hi] = ((x[lo:hi] @ A[a].t()) * scaling[a]) @ B[a].t()   # (n, r) → (n, out)
    return y


def segments_to_rows(seg_starts: torch.Tensor, seg_adapter: torch.Tensor, n_rows: int) -> torch.Tensor:
    """SGMV's segments as BGMV's per-row index: (S+1,), (S,) → idx (T,), -1 outside every segment."""
    idx = torch.full((n_rows,), -1, dtype=torch.int64, device=seg_adapter.device)
    bounds = seg_starts.tolist()
    for i, a in enumerate(seg_adapter.tolist()):
        idx[bounds[i]:bounds[i + 1]] = a
    return idx


# ---------------------------------------------------------------------------------------------
# The public ops: one dispatch each
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def bgmv(x, A, B, idx, scaling) -> torch.Tensor:
    """y_delta (T, out) with y_delta[t] = scaling[idx[t]] · B[idx[t]] A[idx[t]] x[t]; 0 where idx[t] = -1."""
    _check(x, A, B, scaling)
    native = x.dtype == torch.float32 and not use_triton(x) and use_native(x, "multi_lora_cpu")
    _check_index("idx", idx, x.shape[0], A.shape[0], values=not native)    # the C kernel checks values
    if x.shape[0] == 0:
        return x.new_zeros(0, B.shape[1])
    if native:
        from peftlab_kernels.multi_lora_native import bgmv_native

        return bgmv_native(x, A, B, idx, scaling)
    if use_triton(x):
        from peftlab_kernels.multi_lora_triton import bgmv_triton

        return bgmv_triton(x, A, B, idx, scaling)
    return bgmv_torch(x, A, B, idx, scaling)


@torch.no_grad()
def sgmv(x, A, B, seg_starts, seg_adapter, scaling) -> torch.Tensor:
    """y_delta (T, out) for segments: rows seg_starts[i]:seg_starts[i+1] use adapter seg_adapter[i] (-1: none)."""
    _check(x, A, B, scaling)
    S = seg_adapter.shape[0] if isinstance(seg_adapter, torch.Tensor) else -1
    _check_index("seg_adapter", seg_adapter, max(S, 0), A.shape[0])
    if not isinstance(seg_starts, torch.Tensor) or seg_starts.dtype != torch.int64 or seg_starts.shape != (S + 1,):
        raise ValueError(f"multi_lora: seg_starts must be int64 of shape ({S + 1},) (segment boundaries), got "
                         f"{getattr(seg_starts, 'dtype', type(seg_starts).__name__)} "
                         f"{tuple(getattr(seg_starts, 'shape', ()))}")
    b = seg_starts.tolist()
    if b[0] < 0 or b[-1] > x.shape[0] or any(hi < lo for lo, hi in zip(b, b[1:])):
        raise ValueError(f"multi_lora: seg_starts={b} must be non-decreasing within 0..{x.shape[0]} (rows of x)")
    if use_triton(x):
        from peftlab_kernels.multi_lora_triton import sgmv_triton

        return sgmv_triton(x, A, B, seg_starts, seg_adapter, scaling)
    return sgmv_torch(x, A, B, seg_starts, seg_adapter, scaling)
