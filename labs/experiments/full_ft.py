"""Lab `full-ft`: full fine-tuning of the bundled base on one task — the baseline every method meets.

Every parameter trains (embeddings, attention, MLP, norms). The result reports what that costs:
trainable = total parameters, and gradient + AdamW-state bytes as large as the weights ×3.
"""
from __future__ import annotations

from labs.base import load_base
from labs.experiments import Context, Lab
from labs.params import Param
from labs.tasks import TASKS, get_task
from labs.train import TrainConfig, train

PARAMS = [
    Param("task", "choice", "facts", choices=tuple(TASKS), help="which fine-tuning task"),
    Param("steps", "int", 200, lo=1, hi=400, gpu_hi=5000, help="optimizer steps"),
    Param("batch_size", "int", 16, lo=1, hi=64, gpu_hi=512, help="examples per step"),
    Param("lr", "float", 1e-3, lo=1e-6, hi=1e-1, log=True, help="peak learning rate (AdamW, cosine)"),
    Param("eval_every", "int", 50, lo=1, hi=1000, help="steps between evals"),
    Param("seed", "int", 0, lo=0, hi=2**31 - 1, help="random seed"),
]


def run(p: dict, ctx: Context) -> dict:
    model, tok = load_base()
    for param in model.parameters():
        param.requires_grad_(True)
    cfg = TrainConfig(steps=p["steps"], batch_size=p["batch_size"], lr=p["lr"], eval_every=p["eval_every"],
                      seed=p["seed"], device=ctx.device)
    res = train(model, tok, get_task(p["task"]), cfg, on_event=ctx.emit, should_stop=ctx.should_stop)
    return {"task": p["task"], "chance": get_task(p["task"]).chance, **res}


LAB = Lab("full-ft", PARAMS, run, quick={}, tiny={"steps": 2, "batch_size": 2, "eval_every": 2})
