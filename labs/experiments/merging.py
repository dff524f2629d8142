"""Lab `merging`: two LoRA adapters trained on different tasks, merged into one model — and new chat tokens.

Part 1, merging. Adapter a learns task_a, adapter b learns task_b, each from the same base with the same
rank and data seed. Their task vectors τ = s·BA are then merged every way labs.methods.merging offers and
the merged model W0 + ΔW is scored on BOTH tasks (exact match and choice accuracy), next to the base and the
two single-task adapters as references:

    task_arithmetic  Σ w τ (exact; = peft's "cat")        linear  peft's A/B combination (cross terms)
    svd              Σ w τ cut to rank r (peft's "svd")   ties / dare_linear / dare_ties at `density`
    sweep            TIES and DARE at every density in `densities` (DARE's mask seeded with `seed`)

Interference is measured too: the cosine of τ_a and τ_b and, among the entries both trims keep, the fraction
whose signs disagree (what TIES' sign election resolves; Yadav et al. 2023, §3 and Fig. 3).

Part 2, new tokens. task_a in a chat format with three new special tokens,
"<|user|>{prompt}<|assistant|>{answer}<|end|>", trained three ways: LoRA alone, LoRA + trainable_token_indices
(only the new rows) and LoRA + modules_to_save=["embed_tokens"] (the whole embedding, tied to the head). Measured:
exact match (the answer AND <|end|>), how often <|end|> is the argmax where it is due, how far each new row
moved, and how distinguishable <|user|> and <|assistant|> are (cosine of their rows).
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from labs.base import load_base
from labs.experiments import Context, Lab
from labs.methods import lora as lora_method
from labs.methods import merging, new_tokens
from labs.methods.io import save as save_adapter
from labs.params import Param, ParamError
from labs.tasks import TASKS, Example, Task, encode, evaluate, get_task
from labs.train import TrainConfig, train

CHAT_TOKENS = ("<|user|>", "<|assistant|>", "<|end|>")
TOKEN_VARIANTS = ("lora", "trainable_tokens", "modules_to_save")
MAIN_METHODS = ("task_arithmetic", "linear", "svd", "ties", "dare_linear", "dare_ties")
SWEPT = ("ties", "dare_linear")

PARAMS = [
    Param("task_a", "choice", "topic", choices=tuple(TASKS), help="task of adapter a (and of the new-token part)"),
    Param("task_b", "choice", "facts", choices=tuple(TASKS), help="task of adapter b (must differ from task_a)"),
    Param("r", "int", 8, lo=1, hi=64, gpu_hi=256, help="LoRA rank of both adapters (all-linear)"),
    Param("lora_alpha", "float", 16.0, lo=0.5, hi=512.0, help="scaling = lora_alpha / r"),
    Param("lr", "float", 1e-2, lo=1e-6, hi=1e-1, log=True, help="peak learning rate"),
    Param("steps", "int", 120, lo=2, hi=400, gpu_hi=5000, help="optimizer steps per adapter"),
    Param("batch_size", "int", 16, lo=1, hi=64, gpu_hi=512, help="examples per step"),
    Param("weight_a", "float", 1.0, lo=-2.0, hi=3.0, help="merge weight w_a of adapter a"),
    Param("weight_b", "float", 1.0, lo=-2.0, hi=3.0, help="merge weight w_b of adapter b"),
    Param("density", "float", 0.5, lo=0.01, hi=1.0, help="fraction kept by TIES' trim / DARE's drop (1 − p)"),
    Param("densities", "str", "0.05,0.1,0.2,0.3,0.5,0.7,1.0", help="comma-separated densities for the sweep"),
    Param("majority_sign_method", "choice", "total", choices=merging.SIGN_METHODS, help="TIES sign election"),
    Param("new_tokens", "bool", True, help="also run part 2: new chat tokens, three ways"),
    Param("new_token_steps", "int", 60, lo=2, hi=400, gpu_hi=5000, help="optimizer steps per new-token run"),
    Param("eval_limit", "int", 200, lo=8, hi=2000, help="eval examples per task"),
    Param("seed", "int", 0, lo=0, hi=2**31 - 1, help="data order, init and DARE's drop mask"),
]


def parse_densities(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = []
    if not values or not all(0.0 < v <= 1.0 for v in values):
        raise ParamError("densities", f"densities = {text!r} is not allowed: allowed a comma-separated list of "
                                      f"numbers in (0, 1], e.g. 0.1,0.3,0.5,1.0")
    return sorted(set(values))


class Progress:
    """Maps each stage's own progress (0..1) onto the whole run, weighted by its optimizer steps."""

    def __init__(self, ctx: Context, weights: dict[str, float]):
        self.ctx, self.total = ctx, sum(weights.values())
        self.start = {}
        acc = 0.0
        for k, w in weights.items():
            self.start[k] = (acc / self.total, w / self.total)
            acc += w

    def forward(self, stage: str, steps: int):
        lo, span = self.start[stage]

        def on_event(event: dict) -> None:
            done = {"start": 0.0, "end": 1.0}.get(event["type"], event.get("step", 0) / steps)
            self.ctx.emit({**event, "series": stage, "progress": lo + span * done})
        return on_event

    def tick(self, stage: str, done: float, step: int, **info) -> None:
        """A step event without a loss (curves skip it): the progress bar moves, a cancel lands here."""
        if self.ctx.should_stop():
            from labs.train import Cancelled
            raise Cancelled(f"cancelled during {stage}")
        lo, span = self.start[stage]
        self.ctx.emit({"type": "step", "step": step, "series": stage, "progress": lo + span * done, **info})


