"""4-bit dequantization through the fused C loop (`peftlab_kernels/csrc/quant4_cpu.c`), CPU tensors only.

Same numbers as `quant4_torch.dequantize_4bit_reference` bit for bit:

    ŵ_i = round_dtype( fl32( level[code_i] · absmax[i // blocksize] ) )

The C side reads each packed byte once and writes each output once (AVX-512 `vpermps` looks up 16
codes per instruction when the CPU has it, a scalar loop otherwise), split over torch's intra-op
thread count. `available()` is False without a C compiler; `peftlab_kernels.nf4` then uses the PyTorch path.
"""
from __future__ import annotations

import ctypes
import functools

import torch

from peftlab_kernels import _native
from peftlab_kernels.blockwise8 import DQ_BLOCKSIZE
from peftlab_kernels.codebooks import CODEBOOKS, dynamic_map

_LIB = "quant4_cpu"
_DTYPE_CODE = {torch.float32: 0, torch.bfloat16: 1, torch.float16: 2}
assert DQ_BLOCKSIZE == 256, "quant4_cpu.c decodes double-quant groups of 256 (b >> 8)"


_P = ctypes.c_void_p
_ARGS = [_P, _P, _P, _P, _P, ctypes.c_float, _P, ctypes.c_int64, ctypes.c_int64, ctypes.c_int, _P, ctypes.c_int, ctypes.c_int]


def _fn():
    return _native.function(_LIB, "peftlab_dequant4", _ARGS)


def available() -> bool:
    return _fn() is not None


def simd() -> bool:
    """True when the AVX-512 loop runs on this CPU (else the scalar C loop)."""
    return _native.simd(_LIB, "peftlab_dequant4")


@functools.lru_cache(maxsize=None)
def _levels(quant_type: str) -> torch.Tensor:
    return CODEBOOKS[quant_type]().float().contiguous()


def dequantize_4bit_native(packed, shape, dtype, blocksize, quant_type, absmax=None, dq_state=None, *,
                           out: torch.Tensor | None = None, threads: int | None = None,
                           _simd: bool = True) -> torch.Tensor:
    """packed (ceil(n/2),) uint8 → (shape) dtype. Scales: `absmax` (n_blocks,) fp32, or
    `dq_state` = (qabsmax uint8, absmax_scale fp32, offset fp32 scalar) from double quantization,
    which the C loop decodes per block on the fly (no (n_blocks,) fp32 temporary).

    `out`: a contiguous CPU tensor of `shape` and `dtype` to write into (benchmarks: the kernel
    without the cost of faulting in fresh memory). `threads`: default torch.get_num_threads()."""
    f = _fn()
    if f is None:
        raise RuntimeError("the native 4-bit kernel is not available; see peftlab_kernels._native.status()")
    if (absmax is None) == (dq_state is None):
        raise ValueError("give exactly one of absmax or dq_state")
    n = shape.numel()
    n_blocks = -(-n // blocksize)
    if packed.device.type != "cpu" or packed.dtype != torch.uint8 or packed.numel() * 2 < n:
        raise ValueError(f"packed must be a CPU uint8 tensor of at least {(n + 1) // 2} bytes")
    packed = packed.contiguous()
    keep = [packed]
    if absmax is not None:
        absmax = absmax.to("cpu", torch.float32).contiguous()
        if absmax.numel() < n_blocks:
            raise ValueError(f"absmax has {absmax.numel()} values; {n} elements in blocks of {blocksize} need {n_blocks}")
        keep.append(absmax)
        args = (absmax.data_ptr(), None, None, None, 0.0)
    else:
        qabsmax, scale2, offset = dq_state
        qabsmax = qabsmax.to("cpu", torch.uint8).contiguous()
        scale2 = scale2.to("cpu", torch.float32).contiguous()
        if qabsmax.numel() < n_blocks or scale2.numel() < -(-n_blocks // DQ_BLOCKSIZE):
            raise ValueError(f"double-quant state too short for {n_blocks} blocks")
        dyn = dynamic_map().float().contiguous()
        keep += [qabsmax, scale2, dyn]
        args = (None, qabsmax.data_ptr(), dyn.data_ptr(), scale2.data_ptr(), float(offset))
    levels = _levels(quant_type)
    if out is None:
        out = torch.empty(shape, dtype=dtype)
    elif out.shape != shape or out.dtype != dtype or out.device.type != "cpu" or not out.is_contiguous():
        raise ValueError(f"out must be a contiguous CPU tensor of shape {tuple(shape)} and dtype {dtype}")
    rc = f(packed.data_ptr(), *args, levels.data_ptr(), n, blocksize, _DTYPE_CODE[dtype], out.data_ptr(),
           threads or torch.get_num_threads(), int(_simd))
    if rc != 0:
        raise ValueError(f"native dequantize rejected its arguments (blocksize={blocksize}, dtype={dtype})")
    del keep
    return out
