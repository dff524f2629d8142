"""Lab `dora`: full fine-tuning vs LoRA vs DoRA on one task and rank — accuracy, the ΔM/ΔD analysis, cost.

DoRA (Liu et al. 2024, arXiv:2402.09353) splits every weight row into a magnitude and a direction,

    W = m · V/||V||          m (out,) = row norms      V/||V|| (out, in) = unit rows

and §2.2 measures, for each adapted matrix at each checkpoint t, how far training moved each part:

    ΔM_t = mean_rows |m_t − m_0|             ΔD_t = mean_rows (1 − cos(W_t,row, W_0,row))

(the paper writes columns of a (d, k) matrix used as x W; torch stores (out, in), so its column is our row,
as in PEFT). Figure 2 plots ΔD against ΔM over layers and checkpoints: full fine-tuning and DoRA with a
negative slope, LoRA with a positive one. This lab measures the same three on the bundled model with the
same data order, rank, alpha and targets, and reports the least-squares slope ΔD ~ ΔM per method and per
module type — whatever sign it comes out with. Cost: DoRA's extra parameters (one magnitude per output
feature of each adapted matrix) and the median seconds per optimizer step next to LoRA's.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from labs.base import load_base
from labs.experiments import Context, Lab
from labs.methods import inject, lora as lora_method
from labs.methods.dora import DoraStrategy, decompose, delta_m_delta_d
from labs.methods.inject import layer_index, module_type, preset
from labs.methods.io import save as save_adapter
from labs.params import Param
from labs.toolkit import median_step_seconds, merge_check
from labs.tasks import TASKS, get_task
from labs.train import Hooks, TrainConfig, train

METHODS = ("full-ft", "lora", "dora")
# target_modules choice -> PEFT target_modules value (module names of a Llama decoder layer)
TARGETS = ("all-linear", "q,k,v,o", "q,v", "mlp")        # labs.methods.inject.TARGET_PRESETS keys

PARAMS = [
    Param("task", "choice", "topic", choices=tuple(TASKS), help="which fine-tuning task"),
    Param("r", "int", 8, lo=1, hi=64, gpu_hi=256, help="LoRA rank, shared by LoRA and DoRA"),
    Param("lora_alpha", "float", 16.0, lo=0.5, hi=512.0, help="scaling = lora_alpha / r"),
    Param("target_modules", "choice", "all-linear", choices=tuple(TARGETS), help="which linears get an adapter"),
    Param("lr", "float", 1e-2, lo=1e-6, hi=1e-1, log=True, help="peak learning rate of LoRA and DoRA"),
    Param("ft_lr", "float", 3e-4, lo=1e-6, hi=1e-1, log=True, help="peak learning rate of full fine-tuning"),
    Param("steps", "int", 120, lo=2, hi=400, gpu_hi=5000, help="optimizer steps per method"),
    Param("batch_size", "int", 16, lo=1, hi=64, gpu_hi=512, help="examples per step"),
    Param("checkpoints", "int", 4, lo=2, hi=20, help="checkpoints at which ΔM and ΔD are measured"),
    Param("full_ft", "bool", True, help="also train the full fine-tuning reference"),
    Param("eval_limit", "int", 200, lo=8, hi=2000, help="eval examples per evaluation"),
    Param("seed", "int", 0, lo=0, hi=2**31 - 1, help="random seed (same data order for every method)"),
]


# ------------------------------------------------------------------------------------------------ analysis
def current_decomposition(module) -> tuple[torch.Tensor, torch.Tensor]:
    """(m, direction) of the weight the module computes with now: W (full FT), W0 + sBA (LoRA), DoRA's own."""
    if isinstance(module, lora_method.LoraLinear):
        if module.dora is not None:
            return DoraStrategy.magnitude_direction(module)
        with torch.no_grad():
            return decompose(module.base_weight() + module.delta_weight())
    with torch.no_grad():
        return decompose(module.weight)


