"""Per-drill case builders. `content/drills/<id>/drill.yaml` names one as `grader: module:function`.

Every builder takes a `torch.Generator` (a fresh seed per check) and returns `grading.Case`s whose
`expected` values come from the project's own references: `labs.methods`, `peftlab_kernels`,
`labs.budget`. Shapes are chosen adversarially: r = 1, odd sizes, batch dims, partial NF4 blocks,
fp32 and bf16, and every tensor that is zero at initialisation in practice (LoRA's B, the adapter
gate, ...) is drawn non-zero so that scaling and transposition mistakes change the numbers.
"""
from __future__ import annotations

import importlib

import torch


def builder(spec: str):
    module, fn = spec.split(":")
    return getattr(importlib.import_module(f"labs.drills.graders.{module}"), fn)


def error_hints(spec: str):
    module = spec.split(":")[0]
    return getattr(importlib.import_module(f"labs.drills.graders.{module}"), "error_hint", None)


def randn(g: torch.Generator, *shape, dtype=torch.float32, scale: float = 1.0) -> torch.Tensor:
    return (torch.randn(*shape, generator=g) * scale).to(dtype)


def randint(g: torch.Generator, lo: int, hi: int) -> int:
    """An integer in [lo, hi]."""
    return int(torch.randint(lo, hi + 1, (1,), generator=g))


def choice(g: torch.Generator, seq):
    return seq[randint(g, 0, len(seq) - 1)]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")
