"""Lab `adalora`: AdaLoRA with a total rank budget vs fixed-rank LoRA with the same final budget.

AdaLoRA (Zhang et al. 2023, arXiv:2303.10512) starts every adapted matrix at rank init_r and prunes
rank-one triplets (P[:, i], λ_i, Q[i, :]) across the whole model down to the target budget

    b(0) = init_r · n_matrices        b(T) = target_r · n_matrices      (PEFT's definition)

on a cubic schedule (warm-up tinit, final tfinal, a budget update every deltaT steps). The lab trains it
through the one loop (`labs.train.train`):

    extra_loss  = orth_reg_weight · R(P, Q)          R = mean ||PᵀP − I||_F, ||QQᵀ − I||_F   (eq. 4)
    after_step  = RankAllocator.step(model, step)    importance EMA, then mask λ to the top-b(t) triplets

and records the rank of every matrix at every step (the heatmap), the surviving triplets against b(t),
and R. The same-budget baseline is LoRA with r = target_r on the same targets: its parameters equal the
final AdaLoRA budget up to the λ's (one per kept triplet). Which matrices keep rank is a measurement on
this model and task; the paper (DeBERTaV3) found FFN matrices and top layers favoured.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

from labs.base import load_base
from labs.experiments import Context, Lab
from labs.methods import adalora as ada
from labs.methods import inject
from labs.methods import lora as lora_method
from labs.methods.inject import layer_index, module_type, preset
from labs.methods.io import save as save_adapter
from labs.params import Param, ParamError
from labs.toolkit import median_step_seconds
from labs.tasks import TASKS, get_task
from labs.train import Hooks, TrainConfig, train

TARGETS = ("all-linear", "q,k,v,o", "q,v", "mlp")        # labs.methods.inject.TARGET_PRESETS keys

PARAMS = [
    Param("task", "choice", "topic", choices=tuple(TASKS), help="which fine-tuning task"),
    Param("init_r", "int", 8, lo=1, hi=64, gpu_hi=256, help="starting rank of every adapted matrix"),
    Param("target_r", "int", 2, lo=1, hi=64, gpu_hi=256, help="average rank left at the end (budget / matrices)"),
    Param("tinit", "int", 10, lo=0, hi=2000, gpu_hi=20000, help="warm-up steps at the full budget"),
    Param("tfinal", "int", 15, lo=0, hi=2000, gpu_hi=20000, help="final steps at the target budget"),
    Param("deltaT", "int", 5, lo=1, hi=500, help="steps between budget updates"),
    Param("beta1", "float", 0.85, lo=0.01, hi=0.999, help="EMA of the sensitivity |θ·∂L/∂θ|"),
    Param("beta2", "float", 0.85, lo=0.01, hi=0.999, help="EMA of its uncertainty"),
    Param("orth_reg_weight", "float", 0.5, lo=0.0, hi=10.0, help="γ of the orthogonality penalty"),
    Param("lora_alpha", "float", 8.0, lo=0.5, hi=512.0, help="AdaLoRA: scale lora_alpha / init_r; LoRA: lora_alpha / r"),
    Param("target_modules", "choice", "all-linear", choices=tuple(TARGETS), help="which linears get an adapter"),
    Param("lr", "float", 1e-2, lo=1e-6, hi=1e-1, log=True, help="peak learning rate (both methods)"),
    Param("steps", "int", 120, lo=4, hi=400, gpu_hi=5000, help="optimizer steps = the schedule's T"),
    Param("batch_size", "int", 16, lo=1, hi=64, gpu_hi=512, help="examples per step"),
    Param("compare_lora", "bool", True, help="also train LoRA with r = target_r (same final budget)"),
    Param("eval_limit", "int", 200, lo=8, hi=2000, help="eval examples per evaluation"),
    Param("seed", "int", 0, lo=0, hi=2**31 - 1, help="random seed (same data order for both methods)"),
]
MODULE_ORDER = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def check(p: dict) -> None:
    """Cross-field rules of AdaLoRA's schedule, with the field to change named (range checks are per field)."""
    if p["target_r"] > p["init_r"]:
        raise ParamError("target_r", f"target_r = {p['target_r']} is above init_r = {p['init_r']}: "
                         f"allowed 1..{p['init_r']} (the budget can only shrink)")
    room = p["steps"] - p["tfinal"] - p["tinit"]
    if room < 1:
        raise ParamError("tinit", f"tinit = {p['tinit']} + tfinal = {p['tfinal']} leaves no budgeting phase in "
                         f"steps = {p['steps']}: allowed tinit + tfinal <= {p['steps'] - 1}")