def fit_slope(dm: list[float], dd: list[float]) -> dict:
    """Least-squares ΔD = a + slope·ΔM and Pearson r; None where ΔM does not vary (e.g. one point)."""
    x, y = np.asarray(dm, dtype=float), np.asarray(dd, dtype=float)
    if len(x) < 2 or np.ptp(x) <= 0:
        return {"slope": None, "intercept": None, "pearson_r": None, "n": int(len(x))}
    slope, intercept = np.polyfit(x, y, 1)
    r = float(np.corrcoef(x, y)[0, 1]) if np.ptp(y) > 0 else None
    return {"slope": float(slope), "intercept": float(intercept), "pearson_r": r, "n": int(len(x))}


def slopes_by_type(points: list[dict]) -> dict:
    """{method: {module type | "all": fit}} over every (layer, checkpoint) point of that method."""
    out: dict[str, dict] = {}
    for method in dict.fromkeys(p["method"] for p in points):
        mine = [p for p in points if p["method"] == method]
        groups = {"all": mine}
        for p in mine:
            groups.setdefault(p["type"], []).append(p)
        out[method] = {k: fit_slope([p["dm"] for p in v], [p["dd"] for p in v]) for k, v in groups.items()}
    return out


class Tracker:
    """Records (ΔM, ΔD) of every target matrix at the checkpoint steps, against the pretrained W0."""

    def __init__(self, model, names: list[str], steps: int, checkpoints: int, method: str):
        self.model, self.names, self.method = model, names, method
        self.at = sorted({max(1, round(k * steps / checkpoints)) for k in range(1, checkpoints + 1)})
        self.ref = {n: decompose(self._weight0(model.get_submodule(n))) for n in names}
        self.points: list[dict] = []

    @staticmethod
    def _weight0(module) -> torch.Tensor:
        w = module.base_weight() if isinstance(module, lora_method.LoraLinear) else module.weight
        return w.detach().clone()

    def __call__(self, step: int) -> dict | None:
        if step not in self.at:
            return None
        for n in self.names:
            m, d = current_decomposition(self.model.get_submodule(n))
            m0, d0 = self.ref[n]
            dm, dd = delta_m_delta_d(m0, d0, m.to(m0.device), d.to(d0.device))
            self.points.append({"method": self.method, "module": n, "type": module_type(n),
                                "layer": layer_index(n), "step": step, "dm": dm, "dd": dd})
        return {"checkpoint": step}


def random_update(w0: torch.Tensor, r: int, size: float, seed: int) -> torch.Tensor:
    """A rank-r update ΔW = B A (out, in) scaled so that ||ΔW||_F = size · ||W0||_F (the picture's LoRA step)."""
    g = torch.Generator().manual_seed(seed)
    B = torch.randn(w0.shape[0], r, generator=g)                              # (out, r)
    A = torch.randn(r, w0.shape[1], generator=g)                              # (r, in)
    delta = B @ A                                                             # (out, in), rank r
    return delta * (size * torch.linalg.matrix_norm(w0) / torch.linalg.matrix_norm(delta))


def decomposition_picture(w0: torch.Tensor, r: int, size: float, magnitude_change: float, seed: int = 0,
                          cloud: int = 40) -> dict:
    """What one update does to one real weight matrix, per row.

    LoRA:  W = W0 + ΔW                           magnitude and direction both follow ΔW
    DoRA:  W = m · (W0 + ΔW)/||W0 + ΔW||,  m = (1 + magnitude_change) · m0   (same direction, own length)
    The cloud: `cloud` random rank-r updates of random size; DoRA's magnitude change is drawn
    independently of the size, which is what training m separately allows."""
    w0 = w0.detach().float().cpu()
    m0, d0 = decompose(w0)
    w_lora = w0 + random_update(w0, r, size, seed)
    m_lora, d = decompose(w_lora)
    m_dora = (1 + magnitude_change) * m0
    cos = torch.nn.functional.cosine_similarity(d, d0, dim=1)                # (out,)
    g = torch.Generator().manual_seed(seed + 1)
    points = {"lora": [], "dora": []}
    for k in range(cloud):
        s = float(torch.rand((), generator=g)) * 2 * max(size, 1e-3)
        mc = float(torch.rand((), generator=g) * 2 - 1) * 2 * max(size, 1e-3)
        m_k, d_k = decompose(w0 + random_update(w0, r, s, seed + 2 + k))
        points["lora"].append(delta_m_delta_d(m0, d0, m_k, d_k))
        points["dora"].append(delta_m_delta_d(m0, d0, (1 + mc) * m0, d_k))
    return {"m0": m0.tolist(), "m_lora": m_lora.tolist(), "m_dora": m_dora.tolist(), "one_minus_cos": (1 - cos).tolist(),
            "lora": delta_m_delta_d(m0, d0, m_lora, d), "dora": delta_m_delta_d(m0, d0, m_dora, d),
            "cloud": {k: [list(x) for x in v] for k, v in points.items()},
            "cloud_slope": {k: fit_slope([x[0] for x in v], [x[1] for x in v]) for k, v in points.items()}}


