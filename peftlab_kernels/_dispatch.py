"""One dispatch rule for every op in `kernels/`.

    Triton  if the tensor lives on CUDA and `triton` imports,
    C       for the few CPU ops with a fused native loop (`use_native`), when a C compiler built it,
    PyTorch otherwise.

Tests force the Triton path on CPU by setting `PEFTLAB_FORCE_TRITON=1` together with
`TRITON_INTERPRET=1` (Triton's interpreter runs kernels on CPU tensors with numpy). Both must be
set before `triton` is first imported, so those tests run in a subprocess. `PEFTLAB_FORCE_TORCH=1`
does the opposite (PyTorch even on CUDA), for benchmarks that compare the two paths.
"""
from __future__ import annotations

import functools
import os

import torch

from peftlab_kernels._native import OFF_ENV as NATIVE_OFF_ENV   # PyTorch instead of the C loop on CPU

FORCE_ENV = "PEFTLAB_FORCE_TRITON"
TORCH_ENV = "PEFTLAB_FORCE_TORCH"      # benchmarks: the PyTorch path even on CUDA, to compare the two


@functools.lru_cache(maxsize=1)
def triton_available() -> bool:
    """True when `import triton` works (the GPU box and the CPU dev box both have it)."""
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception:  # ImportError, or a broken install that raises on import
        return False
    return True


def forced() -> bool:
    """Tests: run the Triton twin even on CPU tensors (requires TRITON_INTERPRET=1)."""
    return os.environ.get(FORCE_ENV, "") == "1"


def use_triton(t: torch.Tensor) -> bool:
    """The single dispatch rule: Triton on CUDA tensors when available (or when forced by tests)."""
    if os.environ.get(TORCH_ENV, "") == "1":
        return False
    if forced():
        if os.environ.get("TRITON_INTERPRET", "") != "1" and not t.is_cuda:
            raise RuntimeError(
                f"{FORCE_ENV}=1 on a CPU tensor needs TRITON_INTERPRET=1 set before triton is imported"
            )
        return triton_available()
    return t.is_cuda and triton_available()


def use_native(t: torch.Tensor, lib: str = "quant4_cpu") -> bool:
    """CPU tensors: the fused C loop `peftlab_kernels/csrc/<lib>.c` (peftlab_kernels/_native.py) when it built;
    `PEFTLAB_NO_NATIVE=1` or `PEFTLAB_FORCE_TORCH=1` turns it off (the PyTorch path, e.g. to
    compare the two)."""
    if t.device.type != "cpu" or os.environ.get(TORCH_ENV, "") == "1" or os.environ.get(NATIVE_OFF_ENV, "") == "1":
        return False
    from peftlab_kernels._native import library

    return library(lib) is not None
