"""The one way the labs load third-party model code: local files only, no hub kernels, no scary probes.

Why this module exists (measured 2026-12-04, transformers 5.25.0 + the hub library `kernels` 0.19.1):

* transformers 5.25 lists the Hugging Face hub library `kernels` as a hard dependency and **defaults
  `from_pretrained(use_kernels=True)`**: after loading it calls `kernels.kernelize(model)`, which swaps
  the `forward` of decorated layers (RMSNorm, rotary, SiLU-and-mul, ...) for kernels fetched from the hub
  (`kernels-community/...`). A lab that measures *our* implementation must run transformers' own PyTorch
  layers, offline, with the same numerics on every machine; so every load passes `use_kernels=False`
  (accepted by every transformers 5.x; `USE_HUB_KERNELS=NO` in the environment has the same effect).
* bitsandbytes (0.50, CPU backend) on an AVX512-BF16 CPU tries, at import, to fetch an optional
  `gemm_4bit_forward` from the hub with `kernels.get_kernel(...)`; offline that fails and it logs a
  WARNING "Failed to load CPU gemm_4bit_forward from kernels-community: ...", then uses its own C kernel.
  Nothing of ours calls that gemm (the labs use bitsandbytes only to quantize/dequantize for parity), so
  `import_bitsandbytes()` drops exactly that record; every other bitsandbytes message still shows. With
  HF_HUB_OFFLINE=1 the hub library adds its own WARNING for the same probe ("Skipping publisher trust
  check for 'kernels-community/quantization-bitsandbytes' ..."): the `kernels` loggers are held at ERROR
  for the duration of that import only.
"""
from __future__ import annotations

import logging
import os

HUB_OFF = {"local_files_only": True, "use_kernels": False}
BNB_HUB_PROBE = "Failed to load CPU gemm_4bit_forward from kernels-community"


def load_pretrained(auto_cls, folder: str | os.PathLike, **kwargs):
    """`auto_cls.from_pretrained(folder, ...)` from local files with hub kernelization off (and without
    transformers' per-load "Loading weights" progress bar: a 15 MB model loads in milliseconds)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    return auto_cls.from_pretrained(folder, **HUB_OFF, **kwargs)


def load_tokenizer(folder: str | os.PathLike):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


def is_kernelized(model) -> bool:
    """True when the hub library `kernels` replaced any layer's forward (what `kernelize` leaves behind:
    a `forward` or `_kernel_repo` in a module's own __dict__) or transformers marked the model so."""
    if getattr(model, "use_kernels", False) or getattr(model, "_kernels_mode", None) is not None:
        return True
    return any("forward" in vars(m) or "_kernel_repo" in vars(m) for m in model.modules())


class _DropHubProbe(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(BNB_HUB_PROBE)


def quiet_bitsandbytes_probe() -> None:
    """Install the filter on bitsandbytes' CPU-ops logger (idempotent). Call before importing it."""
    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    if not any(isinstance(f, _DropHubProbe) for f in logger.filters):
        logger.addFilter(_DropHubProbe())


def import_bitsandbytes():
    """`import bitsandbytes` without its optional hub-kernel probe warning (see module docstring)."""
    quiet_bitsandbytes_probe()
    hub = logging.getLogger("kernels")
    level = hub.level
    hub.setLevel(logging.ERROR)
    try:
        import bitsandbytes
    finally:
        hub.setLevel(level)
    return bitsandbytes
