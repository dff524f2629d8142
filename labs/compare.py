"""The trade-off table, measured: every method on one task, one step budget, one seed.

    for method in full, lora, qlora, dora, adalora, prompt, prefix, ptuning-v2, houlsby, llama-adapter:
        model  = the method's own setup (the labs' helpers) on a fresh copy of the bundled base
        result = labs.train.train(model, …)                      the ONE loop, same steps / batches / seed
        memory = bytes of the real tensors: weights (+ 4-bit codes and quant constants), gradients and
                 optimizer states at the step, and the activations one training forward saves for backward
                 (torch.autograd.graph.saved_tensors_hooks, each storage once, parameters excluded);
                 on CUDA also the peak allocated bytes
    then every trained model decodes greedily with a KV cache, round-robin against the unmodified base,
    merged where the method can merge (LoRA, DoRA, AdaLoRA, QLoRA → fp32): median ms per generated token.

Learning rates differ per method, as PEFT practice does (soft prompts need ~10-30× full FT's); everything
else is shared. "Lines of code" counts the non-blank lines of our method modules and the kernels they call,
without comments and docstrings: a plain proxy for implementation complexity, nothing more.
The 7B/13B/70B columns come from the calculator (`labs.budget.estimate`) with the same method settings.
"""
from __future__ import annotations

import ast
import copy
import json
import platform
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from labs.methods.registry import COMPARED, SPECS

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "labs" / "data" / "compare"
# the rows, their labels, learning rates, mergeability and source files: labs.methods.registry (one spec a method)
METHODS = COMPARED
LR = {m: SPECS[m].lr for m in METHODS}   # peak lr per method (AdamW, cosine): full FT's 1e-3 reaches 0.9+ on `facts`
SCALE_MODELS = ("llama-2-7b", "llama-2-13b", "llama-2-70b")


@dataclass
class CompareConfig:
    task: str = "facts"
    steps: int = 200
    batch_size: int = 16
    seed: int = 0
    eval_limit: int | None = None
    new_tokens: int = 12
    latency_repeats: int = 5
    methods: tuple = METHODS
    device: str | None = None
    # method settings, shared with the 7B/13B/70B columns
    r: int = 8
    lora_alpha: float = 16.0
    adalora_init_r: int = 12
    num_virtual_tokens: int = 10
    encoder_hidden_size: int = 128
    bottleneck: int = 16
    adapter_layers: int = 2
    adapter_len: int = 10
    lr: dict = field(default_factory=lambda: dict(LR))

    def __post_init__(self):
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"methods = {list(self.methods)!r}: allowed a non-empty subset of {', '.join(METHODS)}")
        if "full" not in self.methods:
            raise ValueError("methods: 'full' is required, every other method is measured against it")
        if self.steps < 4:
            raise ValueError(f"steps = {self.steps}: allowed >= 4 (AdaLoRA's schedule needs a budgeting phase)")


# ------------------------------------------------------------------------------------------------ setup
def method_settings(cfg: CompareConfig, tok=None, task=None) -> dict:
    """Every method's apply arguments, by PEFT's names, filled from one config (each method takes its own:
    `labs.methods.registry.settings_for`)."""
    return {"r": cfg.r, "lora_alpha": cfg.lora_alpha, "target_modules": "all-linear", "quant_type": "nf4",
            "blocksize": 64, "double_quant": True, "total_step": cfg.steps, "init_r": cfg.adalora_init_r,
            "target_r": cfg.r, **adalora_schedule(cfg.steps), "num_virtual_tokens": cfg.num_virtual_tokens,
            "init": "text", "init_text": task.label_text() if task is not None else None, "tokenizer": tok,
            "seed": cfg.seed, "encoder_hidden_size": cfg.encoder_hidden_size, "bottleneck": cfg.bottleneck,
            "adapter_len": cfg.adapter_len, "adapter_layers": cfg.adapter_layers}