# ------------------------------------------------------------------------------------------------ part 1
def train_adapter(task_name: str, p: dict, progress: Progress, ctx: Context) -> tuple[merging.Adapter, dict]:
    model, tok = load_base()
    lora_method.apply(model, r=p["r"], lora_alpha=p["lora_alpha"], target_modules="all-linear")
    cfg = TrainConfig(steps=p["steps"], batch_size=p["batch_size"], lr=p["lr"], eval_every=p["steps"],
                      eval_limit=p["eval_limit"], seed=p["seed"], device=ctx.device)
    res = train(model, tok, get_task(task_name), cfg, on_event=progress.forward(f"adapter:{task_name}", p["steps"]),
                should_stop=ctx.should_stop)
    info = {"final": res["final"], "base": res["base"], "trainable_params": res["trainable_params"],
            "seconds": res["seconds"]}
    return merging.factors_from_model(model.cpu()), info


def interference(tau_a: dict, tau_b: dict, density: float) -> dict:
    """cos(τ_a, τ_b) over all matrices, and among entries both trims (top-density |τ|) keep: the fraction with
    opposite signs; per module type as well."""
    def stats(names):
        dot = na = nb = 0.0
        both = conflict = 0
        for n in names:
            a, b = tau_a[n].flatten(), tau_b[n].flatten()
            dot, na, nb = dot + float(a @ b), na + float(a @ a), nb + float(b @ b)
            kept, opposite = merging.sign_conflicts(a, b, density)
            both, conflict = both + kept, conflict + opposite
        return {"cosine": dot / max((na * nb) ** 0.5, 1e-30), "kept_by_both": both,
                "sign_conflict_fraction": conflict / max(both, 1)}

    names = list(tau_a)
    out = {"all": stats(names)}
    for kind in sorted({n.rsplit(".", 1)[-1] for n in names}):
        out[kind] = stats([n for n in names if n.endswith("." + kind)])
    return out


