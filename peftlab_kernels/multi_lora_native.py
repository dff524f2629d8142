"""Multi-LoRA BGMV through the C kernel (`peftlab_kernels/csrc/multi_lora_cpu.c`): fp32 CPU tensors.

    y_delta[t] = B[a] (scaling[a] · A[a] x[t]),  a = idx[t];  0 where a = -1

Rows are grouped by adapter inside the call; each group reads its adapter's A and B once (4 rows per
pass over A; B transposed once per group through 16 × 16 register tiles, then 8 rows per pass over
it), on torch's OpenMP pool. `available()` is
False without a C compiler; `peftlab_kernels.multi_lora.bgmv` then uses the PyTorch path.
"""
from __future__ import annotations

import ctypes

import torch

from peftlab_kernels import _native

_LIB = "multi_lora_cpu"
_P, _I64 = ctypes.c_void_p, ctypes.c_int64
_ARGS = [_P, _P, _P, _P, _P, _P, _I64, _I64, _I64, _I64, _I64, ctypes.c_int, ctypes.c_int]


def _fn():
    return _native.function(_LIB, "peftlab_bgmv_f32", _ARGS)


def available() -> bool:
    return _fn() is not None


def simd() -> bool:
    return _native.simd(_LIB, "peftlab_bgmv")


def bgmv_native(x, A, B, idx, scaling, *, threads: int | None = None, _simd: bool = True) -> torch.Tensor:
    """Shapes as `peftlab_kernels.multi_lora.bgmv` (checked there); every tensor fp32 (idx int64) on the CPU."""
    f = _fn()
    if f is None:
        raise RuntimeError("the native multi-LoRA kernel is not available; see peftlab_kernels._native.status()")
    for name, t in (("x", x), ("A", A), ("B", B), ("scaling", scaling)):
        if t.device.type != "cpu" or t.dtype != torch.float32:
            raise ValueError(f"bgmv_native: {name} must be a float32 CPU tensor, got {t.dtype} on {t.device}")
    x, A, B = x.contiguous(), A.contiguous(), B.contiguous()
    scaling, idx = scaling.contiguous(), idx.to(torch.int64).contiguous()
    T, d_in = x.shape
    K, r, _ = A.shape
    d_out = B.shape[1]
    y = torch.empty(T, d_out, dtype=torch.float32)
    rc = f(x.data_ptr(), A.data_ptr(), B.data_ptr(), idx.data_ptr(), scaling.data_ptr(), y.data_ptr(),
           T, d_in, d_out, r, K, threads or torch.get_num_threads(), int(_simd))
    if rc == -1:
        lo, hi = (int(v) for v in torch.aminmax(idx))
        raise ValueError(f"multi_lora: idx values in [{lo}, {hi}]; allowed -1 (no adapter) .. {K - 1}")
    if rc != 0:
        raise MemoryError("bgmv_native: out of memory for the row grouping scratch")
    return y
