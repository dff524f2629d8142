"""NF4 / FP4 / INT4 blockwise quantization (QLoRA's storage format), bit-exact with bitsandbytes.

    W (out, in) fp32/bf16/fp16                          NF4Tensor
    ┌────────────── n = out·in elements ─────────┐      packed   (ceil(n/2),) uint8   4 bit/param
    │ blk 0 (64) │ blk 1 (64) │ …  │ blk B−1     │  →   absmax   (B,) fp32           32/64 = 0.5
    └────────────────────────────────────────────┘      — or, double_quant=True —
       a_b = max|w| per block; w/a_b ∈ [−1, 1]           qabsmax (B,) uint8          8/64 = 0.125
       → index of the nearest of 16 levels               absmax_scale (B/256,) fp32  32/16384
                                                         absmax_offset () fp32

QLoRA (Dettmers et al. 2023) §3: 4-bit NormalFloat + double quantization + paged optimizers. The
levels are in `peftlab_kernels.codebooks`; the 8-bit second level in `peftlab_kernels.blockwise8`; the numerics
(reference and fast PyTorch path) in `peftlab_kernels.quant4_torch`; the Triton twin in
`peftlab_kernels.quant4_triton`. This module is the public API and the one dispatch:
Triton when the tensor is on CUDA and triton imports, PyTorch otherwise.

Matches bitsandbytes: `packed` == `quantize_4bit(w, blocksize, quant_type, compress_statistics)[0]`
(flattened) and `dequantize_nf4(q)` == `dequantize_4bit(...)` bitwise, for any shape (ties, zeros,
all-zero blocks and a partial last block included). Tests check both.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from peftlab_kernels._dispatch import use_native, use_triton
from peftlab_kernels.blockwise8 import double_dequantize, double_quantize
from peftlab_kernels.codebooks import nf4_codebook  # noqa: F401  (re-exported: part of the contract)
from peftlab_kernels.quant4_torch import dequantize_4bit_fast, quantize_4bit_fast

BLOCKSIZES = (32, 64, 128, 256, 512, 1024, 2048, 4096)
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
QUANT_TYPES = ("nf4", "fp4", "int4")


@dataclass(frozen=True)
class NF4Tensor:
    """A frozen 4-bit weight. Named after NF4; `quant_type` says which codebook ("nf4"/"fp4"/"int4").

    Exactly one of `absmax` (plain) or (`qabsmax`, `absmax_scale`, `absmax_offset`) (double quant)
    is set. `block_absmax()` returns the fp32 per-block scales either way.
    """

    packed: torch.Tensor                      # (ceil(n/2),) uint8, element 2i in the high nibble
    shape: torch.Size
    dtype: torch.dtype                        # dtype of the original weight and of dequantize()
    blocksize: int
    quant_type: str = "nf4"
    absmax: torch.Tensor | None = None        # (n_blocks,) fp32
    qabsmax: torch.Tensor | None = None       # (n_blocks,) uint8, 8-bit dynamic codes
    absmax_scale: torch.Tensor | None = None  # (ceil(n_blocks/256),) fp32
    absmax_offset: torch.Tensor | None = None  # () fp32, mean of the absmax

    @property
    def double_quant(self) -> bool:
        return self.qabsmax is not None

    @property
    def device(self) -> torch.device:
        return self.packed.device

    def numel(self) -> int:
        return self.shape.numel()

    def block_absmax(self) -> torch.Tensor:
        """(n_blocks,) fp32 scales, rebuilt from the double-quant state when there is one."""
        if self.double_quant:
            return double_dequantize(self.qabsmax, self.absmax_scale, self.absmax_offset)
        return self.absmax

    def state_tensors(self) -> dict[str, torch.Tensor]:
        names = ("packed", "absmax", "qabsmax", "absmax_scale", "absmax_offset")
        return {k: getattr(self, k) for k in names if getattr(self, k) is not None}

    def nbytes(self) -> int:
        """Bytes of every buffer this weight really stores (the 16-level codebook is a constant)."""
        return sum(t.numel() * t.element_size() for t in self.state_tensors().values())

    def bits_per_param(self) -> float:
        """Measured from the buffers: 4.5 for blocksize 64, ≈ 4.127 with double quant."""
        return 8.0 * self.nbytes() / self.numel()

    def to(self, device) -> "NF4Tensor":
        moved = {k: v.to(device) for k, v in self.state_tensors().items()}
        return replace(self, **moved)


# ---------------------------------------------------------------------------------------------
# Input checks: name the field, the value, what is allowed
# ---------------------------------------------------------------------------------------------
def _check_weight(w, blocksize: int, quant_type: str) -> None:
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"w must be a torch.Tensor, got {type(w).__name__}")
    if w.dtype not in DTYPES:
        raise TypeError(f"w.dtype={w.dtype} is not supported; allowed: float32, bfloat16, float16")
    if w.numel() == 0:
        raise ValueError(f"w is empty (shape={tuple(w.shape)}); nothing to quantize")
    if isinstance(blocksize, bool) or not isinstance(blocksize, int) or blocksize not in BLOCKSIZES:
        raise ValueError(f"blocksize={blocksize!r} is not supported; allowed: {BLOCKSIZES}")
    if quant_type not in QUANT_TYPES:
        raise ValueError(f"quant_type={quant_type!r} is not supported; allowed: {QUANT_TYPES}")


def _check_finite(absmax: torch.Tensor, blocksize: int) -> None:
    """NaN/Inf anywhere in a block makes that block's absmax non-finite (amax propagates NaN)."""
    bad = ~torch.isfinite(absmax)
    if bool(bad.any()):
        first = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"w contains NaN or Inf (first in block {first}, elements {first * blocksize}…"
            f"{(first + 1) * blocksize - 1} of the flattened tensor); quantization needs finite weights"
        )


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------
def quantize_4bit(w: torch.Tensor, quant_type: str = "nf4", blocksize: int = 64,
                  double_quant: bool = True) -> NF4Tensor:
    """Blockwise absmax 4-bit quantization; see the module docstring."""
    _check_weight(w, blocksize, quant_type)
    w = w.detach().contiguous()
    if use_triton(w):
        from peftlab_kernels.quant4_triton import quantize_4bit_triton

        packed, absmax = quantize_4bit_triton(w, blocksize, quant_type)
    else:
        packed, absmax = quantize_4bit_fast(w, blocksize, quant_type)
    _check_finite(absmax, blocksize)
    common = dict(packed=packed, shape=w.shape, dtype=w.dtype, blocksize=blocksize, quant_type=quant_type)
    if not double_quant:
        return NF4Tensor(absmax=absmax, **common)
    qabsmax, scale, offset = double_quantize(absmax)
    return NF4Tensor(qabsmax=qabsmax, absmax_scale=scale, absmax_offset=offset, **common)


