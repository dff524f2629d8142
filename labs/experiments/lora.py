"""Lab `lora`: LoRA on the bundled base, one question per part, every answer a measured number.

    part       variants trained (same task, same batches, same seed)          what it measures
    ────────   ───────────────────────────────────────────────────────────    ──────────────────────────────────
    init       standard (B=0) · A=0,B random · both zero · both random        step-0 max|logit − base|, base-loss
                                                                              jump, ‖∂L/∂A‖ and ‖∂L/∂B‖ at step 1
    rank       r ∈ ranks × {α/r, rsLoRA α/√r}, α fixed                         final eval loss per rank and rule;
                                                                              the rank after which α/r stops improving
    loraplus   plain (η_B = η_A) · LoRA+ (η_B = ratio · η_A)                  loss curves, mean loss over the run
    targets    q,v · q,k,v,o · all-linear                                      trainable params (count, %) vs accuracy
    merge      standard                                                        (every part ends with this check)

Every part ends with the merge check on its standard-init adapter: W0 ← W0 + s·BA, then the largest
|merged − unmerged| logit and the median forward latency of base / unmerged / merged models.

One training loop (`labs.train.train`) for every variant; its events are tagged with ``series`` and the
lab-wide ``progress`` so the page overlays the curves live. Method code: `labs.methods.lora`.
"""
from __future__ import annotations

import copy
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch

from labs.base import load_base
from labs.device import pick_device
from labs.experiments import Context, Lab
from labs.methods import io, lora
from labs.methods.inject import preset, trainable_report
from labs.params import Param
from labs.tasks import TASKS, encode, evaluate, get_task
from labs.train import Cancelled, Hooks, TrainConfig, train

PARTS = ("init", "rank", "loraplus", "targets", "merge", "all")
TARGETS = ("q,v", "q,k,v,o", "all-linear")              # labs.methods.inject.TARGET_PRESETS keys
INIT_SCHEMES = ("standard", "a_zero_b_random", "both_zero", "both_random")
RANK_SETS = ("1/4/16/64", "4/16/64/128", "1/2/4/8/16/32/64/128")
PROBE_EXAMPLES = 32   # fixed eval examples used for logit differences and latency

PARAMS = [
    Param("part", "choice", "init", choices=PARTS, help="which experiment (all = every part in turn)"),
    Param("task", "choice", "facts", choices=tuple(TASKS), help="fine-tuning task"),
    Param("r", "int", 8, lo=1, hi=128, help="LoRA rank (init, loraplus, targets, merge); ≤ 128 = k/v output width"),
    Param("lora_alpha", "float", 16.0, lo=0.01, hi=1024.0, help="α: scaling = α/r (rsLoRA: α/√r)"),
    Param("use_rslora", "bool", False, help="scaling α/√r instead of α/r (all parts but rank, which runs both)"),
    Param("target_modules", "choice", "all-linear", choices=tuple(TARGETS),
          help="where adapters go (targets part compares all three)"),
    Param("ranks", "choice", RANK_SETS[0], choices=RANK_SETS, help="ranks of the rank sweep"),
    Param("loraplus_ratio", "float", 16.0, lo=1.0, hi=64.0, help="LoRA+ λ = lr_B / lr_A (1 = plain LoRA)"),
    Param("lr", "float", 2e-3, lo=1e-6, hi=1e-1, log=True, help="peak learning rate (AdamW, cosine)"),
    Param("steps", "int", 30, lo=2, hi=300, gpu_hi=3000, help="optimizer steps per variant"),
    Param("batch_size", "int", 16, lo=1, hi=64, gpu_hi=512, help="examples per step"),
    Param("lora_dropout", "float", 0.0, lo=0.0, hi=0.9, help="dropout on the adapter input"),
    Param("eval_every", "int", 10, lo=1, hi=3000, help="steps between evals"),
    Param("eval_limit", "int", 0, lo=0, hi=10000, help="eval examples per eval (0 = the whole eval split)"),
    Param("latency_repeats", "int", 15, lo=3, hi=200, help="timed forwards per model (median reported)"),
    Param("seed", "int", 0, lo=0, hi=2**31 - 1, help="random seed (same batches for every variant)"),
]