# ------------------------------------------------------------------------------------------------ training
def run_one(method: str, p: dict, ctx: Context, index: int, count: int) -> tuple[dict, object]:
    model, tok = load_base()
    task = get_task(p["task"])
    targets = preset(p["target_modules"])
    names = inject.match_targets(model, targets)
    if method == "full-ft":
        for param in model.parameters():
            param.requires_grad_(True)
        lr = p["ft_lr"]
    else:
        lora_method.apply(model, r=p["r"], lora_alpha=p["lora_alpha"], target_modules=targets,
                          use_dora=method == "dora")
        lr = p["lr"]
    tracker = Tracker(model, names, p["steps"], p["checkpoints"], method)
    steps: list[dict] = []

    def on_event(event: dict) -> None:
        done = {"start": 0.0, "end": 1.0}.get(event["type"], event.get("step", 0) / p["steps"])
        event = {**event, "series": method, "progress": (index + done) / count}
        if event["type"] == "step":
            steps.append(event)
        ctx.emit(event)

    cfg = TrainConfig(steps=p["steps"], batch_size=p["batch_size"], lr=lr, eval_every=p["steps"],
                      eval_limit=p["eval_limit"], seed=p["seed"], device=ctx.device)
    res = train(model, tok, task, cfg, on_event=on_event, should_stop=ctx.should_stop,
                hooks=Hooks(after_step=tracker))
    out = {"method": method, "lr": lr, "trainable_params": res["trainable_params"],
           "total_params": res["total_params"], "base": res["base"], "final": res["final"],
           "seconds": res["seconds"], "seconds_per_step": median_step_seconds(steps),
           "loss": [round(e["loss"], 5) for e in steps], "points": tracker.points}
    if method != "full-ft":
        out["merge_max_abs_diff"] = merge_check(model, tok, task, limit=8)
        out["targets"] = len(names)
        out["out_features"] = sum(model.get_submodule(n).out_features for n in names)
    return out, model


def run(p: dict, ctx: Context) -> dict:
    methods = [m for m in METHODS if m != "full-ft" or p["full_ft"]]
    runs: dict[str, dict] = {}
    for i, method in enumerate(methods):
        runs[method], model = run_one(method, p, ctx, i, len(methods))
        if method == "dora" and ctx.out_dir:
            save_adapter(model, Path(ctx.out_dir) / "adapter")
        del model
    points = [pt for r in runs.values() for pt in r.pop("points")]
    lora, dora = runs["lora"], runs["dora"]
    cost = {"lora_params": lora["trainable_params"], "dora_params": dora["trainable_params"],
            "extra_params": dora["trainable_params"] - lora["trainable_params"],
            "expected_extra_params": dora["out_features"],
            "lora_s_per_step": lora["seconds_per_step"], "dora_s_per_step": dora["seconds_per_step"],
            "dora_over_lora_time": dora["seconds_per_step"] / lora["seconds_per_step"]}
    return {"task": p["task"], "chance": get_task(p["task"]).chance, "runs": runs, "points": points,
            "slopes": slopes_by_type(points), "cost": cost,
            "accuracy": {m: r["final"]["eval_accuracy"] for m, r in runs.items()}}


LAB = Lab("dora", PARAMS, run, quick={"steps": 60, "checkpoints": 4, "eval_limit": 64},
          tiny={"task": "facts", "r": 2, "target_modules": "q,v", "steps": 4, "batch_size": 4, "checkpoints": 2,
               "eval_limit": 8, "lr": 1e-2, "ft_lr": 1e-3})
