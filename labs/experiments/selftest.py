"""Lab `selftest`: exercises the lab engine itself, no model involved.

It emits ``steps`` synthetic step events ``delay`` seconds apart, and can misbehave on purpose —
raise, exit the process, or ignore cancellation — so the engine's fault handling can be tested
and demonstrated. Hidden from the app's lab pages.
"""
from __future__ import annotations

import math
import os
import time

from labs.experiments import Context, Lab
from labs.params import Param
from labs.train import Cancelled

PARAMS = [
    Param("steps", "int", 20, lo=1, hi=10000, help="synthetic steps"),
    Param("delay", "float", 0.05, lo=0.0, hi=10.0, help="seconds per step"),
    Param("fail", "choice", "none", choices=("none", "raise", "exit", "ignore-cancel"), help="misbehave on purpose"),
    Param("fail_at", "int", 5, lo=1, hi=10000, help="step at which to misbehave"),
]


def run(p: dict, ctx: Context) -> dict:
    ctx.emit({"type": "start", "steps": p["steps"], "device": "cpu"})
    t0 = time.perf_counter()
    for step in range(1, p["steps"] + 1):
        if p["fail"] != "ignore-cancel" and ctx.should_stop():
            raise Cancelled(f"cancelled at step {step}")
        if step == p["fail_at"] and p["fail"] == "raise":
            raise RuntimeError(f"selftest raised at step {step} on purpose")
        if step == p["fail_at"] and p["fail"] == "exit":
            os._exit(3)
        time.sleep(p["delay"])
        elapsed = time.perf_counter() - t0
        ctx.emit({"type": "step", "step": step, "loss": math.exp(-step / 10), "elapsed": elapsed,
                  "eta": elapsed / step * (p["steps"] - step), "tokens_per_s": 100.0})
        if step % 5 == 0:
            ctx.emit({"type": "eval", "step": step, "eval_loss": math.exp(-step / 10),
                      "eval_accuracy": 1 - math.exp(-step / 10)})
    ctx.emit({"type": "end"})
    return {"device": "cpu", "final": {"eval_loss": math.exp(-p["steps"] / 10)}}


LAB = Lab(id="selftest", params=PARAMS, run=run, hidden=True, tiny={"steps": 3, "delay": 0.0})