class MergeBench:
    """One base model; each merge sets W = W0 + ΔW on the adapted linears, scores both tasks, and restores W0."""

    def __init__(self, tasks: list[Task], names: list[str], p: dict, ctx: Context):
        self.model, self.tok = load_base(device=ctx.device)
        self.tasks, self.limit = tasks, p["eval_limit"]
        self.w0 = {n: self.model.get_submodule(n).weight.detach().clone() for n in names}

    @torch.no_grad()
    def score(self, deltas: dict[str, torch.Tensor]) -> dict:
        for n, d in deltas.items():
            w = self.model.get_submodule(n).weight
            w.copy_(self.w0[n] + d.to(w))
        out = {t.name: evaluate(self.model, self.tok, t, limit=self.limit, choices=True) for t in self.tasks}
        for n in deltas:
            self.model.get_submodule(n).weight.copy_(self.w0[n])
        out["sparsity"] = merging.sparsity_report(deltas) if deltas else {"zero_fraction": 0.0, "norm": 0.0}
        return out


def deltas_for(method: str, adapters: list, weights: list[float], p: dict, density: float, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    if method in ("linear", "svd"):
        factors, _ = merging.add_weighted_adapter(adapters, weights, method, svd_rank=p["r"], generator=gen)
        return {n: f.delta() for n, f in factors.items()}
    return merging.merged_deltas(adapters, weights, method, density, p["majority_sign_method"], gen)


def run_merges(p: dict, adapters: list, names: list[str], densities: list[float], progress: Progress,
               ctx: Context) -> dict:
    a, b = p["task_a"], p["task_b"]
    bench = MergeBench([get_task(a), get_task(b)], names, p, ctx)
    weights = [p["weight_a"], p["weight_b"]]
    taus = [{n: f.delta() for n, f in ad.items()} for ad in adapters]
    plan = [("base", None, {}), (f"only:{a}", None, taus[0]), (f"only:{b}", None, taus[1])]
    plan += [(m, p["density"] if m in ("ties", "dare_linear", "dare_ties") else None, None) for m in MAIN_METHODS]
    sweep_plan = [(m, d, None) for m in SWEPT for d in densities]
    rows, sweep, total = [], [], len(plan) + len(sweep_plan)
    for i, (method, density, deltas) in enumerate(plan + sweep_plan):
        t0 = time.perf_counter()
        if deltas is None:
            deltas = deltas_for(method, adapters, weights, p, density or 1.0, p["seed"])
        swept = i >= len(plan)                    # the density sweep after the main table
        (sweep if swept else rows).append({"method": method, "density": density, **bench.score(deltas),
                                            "seconds": time.perf_counter() - t0})
        progress.tick("merge", (i + 1) / total, i + 1, method=f"{method}@{density}" if swept else method)
    single = {a: rows[1][a], b: rows[2][b]}
    for row in rows + sweep:                  # accuracy relative to each task's own adapter (TIES' normalized score)
        row["normalized"] = {t: row[t]["choice_accuracy"] / max(single[t]["choice_accuracy"], 1e-9) for t in (a, b)}
    return {"rows": rows, "sweep": sweep, "interference": interference(taus[0], taus[1], p["density"])}


# ------------------------------------------------------------------------------------------------ part 2
def chat_task(task: Task) -> Task:
    user, assistant, end = CHAT_TOKENS
    wrap = lambda rows: [Example(f"{user}{e.prompt}{assistant}", e.answer + end) for e in rows]  # noqa: E731
    return Task(f"chat-{task.name}", wrap(task.train), wrap(task.eval), [a + end for a in task.answers],
                description=f"{task.name} in a chat template with new tokens")


@torch.no_grad()
def token_accuracy(model, tok, rows: list[Example], token_id: int) -> float:
    """How often the model's argmax is `token_id` at the position where the answer's last token (it) is due."""
    device = next(model.parameters()).device
    batch = encode(tok, rows, device)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits   # (B, T, V)
    last = (batch["labels"] != -100).long().cumsum(1).argmax(1)                                  # (B,) last label
    pred = logits[torch.arange(len(rows)), last - 1].argmax(-1)                                  # (B,)
    return (pred == token_id).float().mean().item()


def run_new_tokens(p: dict, progress: Progress, ctx: Context) -> dict:
    out = {}
    limit = min(p["eval_limit"], 64)
    for variant in TOKEN_VARIANTS:
        model, tok = load_base()
        ids = new_tokens.add_tokens(model, tok, list(CHAT_TOKENS), seed=p["seed"])
        task = chat_task(get_task(p["task_a"]))
        before = new_tokens.new_rows(model, ids)
        lora_method.apply(model, r=p["r"], lora_alpha=p["lora_alpha"], target_modules="all-linear")
        if variant == "trainable_tokens":
            new_tokens.apply_trainable_tokens(model, ids)
        elif variant == "modules_to_save":
            new_tokens.apply_modules_to_save(model, ["embed_tokens"])
        cfg = TrainConfig(steps=p["new_token_steps"], batch_size=p["batch_size"], lr=p["lr"],
                          eval_every=p["new_token_steps"], eval_limit=limit, seed=p["seed"], device=ctx.device)
        res = train(model, tok, task, cfg, should_stop=ctx.should_stop,
                    on_event=progress.forward(f"tokens:{variant}", p["new_token_steps"]))
        after = new_tokens.new_rows(model, ids).cpu()
        user, assistant = after[0], after[1]
        out[variant] = {
            "trainable_params": res["trainable_params"], "final": res["final"], "base": res["base"],
            "end_token_accuracy": token_accuracy(model, tok, task.eval[:limit], ids[2]),
            "row_change": dict(zip(CHAT_TOKENS, (after - before).norm(dim=1).tolist())),
            "user_assistant_cosine": float(torch.nn.functional.cosine_similarity(user, assistant, dim=0)),
            "seconds": res["seconds"]}
        del model
    return {"tokens": list(CHAT_TOKENS), "task": f"chat-{p['task_a']}", "runs": out}


# ------------------------------------------------------------------------------------------------ the lab
def run(p: dict, ctx: Context) -> dict:
    a, b = p["task_a"], p["task_b"]
    if a == b:
        raise ParamError("task_b", f"task_b = {b!r} is not allowed: allowed a task other than task_a ({a!r})")
    densities = parse_densities(p["densities"])
    stages = {f"adapter:{a}": p["steps"], f"adapter:{b}": p["steps"],
              "merge": 0.1 * p["steps"] * (len(MAIN_METHODS) + len(SWEPT) * len(densities)) / 8}
    if p["new_tokens"]:
        stages.update({f"tokens:{v}": p["new_token_steps"] for v in TOKEN_VARIANTS})
    progress = Progress(ctx, stages)
    adapters, single = [], {}
    for name in (a, b):
        factors, single[name] = train_adapter(name, p, progress, ctx)
        adapters.append(factors)
    names = list(adapters[0])
    result = {"task": f"{a} + {b}", "task_a": a, "task_b": b, "chance": {t: get_task(t).chance for t in (a, b)},
              "adapters": single, "targets": len(names), "densities": densities,
              **run_merges(p, adapters, names, densities, progress, ctx)}
    if ctx.out_dir:                           # the exact task-arithmetic merge, as a PEFT-format adapter ("cat")
        factors, r = merging.add_weighted_adapter(adapters, [p["weight_a"], p["weight_b"]], "cat")
        save_adapter(merging.install(load_base()[0], factors, r), Path(ctx.out_dir) / "adapter")
    if p["new_tokens"]:
        result["new_tokens"] = run_new_tokens(p, progress, ctx)
    by = {r["method"]: r for r in result["rows"]}
    result["accuracy"] = {m: {t: by[m][t]["choice_accuracy"] for t in (a, b)} for m in by}
    return result


LAB = Lab("merging", PARAMS, run,
          quick={"steps": 80, "eval_limit": 40, "densities": "0.1,0.3,1.0", "new_token_steps": 30},
          tiny={"task_a": "topic", "task_b": "sentiment", "r": 2, "steps": 3, "batch_size": 4, "eval_limit": 8,
               "densities": "0.5,1.0", "new_token_steps": 2, "lr": 1e-2})