def plan(p: dict) -> list[dict]:
    """The variants a part trains: [{part, series, init, r, use_rslora, target, ratio}]."""
    one = dict(init="standard", r=p["r"], use_rslora=p["use_rslora"], target=p["target_modules"], ratio=1.0)
    # "all" runs every part; its merge check reuses a standard-init adapter, so no separate merge variant
    parts = ["init", "rank", "loraplus", "targets"] if p["part"] == "all" else [p["part"]]
    out: list[dict] = []
    for part in parts:
        if part == "init":
            out += [dict(one, part=part, series=f"init={s}", init=s) for s in INIT_SCHEMES]
        elif part == "rank":
            out += [dict(one, part=part, series=f"r={r} {'α/√r' if rs else 'α/r'}", r=r, use_rslora=rs)
                    for r in map(int, p["ranks"].split("/")) for rs in (False, True)]
        elif part == "loraplus":
            out += [dict(one, part=part, series="plain"),
                    dict(one, part=part, series=f"LoRA+ λ={p['loraplus_ratio']:g}", ratio=p["loraplus_ratio"])]
        elif part == "targets":
            out += [dict(one, part=part, series=f"targets={t}", target=t) for t in TARGETS]
        elif part == "merge":
            out += [dict(one, part=part, series="merge")]
    return out


@torch.no_grad()
def logits_of(model, batch: dict) -> torch.Tensor:
    was = model.training
    model.eval()
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()  # (B, T, V)
    model.train(was)
    return out


