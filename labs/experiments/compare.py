"""Lab `compare`: every method on one task, one step budget and one seed — the measured trade-off table.

The work is `labs.compare.run_compare` (also `python -m labs compare`); this module only maps the page's
parameters onto it, so the decision-guide page can re-run the comparison in a worker with live progress.
A GPU may run a bigger budget (`gpu_hi`).
"""
from __future__ import annotations

from labs.compare import METHODS, QUICK, CompareConfig, run_compare
from labs.experiments import Context, Lab
from labs.params import Param
from labs.tasks import TASKS

PARAMS = [
    Param("task", "choice", "facts", choices=tuple(TASKS), help="fine-tuning task, the same for every method"),
    Param("steps", "int", 200, lo=4, hi=400, gpu_hi=5000, help="optimizer steps, the same for every method"),
    Param("batch_size", "int", 16, lo=1, hi=64, gpu_hi=512, help="examples per step"),
    Param("latency_repeats", "int", 5, lo=1, hi=50, help="generations per method for the latency median"),
    Param("new_tokens", "int", 12, lo=1, hi=128, help="tokens generated per latency measurement"),
    Param("seed", "int", 0, lo=0, hi=2**31 - 1, help="random seed (same batches for every method)"),
]


def run(p: dict, ctx: Context) -> dict:
    cfg = CompareConfig(task=p["task"], steps=p["steps"], batch_size=p["batch_size"], seed=p["seed"],
                        latency_repeats=p["latency_repeats"], new_tokens=p["new_tokens"], device=ctx.device)
    result = run_compare(cfg, emit=ctx.emit, should_stop=ctx.should_stop)
    full = result["rows"][0]
    # the panel's history table reads `final`: full FT's accuracy, the reference every row is divided by
    return {**result, "final": {"eval_accuracy": full["accuracy"], "variant": "full"}}


LAB = Lab(
    id="compare",
    params=PARAMS,
    run=run,
    quick=dict(QUICK),
    tiny={"steps": 4, "batch_size": 2, "latency_repeats": 1, "new_tokens": 1},
    summary={"en": f"Trains {len(METHODS)} methods in turn on the same task, steps and seed (learning rate per "
                   "method), then times greedy decoding against the base: trainable share, memory by category, "
                   "seconds per step, ms per token, accuracy vs full FT and lines of code.",
             "zh": f"依次在同一任务、同样步数和随机种子下训练 {len(METHODS)} 种方法（学习率按方法设定），再与基座对比"
                   "贪心解码速度：可训练参数占比、按类别的内存、每步秒数、每 token 毫秒、相对全量微调的准确率和代码行数。"},
)