def dequantize_4bit(q: NF4Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """ŵ = round_dtype(level[code] · absmax[block]), shape q.shape, dtype q.dtype unless given."""
    if not isinstance(q, NF4Tensor):
        raise TypeError(f"q must be an NF4Tensor (from quantize_nf4/fp4/int4), got {type(q).__name__}")
    dtype = dtype or q.dtype
    if dtype not in DTYPES:
        raise TypeError(f"dtype={dtype} is not supported; allowed: float32, bfloat16, float16")
    if use_triton(q.packed):
        absmax = q.block_absmax()
        from peftlab_kernels.quant4_triton import dequantize_4bit_triton

        return dequantize_4bit_triton(q.packed, absmax, q.shape, dtype, q.blocksize, q.quant_type)
    if use_native(q.packed):
        from peftlab_kernels.quant4_native import dequantize_4bit_native

        if q.double_quant:
            return dequantize_4bit_native(q.packed, q.shape, dtype, q.blocksize, q.quant_type,
                                          dq_state=(q.qabsmax, q.absmax_scale, q.absmax_offset))
        return dequantize_4bit_native(q.packed, q.shape, dtype, q.blocksize, q.quant_type, absmax=q.absmax)
    absmax = q.block_absmax()
    return dequantize_4bit_fast(q.packed, absmax, q.shape, dtype, q.blocksize, q.quant_type)


def quantize_nf4(w: torch.Tensor, blocksize: int = 64, double_quant: bool = True) -> NF4Tensor:
    """NF4 (QLoRA's default). Same bytes as `bnb.functional.quantize_4bit(w, quant_type="nf4")`."""
    return quantize_4bit(w, "nf4", blocksize, double_quant)


def quantize_fp4(w: torch.Tensor, blocksize: int = 64, double_quant: bool = True) -> NF4Tensor:
    """FP4 (E2M1, bitsandbytes' layout). Same bytes as `quantize_4bit(w, quant_type="fp4")`."""
    return quantize_4bit(w, "fp4", blocksize, double_quant)


def quantize_int4(w: torch.Tensor, blocksize: int = 64, double_quant: bool = True) -> NF4Tensor:
    """Symmetric INT4: round(w/absmax · 7) ∈ [−7, 7] (ties round down). Ours; bitsandbytes has none."""
    return quantize_4bit(w, "int4", blocksize, double_quant)


def _dequantize_kind(q: NF4Tensor, kind: str, dtype) -> torch.Tensor:
    if isinstance(q, NF4Tensor) and q.quant_type != kind:
        raise ValueError(f"q.quant_type={q.quant_type!r}; dequantize_{kind} needs {kind!r} (or use dequantize_4bit)")
    return dequantize_4bit(q, dtype)


def dequantize_nf4(q: NF4Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    return _dequantize_kind(q, "nf4", dtype)


def dequantize_fp4(q: NF4Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    return _dequantize_kind(q, "fp4", dtype)


def dequantize_int4(q: NF4Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    return _dequantize_kind(q, "int4", dtype)