def schedule(steps: int, init_r: int, target_r: int, n_matrices: int, tinit: int, tfinal: int,
             deltaT: int) -> list[dict]:
    """b(t) for t = 1..steps from the real RankAllocator (not a copy of its formula), with the update flag."""
    cfg = ada.AdaLoraConfig(total_step=steps, init_r=init_r, target_r=target_r, tinit=tinit, tfinal=tfinal,
                            deltaT=deltaT)
    layers = {f"m{i}": SimpleNamespace(r=init_r) for i in range(n_matrices)}
    alloc = ada.RankAllocator(layers, cfg)
    out = []
    for t in range(1, steps + 1):
        budget, update = alloc.budget_schedule(t)
        out.append({"step": t, "budget": budget, "update": bool(update) and t < steps - tfinal or
                    t == steps - tfinal})
    return out


def count_targets(model, target_modules: str) -> int:
    return len(inject.match_targets(model, preset(target_modules)))


def allocation(ranks: dict[str, int]) -> dict:
    """Final ranks summed by module type and by layer, plus the (layer, type) grid for the heatmap."""
    by_type, by_layer = defaultdict(int), defaultdict(int)
    for name, r in ranks.items():
        by_type[module_type(name)] += r
        by_layer[layer_index(name)] += r
    return {"by_type": dict(by_type), "by_layer": {str(k): v for k, v in sorted(by_layer.items())}}


def _tagged(ctx: Context, series: str, index: int, count: int, steps: int, sink: list):
    def on_event(event: dict) -> None:
        done = {"start": 0.0, "end": 1.0}.get(event["type"], event.get("step", 0) / steps)
        event = {**event, "series": series, "progress": (index + done) / count}
        if event["type"] == "step":
            sink.append(event)
        ctx.emit(event)
    return on_event