def adalora_schedule(steps: int) -> dict:
    """Warm-up a tenth of the steps, prune over the middle, freeze the last fifth, update every 1/20."""
    return {"tinit": steps // 10, "tfinal": steps // 5, "deltaT": max(1, steps // 20)}


def build(method: str, base, tok, task, cfg: CompareConfig):
    """(model, Hooks) for one method on a fresh copy of `base`: the registry's `apply` with the shared settings,
    every method's init drawn after the same seed."""
    from labs.methods import apply_method, hooks_for
    from labs.methods.registry import settings_for
    from labs.train import Hooks

    model = copy.deepcopy(base)
    torch.manual_seed(cfg.seed)
    if method == "full":
        return model.requires_grad_(True), Hooks()
    model = apply_method(model, method, **settings_for(method, method_settings(cfg, tok, task)))
    return model, Hooks(**hooks_for(model))


# ------------------------------------------------------------------------------------------------ measuring
def activation_bytes(model, tok, task, batch_size: int, hooks) -> int:
    """Bytes of the tensors one training forward (and its loss) saves for backward, each storage once;
    parameters and buffers are excluded (they are counted as weights)."""
    from labs.tasks import answer_metrics, encode

    device = next(model.parameters()).device
    owned = {t.untyped_storage().data_ptr() for t in list(model.parameters()) + list(model.buffers())}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        s = t.untyped_storage()
        if s.data_ptr() not in owned:
            seen[s.data_ptr()] = max(seen.get(s.data_ptr(), 0), s.nbytes())
        return t

    batch = encode(tok, task.train[:batch_size], device)
    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        nll, count, _ = answer_metrics(logits, batch["labels"])
        loss = nll.sum() / count.sum()
        if hooks.extra_loss is not None:
            loss = loss + hooks.extra_loss(model)
    del loss, logits, nll
    model.eval()
    return sum(seen.values())


def code_lines(paths) -> int:
    """Non-blank lines that are neither comments nor docstrings, summed over `paths`."""
    total = 0
    for rel in paths:
        src = (ROOT / rel).read_text(encoding="utf-8")
        doc_lines: set[int] = set()
        for node in ast.walk(ast.parse(src)):
            body = getattr(node, "body", None)
            if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                    and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                doc_lines.update(range(body[0].lineno, body[0].end_lineno + 1))
        total += sum(1 for i, line in enumerate(src.splitlines(), 1)
                     if line.strip() and not line.strip().startswith("#") and i not in doc_lines)
    return total


def inference_plan(method: str, model, ids: torch.Tensor):
    """(model, make_prefill) to time: merged into plain linears where the method can merge (the registry's
    `merge`); soft prompts keep their virtual tokens / prefix cache."""
    from labs.methods.prompts import SOFT_PROMPTS, prefill_inputs

    if method in SOFT_PROMPTS:
        return prefill_inputs(method, model, ids)
    if SPECS[method].mergeable:
        model = SPECS[method].function("merge")(model)
    return model, (lambda: {"input_ids": ids})


def train_one(method: str, base, tok, task, cfg: CompareConfig, emit, should_stop) -> tuple[dict, object, object]:
    from labs.toolkit import memory_breakdown, step_seconds
    from labs.train import TrainConfig, train

    model, hooks = build(method, base, tok, task, cfg)
    marks: dict[str, list[float]] = {"wall": [time.perf_counter()], "cpu": [time.process_time()]}

    def on_event(event: dict) -> None:
        if event.get("type") == "step":
            marks["wall"].append(time.perf_counter())
            marks["cpu"].append(time.process_time())
        emit(event)

    tc = TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr[method], eval_every=cfg.steps,
                     eval_limit=cfg.eval_limit, seed=cfg.seed, device=cfg.device)
    res = train(model, tok, task, tc, on_event=on_event, should_stop=should_stop, hooks=hooks)
    mem = memory_breakdown(model, res["memory"] or {})
    weights = mem["weights"] + mem["trainable"]
    act = activation_bytes(model, tok, task, cfg.batch_size, hooks)
    memory = {"weights": weights, "quant_constants": mem["quant_constants"], "gradients": mem["gradients"],
              "optimizer": mem["optimizer"], "activations": act}
    memory["total"] = sum(memory.values())
    spec = SPECS[method]
    row = {"method": method, "label": spec.label["en"], "lr": cfg.lr[method],
           "trainable_params": res["trainable_params"], "total_params": res["total_params"],
           "trainable_percent": 100.0 * res["trainable_params"] / res["total_params"],
           "memory": memory, "peak_cuda_bytes": res.get("peak_cuda_bytes"),
           "seconds_per_step": step_seconds(marks["wall"]),
           "cpu_seconds_per_step": step_seconds(marks["cpu"]),
           "train_seconds": res["train_seconds"], "base_accuracy": res["base"]["eval_accuracy"],
           "accuracy": res["final"]["eval_accuracy"], "choice_accuracy": res["final"].get("choice_accuracy"),
           "eval_loss": res["final"]["eval_loss"], "first_loss": res["history"][0]["loss"],
           "last_loss": res["history"][-1]["loss"], "mergeable": spec.mergeable,
           "code_lines": {"method": code_lines(spec.code), "kernels": code_lines(spec.kernels),
                          "files": list(spec.code + spec.kernels)}}
    if method == "qlora":
        from labs.methods.qlora import base_bits
        row["base_bits"] = base_bits(model)
    return row, model, hooks