def max_diff(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    """Largest |a − b| over the real (non-pad) positions of (B, T, V) logits."""
    return float(((a - b).abs() * mask[..., None]).amax())


def lora_params(model, which: str) -> list[torch.Tensor]:
    return [m.lora_A.weight if which == "A" else m.lora_B.weight for m in lora.lora_layers(model).values()]


def global_norm(tensors) -> float:
    return math.sqrt(sum(float(t.float().pow(2).sum()) for t in tensors if t is not None))


class Runner:
    """Trains the planned variants one after another on copies of one loaded base model."""

    def __init__(self, p: dict, ctx: Context, base, tok, n_variants: int):
        self.p, self.ctx, self.base, self.tok = p, ctx, base, tok
        self.device = pick_device(ctx.device)
        self.task = get_task(p["task"])
        self.base.to(self.device)
        self.probe = encode(tok, self.task.eval[:PROBE_EXAMPLES], self.device)
        self.base_logits = logits_of(base, self.probe)
        self.n, self.done, self.progress, self.t0 = n_variants, 0, 0.0, time.perf_counter()

    def emitter(self, series: str):
        def emit(event: dict) -> None:
            event = dict(event, series=series)
            if "step" in event:
                self.progress = min(1.0, (self.done + event["step"] / self.p["steps"]) / self.n)
            frac = event["progress"] = self.progress    # start/end events keep the last value
            if event.get("type") == "step":   # ETA for the whole lab, not just this variant
                spent = time.perf_counter() - self.t0
                event["eta"] = spent / max(frac, 1e-9) * (1 - frac)
            self.ctx.emit(event)
        return emit

    def variant(self, v: dict) -> tuple[dict, torch.nn.Module]:
        if self.ctx.should_stop():
            raise Cancelled(f"cancelled before {v['series']}")
        p = self.p
        model = copy.deepcopy(self.base)
        torch.manual_seed(p["seed"])                       # same A draw for every variant with that shape
        lora.apply(model, r=v["r"], lora_alpha=p["lora_alpha"], target_modules=preset(v["target"]),
                   lora_dropout=p["lora_dropout"], use_rslora=v["use_rslora"], init=v["init"])
        step0_diff = max_diff(logits_of(model, self.probe), self.base_logits, self.probe["attention_mask"])
        start = {k: [t.detach().clone() for t in lora_params(model, k)] for k in "AB"}
        grads: dict[str, float] = {}

        def after_backward(step: int) -> None:             # gradients of step 1, before clipping
            if step == 1:
                grads.update(grad_A=global_norm(t.grad for t in lora_params(model, "A")),
                             grad_B=global_norm(t.grad for t in lora_params(model, "B")))

        groups = (lora.loraplus_param_groups(model, p["lr"], v["ratio"]) if v["ratio"] != 1.0 else None)
        cfg = TrainConfig(steps=p["steps"], batch_size=p["batch_size"], lr=p["lr"], eval_every=p["eval_every"],
                          seed=p["seed"], device=self.ctx.device, eval_limit=p["eval_limit"] or None)
        res = train(model, self.tok, self.task, cfg, param_groups=groups, on_event=self.emitter(v["series"]),
                    should_stop=self.ctx.should_stop, hooks=Hooks(after_backward=after_backward))
        self.done += 1
        moved = {k: max(float((a.detach() - b).abs().max()) for a, b in zip(lora_params(model, k), start[k])) for k in "AB"}
        losses = [h["loss"] for h in res["history"]]
        rep = trainable_report(model)
        summary = {
            **{k: v[k] for k in ("part", "series", "init", "r", "use_rslora", "target", "ratio")},
            "scaling": next(iter(lora.lora_layers(model).values())).scaling,
            "lora_layers": len(lora.lora_layers(model)),
            "trainable_params": rep["trainable"], "trainable_percent": rep["percent"],
            "step0_logit_diff": step0_diff,
            "step0_eval_loss": res["base"]["eval_loss"], "step0_eval_accuracy": res["base"]["eval_accuracy"],
            "final_eval_loss": res["final"]["eval_loss"], "final_eval_accuracy": res["final"]["eval_accuracy"],
            "final_choice_accuracy": res["final"].get("choice_accuracy"),   # rank the task's answers; vs chance
            "eval_losses": [e["eval_loss"] for e in res["evals"]],
            "first_loss": losses[0], "final_loss": losses[-1], "mean_loss": sum(losses) / len(losses),
            "loss_curve": [round(x, 5) for x in losses],
            "grad_A_step1": grads.get("grad_A"), "grad_B_step1": grads.get("grad_B"),
            "max_change_A": moved["A"], "max_change_B": moved["B"],
            "seconds_per_step": res["seconds_per_step"], "tokens_per_s": res["tokens_per_s"],
            "device": res["device"],
        }
        return summary, model


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


@torch.no_grad()
def merge_check(model, base, probe: dict, repeats: int, device: torch.device) -> dict:
    """Merged vs unmerged logits, and the median latency of base / unmerged / merged forwards.

    Merged = `merge_and_unload`: W0 + s·BA folded in and the wrappers removed, i.e. the base architecture."""
    model.eval()
    unmerged_logits = logits_of(model, probe)
    merged = lora.merge_and_unload(copy.deepcopy(model))
    merged_logits = logits_of(merged, probe)
    mask = probe["attention_mask"]
    base_logits = logits_of(base, probe)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    runs = {"base": base, "unmerged": model, "merged": merged}

    def forward(m):
        def go():
            m(input_ids=probe["input_ids"], attention_mask=probe["attention_mask"])
            sync()
        return go

    for m in runs.values():       # warm-up
        forward(m)()
    per_round: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(repeats):      # interleaved, so load on a shared machine hits all three alike
        for name, m in runs.items():
            per_round[name].append(_median_ms(forward(m), 1))
    latency = {name: statistics.median(v) for name, v in per_round.items()}
    return {"max_abs_diff_merged_vs_unmerged": max_diff(merged_logits, unmerged_logits, mask),
            "max_abs_diff_unmerged_vs_base": max_diff(unmerged_logits, base_logits, mask),
            "latency_ms": latency, "unmerged_overhead": latency["unmerged"] / latency["merged"] - 1,
            "latency_repeats": repeats, "batch_shape": list(probe["input_ids"].shape)}


def findings(variants: list[dict]) -> dict:
    """The numbers each part is about, computed from the variants' summaries."""
    out: dict = {}
    by = lambda part: [v for v in variants if v["part"] == part]  # noqa: E731
    if by("init"):
        keys = ("step0_logit_diff", "step0_eval_loss", "final_eval_loss", "first_loss", "final_loss",
                "grad_A_step1", "grad_B_step1", "max_change_A", "max_change_B")
        out["init"] = {v["init"]: {**{k: v[k] for k in keys},   # range 0.0 = the eval loss never moved
                                   "eval_loss_range": max(v["eval_losses"]) - min(v["eval_losses"])}
                       for v in by("init")}
    if by("rank"):
        rules = {}
        for rs, rule in ((False, "alpha/r"), (True, "alpha/sqrt(r)")):
            rows = sorted((v for v in by("rank") if v["use_rslora"] == rs), key=lambda v: v["r"])
            curve = [(v["r"], v["final_eval_loss"]) for v in rows]
            best = min(curve, key=lambda rl: rl[1])
            rules[rule] = {"ranks": [r for r, _ in curve], "final_eval_loss": [loss for _, loss in curve],
                           "scaling": [v["scaling"] for v in rows], "best_rank": best[0], "best_loss": best[1]}
        top = max(rules["alpha/r"]["ranks"])
        out["rank"] = {**rules, "stall_rank_alpha_r": rules["alpha/r"]["best_rank"], "largest_rank": top,
                       "gap_at_largest_rank": rules["alpha/r"]["final_eval_loss"][-1]
                       - rules["alpha/sqrt(r)"]["final_eval_loss"][-1]}
    if by("loraplus"):
        out["loraplus"] = {v["series"]: {k: v[k] for k in ("ratio", "mean_loss", "final_loss", "final_eval_loss",
                                                          "final_eval_accuracy")} for v in by("loraplus")}
    if by("targets"):
        out["targets"] = {v["target"]: {k: v[k] for k in ("lora_layers", "trainable_params", "trainable_percent",
                                                         "final_eval_loss", "final_eval_accuracy",
                                                         "final_choice_accuracy", "seconds_per_step")}
                          for v in by("targets")}
    return out


def adapter_bytes(model, out_dir: str | None) -> tuple[int, str | None]:
    """Save the adapter in PEFT format (to the run folder when there is one) and measure it on disk."""
    if out_dir:
        folder = Path(out_dir) / "adapter"
        io.save_lora_peft(model, folder)
        return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()), str(folder)
    with tempfile.TemporaryDirectory() as tmp:
        io.save_lora_peft(model, Path(tmp))
        return sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file()), None


