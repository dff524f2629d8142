"""What several labs measure the same way, in one place: memory by category and the step-time statistic.

    memory_breakdown(model, train_memory)  bytes of the model's real tensors by category + labs.train's step bytes
    step_seconds(marks, skip)              median gap between consecutive per-step time marks
"""
from __future__ import annotations

import statistics

import torch



def memory_breakdown(model, train_memory: dict) -> dict:
    """Bytes of the real tensors: frozen weights (4-bit codes included), quantization constants, trainable
    params; gradients and optimizer states as labs.train measured them at the optimizer step."""
    from labs.methods.linear4bit import QUANT_CONSTANTS, Linear4bit

    seen, out = set(), {"weights": 0, "quant_constants": 0, "trainable": 0}
    for mod in model.modules():
        for name, t in list(mod.named_parameters(recurse=False)) + list(mod.named_buffers(recurse=False)):
            if t is None or id(t) in seen:
                continue
            seen.add(id(t))                                   # tied embeddings count once
            nbytes = t.numel() * t.element_size()
            if isinstance(mod, Linear4bit) and name in QUANT_CONSTANTS:
                out["quant_constants"] += nbytes
            elif isinstance(t, torch.nn.Parameter) and t.requires_grad:
                out["trainable"] += nbytes
            else:
                out["weights"] += nbytes
    out["gradients"] = int(train_memory.get("grad_bytes", 0))
    out["optimizer"] = int(train_memory.get("optimizer_bytes", 0))
    out["total"] = sum(out.values())
    return out


def step_seconds(marks: list[float], skip=()) -> float:
    """Median of the gaps between consecutive time marks (one mark per step, the first at the start), leaving out
    the gaps whose index is in `skip` (steps whose interval also holds an eval); nan when no gap is left."""
    gaps = [b - a for i, (a, b) in enumerate(zip(marks, marks[1:])) if i not in skip]
    return statistics.median(gaps) if gaps else float("nan")