def run_adalora(p: dict, ctx: Context, count: int) -> dict:
    model, tok = load_base()
    ada.apply(model, total_step=p["steps"], init_r=p["init_r"], target_r=p["target_r"], tinit=p["tinit"],
              tfinal=p["tfinal"], deltaT=p["deltaT"], beta1=p["beta1"], beta2=p["beta2"],
              orth_reg_weight=p["orth_reg_weight"], lora_alpha=p["lora_alpha"],
              target_modules=preset(p["target_modules"]))
    layers = ada.svd_layers(model)
    orth: dict[str, float] = {}

    def extra_loss(m):
        reg = ada.orth_regularizer(layers)                     # R(P, Q), mean over all P and Q
        orth["last"] = float(reg.detach())
        return p["orth_reg_weight"] * reg

    def after_step(step: int) -> dict:
        rec = model.adalora_controller.step(model, step)       # importance EMA + masking, before zero_grad
        return {"budget": rec["budget"], "kept": sum(rec["ranks"].values()), "orth": orth.get("last")}

    steps: list[dict] = []
    cfg = TrainConfig(steps=p["steps"], batch_size=p["batch_size"], lr=p["lr"], eval_every=p["steps"],
                      eval_limit=p["eval_limit"], seed=p["seed"], device=ctx.device)
    res = train(model, tok, get_task(p["task"]), cfg, on_event=_tagged(ctx, "adalora", 0, count, p["steps"], steps),
                should_stop=ctx.should_stop, hooks=Hooks(extra_loss=extra_loss, after_step=after_step))
    names = list(layers)
    history = ada.rank_history(model)
    final = history[-1]["ranks"]
    per_triplet = {n: m.in_features + m.out_features + 1 for n, m in layers.items()}
    updates = {s["step"] for s in schedule(p["steps"], p["init_r"], p["target_r"], len(names), p["tinit"],
                                           p["tfinal"], p["deltaT"]) if s["update"]}
    # frames of the heatmap: warm-up, every budget update, the frozen final stretch. Between two updates the
    # optimizer moves masked λ's off zero again (as in PEFT), so only these steps show the allocation.
    final_step = p["steps"] - p["tfinal"]
    frames = [h for h in history if h["step"] <= p["tinit"] or h["step"] in updates or h["step"] >= final_step]
    at_updates = [h for h in history if h["step"] in updates]
    if ctx.out_dir:
        save_adapter(model, Path(ctx.out_dir) / "adapter")
    return {"trainable_params": res["trainable_params"], "base": res["base"], "final": res["final"],
            "seconds_per_step": median_step_seconds(steps), "seconds": res["seconds"],
            "final_budget_params": sum(final[n] * per_triplet[n] for n in names),
            "modules": names, "history_steps": [h["step"] for h in frames],
            "ranks": [[h["ranks"][n] for n in names] for h in frames],      # (frames, modules)
            "budget": [h["budget"] for h in frames], "kept": [sum(h["ranks"].values()) for h in frames],
            "update_steps": sorted(updates),
            "kept_equals_budget_at_updates": all(sum(h["ranks"].values()) == h["budget"] for h in at_updates),
            "orth": [e.get("orth") for e in steps], "loss": [round(e["loss"], 5) for e in steps],
            "final_ranks": final, "allocation": allocation(final)}


def run_lora(p: dict, ctx: Context, count: int) -> dict:
    model, tok = load_base()
    lora_method.apply(model, r=p["target_r"], lora_alpha=p["lora_alpha"], target_modules=preset(p["target_modules"]))
    steps: list[dict] = []
    cfg = TrainConfig(steps=p["steps"], batch_size=p["batch_size"], lr=p["lr"], eval_every=p["steps"],
                      eval_limit=p["eval_limit"], seed=p["seed"], device=ctx.device)
    res = train(model, tok, get_task(p["task"]), cfg, on_event=_tagged(ctx, f"lora r={p['target_r']}", 1, count,
                                                                       p["steps"], steps),
                should_stop=ctx.should_stop)
    return {"r": p["target_r"], "trainable_params": res["trainable_params"], "base": res["base"],
            "final": res["final"], "seconds_per_step": median_step_seconds(steps), "seconds": res["seconds"],
            "loss": [round(e["loss"], 5) for e in steps]}


def run(p: dict, ctx: Context) -> dict:
    check(p)
    count = 2 if p["compare_lora"] else 1
    out = {"task": p["task"], "chance": get_task(p["task"]).chance, "adalora": run_adalora(p, ctx, count)}
    a = out["adalora"]
    out["n_matrices"] = len(a["modules"])
    out["init_budget"] = p["init_r"] * len(a["modules"])
    out["target_budget"] = p["target_r"] * len(a["modules"])
    out["accuracy"] = {"adalora": a["final"]["eval_accuracy"]}
    if p["compare_lora"]:
        out["lora"] = run_lora(p, ctx, count)
        out["accuracy"]["lora"] = out["lora"]["final"]["eval_accuracy"]
    return out


LAB = Lab("adalora", PARAMS, run, quick={"steps": 80, "tinit": 15, "tfinal": 15, "deltaT": 5, "eval_limit": 64},
          tiny={"task": "facts", "init_r": 4, "target_r": 2, "tinit": 1, "tfinal": 2, "deltaT": 1, "steps": 6,
               "batch_size": 4, "eval_limit": 8, "lr": 1e-2, "target_modules": "q,v"})