def run(p: dict, ctx: Context) -> dict:
    t0 = time.perf_counter()
    base, tok = load_base()
    variants = plan(p)
    runner = Runner(p, ctx, base, tok, len(variants) + 1)   # +1: the merge check's share of progress
    base_eval = evaluate(base, tok, runner.task, limit=p["eval_limit"] or None)
    summaries, keep, keep_layers = [], None, -1
    for v in variants:
        summary, model = runner.variant(v)
        summaries.append(summary)
        if v["init"] == "standard" and summary["lora_layers"] > keep_layers:   # merge the widest standard one
            keep, keep_layers, keep_summary = model, summary["lora_layers"], summary
        else:
            del model
    merge = merge_check(keep, base, runner.probe, p["latency_repeats"], runner.device)
    merge["series"] = keep_summary["series"]
    merge["adapter_bytes"], merge["adapter_dir"] = adapter_bytes(keep, ctx.out_dir)
    ctx.emit({"type": "merge", "progress": 1.0, **{k: v for k, v in merge.items() if k != "latency_ms"},
              **{f"latency_{k}_ms": x for k, x in merge["latency_ms"].items()}})
    return {"part": p["part"], "task": p["task"], "chance": runner.task.chance, "device": str(runner.device),
            "base": base_eval, "final": {"eval_loss": keep_summary["final_eval_loss"],
                                         "eval_accuracy": keep_summary["final_eval_accuracy"]},
            "variants": summaries, "findings": findings(summaries), "merge": merge,
            "seconds": time.perf_counter() - t0}


# ── the instant picture (no training): pure functions the page draws ──────────────────────────────────────


def weight_matrices(model) -> dict[str, torch.Tensor]:
    """Every linear weight inside the decoder layers, by its short name: {"layers.0.q_proj": (out, in)}."""
    return {n.removeprefix("model.").replace("self_attn.", "").replace("mlp.", "").removesuffix(".weight"):
            w.detach().float().cpu() for n, w in model.named_parameters()
            if w.ndim == 2 and ".layers." in f".{n}" and "norm" not in n}


def lowrank_update(d: int, k: int, r: int, lora_alpha: float, use_rslora: bool, b_zero: bool,
                   seed: int = 0) -> dict:
    """ΔW = s·BA for random A (r, k) and B (d, r) (or B = 0): its singular values and measured rank."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(r, k, generator=g) / math.sqrt(k)                                  # (r, k)
    B = torch.zeros(d, r) if b_zero else torch.randn(d, r, generator=g) / math.sqrt(r)  # (d, r)
    scaling = lora_alpha / (math.sqrt(r) if use_rslora else r)
    delta = scaling * B @ A                                                             # (d, k)
    sv = torch.linalg.svdvals(delta)                                                    # (min(d, k),)
    return {"delta": delta, "singular_values": sv, "rank": int(torch.linalg.matrix_rank(delta)),
            "scaling": scaling, "lora_params": r * (d + k), "full_params": d * k}


def rank_r_error(sv: torch.Tensor) -> torch.Tensor:
    """Eckart–Young: ‖W − W_r‖_F / ‖W‖_F for r = 0..n from the singular values (descending)."""
    energy = sv.double().pow(2)
    tail = energy.flip(0).cumsum(0).flip(0)                                             # Σ_{i≥r} σ_i²
    return torch.cat([tail, tail.new_zeros(1)]).div(energy.sum()).sqrt().float()        # (n + 1,)


def spectrum(W: torch.Tensor, seed: int = 0) -> dict:
    """Singular values of a real weight and of a Gaussian matrix of the same shape and std,
    each normalised by its largest, and the relative error of their best rank-r approximations."""
    g = torch.Generator().manual_seed(seed)
    gauss = torch.randn(W.shape, generator=g) * W.std()
    sv_w, sv_g = torch.linalg.svdvals(W.float()), torch.linalg.svdvals(gauss)
    return {"sv_weight": sv_w / sv_w[0], "sv_gauss": sv_g / sv_g[0],
            "err_weight": rank_r_error(sv_w), "err_gauss": rank_r_error(sv_g)}


LAB = Lab("lora", PARAMS, run,
          quick={"part": "init", "steps": 15, "batch_size": 8, "eval_every": 5, "eval_limit": 20, "latency_repeats": 7},
          tiny={"part": "init", "task": "facts", "r": 4, "steps": 3, "batch_size": 4, "eval_every": 3,
               "latency_repeats": 3, "lr": 1e-2, "eval_limit": 4})
