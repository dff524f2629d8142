"""What several labs do the same way, in one place (no lab imports another lab).

    SeriesEmitter(emit, n).part(i, name)   events of variant i of n: "series", whole-lab "progress" and ETA
    merge_check(model, tok, task)          max |logit change| when a LoRA/DoRA adapter is merged (then unmerged)
    memory_breakdown(model, train_memory)  bytes of the model's real tensors by category + labs.train's step bytes
    step_seconds(marks, skip)              median gap between consecutive per-step time marks
    median_step_seconds(events, skip)      the same from labs.train's step events
"""
from __future__ import annotations

import statistics
import time
from typing import Callable

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


def median_step_seconds(events: list[dict], skip=()) -> float:
    """Median wall time of one optimizer step from labs.train's step events (their "elapsed"), leaving out the
    steps in `skip` (an eval sits in their interval)."""
    return step_seconds([0.0] + [e["elapsed"] for e in events], skip)


@torch.no_grad()
def merge_check(model, tok, task, limit: int = 32) -> float:
    """max |logits(merged) − logits(unmerged)| of a LoRA/DoRA model on `limit` eval prompts: merging changes
    nothing but rounding. The model is unmerged again afterwards."""
    from labs.methods import lora
    from labs.tasks import encode

    batch = encode(tok, task.eval[:limit], next(model.parameters()).device)
    args = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    model.eval()
    before = model(**args).logits
    lora.merge(model)
    after = model(**args).logits
    lora.unmerge(model)
    return float((before - after).abs().max())


class SeriesEmitter:
    """Tags the events of variant `i` of `n` with "series" and a whole-lab "progress" (0..1) and ETA.

    A lab that trains several variants in a row calls `emitter.part(i, name)` for each one and passes the
    returned function as `on_event` to `labs.train.train`; `share` is the fraction of the lab's time that
    training takes (the rest is measurement)."""

    def __init__(self, emit: Callable[[dict], None], n: int, share: float = 0.9):
        self.emit, self.n, self.share, self.t0 = emit, max(n, 1), share, time.perf_counter()

    def fraction(self, i: int, within: float) -> float:
        return self.share * (i + min(max(within, 0.0), 1.0)) / self.n

    def part(self, i: int, series: str) -> Callable[[dict], None]:
        state = {"steps": 1}

        def on_event(event: dict) -> None:
            event = {**event, "series": series}
            if event.get("type") == "start":
                state["steps"] = max(int(event.get("steps", 1)), 1)
                event["progress"] = self.fraction(i, 0.0)
            if event.get("type") == "end":
                event["progress"] = self.fraction(i, 1.0)
            if event.get("type") == "step":
                frac = self.fraction(i, event["step"] / state["steps"])
                elapsed = time.perf_counter() - self.t0
                event["progress"] = frac
                event["eta"] = elapsed / max(frac, 1e-9) * (1 - frac)
            self.emit(event)

        return on_event

    def phase(self, name: str, **fields) -> None:
        """A non-training phase (e.g. latency measurement) as its own event type."""
        self.emit({"type": "phase", "phase": name, "progress": self.share, **fields})