def versions() -> dict:
    import transformers

    out = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__}
    try:
        import triton
        out["triton"] = triton.__version__
    except ImportError:
        out["triton"] = None
    return out


def run_compare(cfg: CompareConfig, emit=lambda e: None, should_stop=lambda: False) -> dict:
    """Train every method in `cfg.methods`, then time decoding; returns the JSON-able comparison."""
    from labs.base import load_base
    from labs.device import describe, pick_device
    from labs.inference_cost import compare_decode
    from labs.tasks import encode, get_task
    from labs.toolkit import SeriesEmitter

    t0, c0 = time.perf_counter(), time.process_time()
    device = pick_device(cfg.device)
    task = get_task(cfg.task)
    base, tok = load_base()
    emitter = SeriesEmitter(emit, len(cfg.methods), share=0.9)     # training ≈ 90% of the run, latency the rest
    rows, models = {}, {}
    for i, method in enumerate(cfg.methods):
        tagged = emitter.part(i, SPECS[method].label["en"])
        rows[method], models[method], _ = train_one(method, base, tok, task, cfg, tagged, should_stop)
    emitter.phase("latency")
    base.to(device).eval()
    ids = encode(tok, task.eval[:1], device)["input_ids"]                      # (1, T): one request
    plan = {"base": (base, lambda: {"input_ids": ids})}
    for method, model in models.items():
        plan[method] = inference_plan(method, model, ids)
    lat = compare_decode(plan, cfg.new_tokens, cfg.latency_repeats, should_stop)
    b = lat["base"]
    for method, row in rows.items():
        r = lat[method]
        row["latency"] = {k: r[k] for k in ("ms_per_token", "ms_per_token_q25", "ms_per_token_q75", "cache_len")}
        row["latency"]["overhead_vs_base"] = r["ms_per_token"] / b["ms_per_token"] - 1
    full = rows["full"]
    for row in rows.values():
        row["memory_saving_vs_full"] = 1 - row["memory"]["total"] / full["memory"]["total"]
        row["accuracy_vs_full"] = row["accuracy"] / full["accuracy"] if full["accuracy"] else None
    return {"kind": "peft-lab compare", "task": cfg.task, "chance": task.chance, "device": str(device),
            "device_name": describe(device), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "versions": versions(), "torch_threads": torch.get_num_threads(), "config": asdict(cfg),
            "adalora_schedule": adalora_schedule(cfg.steps), "eval_examples": len(task.eval[:cfg.eval_limit]),
            "base_latency": {k: b[k] for k in ("ms_per_token", "ms_per_token_q25", "ms_per_token_q75", "cache_len")},
            "rows": [rows[m] for m in cfg.methods], "scale": scale_table(cfg),
            "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}


# ------------------------------------------------------------------------------------------------ at scale
def budget_kwargs(method: str, cfg: CompareConfig) -> tuple[str, dict]:
    """(labs.budget formula, keyword arguments) with the same settings as the measured run (the registry's hook)."""
    spec = SPECS[method]
    return spec.budget, spec.budget_kwargs(cfg)


def scale_table(cfg: CompareConfig | None = None, models=SCALE_MODELS) -> dict:
    """{model: {method: trainable %, memory GB by category, saving vs full}} from the calculator
    (bf16-mixed, AdamW, full checkpointing, batch 1, seq 512: its defaults, stated on the page)."""
    from labs.budget import estimate

    cfg = cfg or CompareConfig()
    out = {}
    for model in models:
        per = {}
        for method in cfg.methods:
            name, kw = budget_kwargs(method, cfg)
            est = estimate(model, name, **kw)
            per[method] = {"trainable_percent": est["trainable_percent"], "memory_gb": est["memory_gb"]}
        full = per["full"]["memory_gb"]["total"]
        for v in per.values():
            v["memory_saving_vs_full"] = 1 - v["memory_gb"]["total"] / full
        out[model] = per
    return out


# ------------------------------------------------------------------------------------------------ results on disk
QUICK = {"steps": 150, "latency_repeats": 3}


def save(result: dict, path: Path | None = None) -> Path:
    path = path or DATA / f"{result['task']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def load_saved(task: str = "facts") -> dict | None:
    path = DATA / f"{task}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
