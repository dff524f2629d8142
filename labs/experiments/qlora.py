"""Lab `qlora`: QLoRA vs LoRA on the full-precision base vs full fine-tuning, same task, steps and seed.

    qlora  W (fp32) ──quantize (NF4/FP4/INT4, blocksize, double quant)──► Linear4bit, frozen
           y = x · dequant(W_4bit)ᵀ + s · (x Aᵀ) Bᵀ          gradients reach A, B and x — never W_4bit
    lora   y = x W0ᵀ + s · (x Aᵀ) Bᵀ                          the same adapter on the fp32 base
    full   every parameter trains (AdamW)

For each: accuracy, seconds per step (median, evals excluded), and memory by category measured from the
model's own tensors — frozen weights (incl. 4-bit codes), quantization constants, trainable params — plus
the gradient and optimizer-state bytes `labs.train` measures at the step (and peak CUDA memory on a GPU).
Then the QLoRA adapter is merged three ways (dequantized copy, re-quantized, fp32 base) and each merged
model is compared with the unmerged one; the adapter is saved in PEFT format.
"""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import torch

from labs.experiments import Context, Lab
from labs.methods.inject import preset
from labs.params import Param
from labs.toolkit import memory_breakdown, median_step_seconds
from labs.tasks import TASKS, encode, evaluate, get_task
from labs.train import Cancelled, TrainConfig, train

VARIANTS = {"qlora,lora,full": ("qlora", "lora", "full"), "qlora,lora": ("qlora", "lora")}
TARGETS = ("all-linear", "q,v")                         # labs.methods.inject.TARGET_PRESETS keys
PROBE = 32                    # eval examples whose logits the merge check compares

PARAMS = [
    Param("task", "choice", "facts", choices=tuple(TASKS), help="fine-tuning task"),
    Param("variants", "choice", "qlora,lora,full", choices=tuple(VARIANTS), help="what to train, in turn"),
    Param("quant_type", "choice", "nf4", choices=("nf4", "fp4", "int4"), help="4-bit code of the frozen base"),
    Param("blocksize", "choice", 64, choices=(32, 64, 128, 256, 512, 1024, 2048, 4096), help="weights per absmax"),
    Param("double_quant", "bool", True, help="8-bit block scales (≈ 4.127 bits/weight at blocksize 64)"),
    Param("r", "int", 8, lo=1, hi=128, help="LoRA rank"),
    Param("lora_alpha", "float", 16.0, lo=0.01, hi=1024.0, help="scaling = lora_alpha / r"),
    Param("target_modules", "choice", "all-linear", choices=tuple(TARGETS), help="which linears get LoRA"),
    Param("lr", "float", 5e-3, lo=1e-6, hi=1e-1, log=True, help="peak learning rate of LoRA and QLoRA"),
    Param("full_lr", "float", 1e-3, lo=1e-6, hi=1e-1, log=True, help="peak learning rate of full fine-tuning"),
    Param("steps", "int", 60, lo=2, hi=400, gpu_hi=5000, help="optimizer steps per variant"),
    Param("batch_size", "int", 16, lo=1, hi=64, gpu_hi=512, help="examples per step"),
    Param("eval_every", "int", 30, lo=1, hi=5000, help="steps between evals"),
    Param("eval_limit", "int", 200, lo=16, hi=200, help="eval examples per eval (the task has 200 / 40)"),
    Param("merge_check", "bool", True, help="merge the QLoRA adapter three ways and compare outputs"),
    Param("seed", "int", 0, lo=0, hi=2**31 - 1, help="random seed (same batches for every variant)"),
]


def build(kind: str, base, p: dict):
    from labs.methods import lora, qlora

    model = copy.deepcopy(base)
    torch.manual_seed(p["seed"])                               # same A draw for LoRA and QLoRA
    targets = preset(p["target_modules"])
    if kind == "qlora":
        qlora.apply(model, r=p["r"], lora_alpha=p["lora_alpha"], target_modules=targets,
                    quant_type=p["quant_type"], blocksize=p["blocksize"], double_quant=p["double_quant"])
    elif kind == "lora":
        lora.apply(model, r=p["r"], lora_alpha=p["lora_alpha"], target_modules=targets)
    else:
        for param in model.parameters():
            param.requires_grad_(True)
    return model


@torch.no_grad()
def logits_of(model, batch) -> torch.Tensor:
    model.eval()
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()


def max_diff(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    return ((a - b).abs() * mask[..., None]).max().item()    # padded positions do not count


def merge_report(model, base, p: dict, tok, task) -> dict:
    """The trained QLoRA model merged three ways, each against the unmerged model on the same probe batch."""
    from labs.methods import lora, qlora

    device = next(model.parameters()).device
    probe = encode(tok, task.eval[:PROBE], device)
    ref = logits_of(model, probe)
    limit = min(p["eval_limit"], len(task.eval))
    out = {"unmerged": {**evaluate(model, tok, task, limit=limit, choices=True)}}
    for mode, requantize in (("dequantized", False), ("requantized", True)):
        merged = copy.deepcopy(model)
        info = qlora.merge(merged, requantize=requantize)
        out[mode] = {**info, "max_abs_logit_diff": max_diff(logits_of(merged, probe), ref, probe["attention_mask"]),
                     **evaluate(merged, tok, task, limit=limit, choices=True)}
    # the same A, B added to the ORIGINAL fp32 W0 instead of the dequantized Ŵ it was trained against
    fp = copy.deepcopy(base).to(device)
    lora.apply(fp, r=p["r"], lora_alpha=p["lora_alpha"], target_modules=preset(p["target_modules"]))
    src = lora.lora_layers(model)
    with torch.no_grad():
        for name, m in lora.lora_layers(fp).items():
            m.lora_A.weight.copy_(src[name].lora_A.weight)
            m.lora_B.weight.copy_(src[name].lora_B.weight)
    lora.merge(fp)
    out["fp32_base"] = {"precision": "float32 (original W0)", "max_abs_logit_diff":
                        max_diff(logits_of(fp, probe), ref, probe["attention_mask"]),
                        **evaluate(fp, tok, task, limit=limit, choices=True)}
    return out


def save_adapter(model, path: Path) -> dict:
    """PEFT format: a QLoRA adapter is a plain LORA adapter (peft keeps the 4-bit setting with the base model,
    not in the adapter), so it is written through the LoRA writer; our quantization settings go beside it."""
    from labs.methods.io import LAB_CONFIG, save_lora_peft

    cfg = dict(model.peft_lab_config)
    model.peft_lab_config = {**cfg, "method": "lora"}
    try:
        save_lora_peft(model, path)
    finally:
        model.peft_lab_config = cfg
    (path / LAB_CONFIG).write_text(json.dumps(cfg, indent=2, sort_keys=True, default=str))
    return {"path": str(path), "bytes": sum(f.stat().st_size for f in path.iterdir() if f.is_file()),
            "files": sorted(f.name for f in path.iterdir())}


def run(p: dict, ctx: Context) -> dict:
    from labs.base import load_base
    from labs.device import pick_device
    from labs.methods import qlora

    device = pick_device(ctx.device)
    t0 = time.perf_counter()
    base, tok = load_base()
    task = get_task(p["task"])
    kinds = VARIANTS[p["variants"]]
    cfg = lambda kind: TrainConfig(steps=p["steps"], batch_size=p["batch_size"], eval_every=p["eval_every"],  # noqa: E731
                                   lr=p["full_lr"] if kind == "full" else p["lr"], eval_limit=p["eval_limit"],
                                   seed=p["seed"], device=ctx.device)
    n = len(kinds) + (1 if p["merge_check"] else 0)
    results, trained = {}, {}
    for i, kind in enumerate(kinds):
        if ctx.should_stop():
            raise Cancelled(f"cancelled before {kind}")

        def emit(event: dict, i=i, kind=kind) -> None:
            frac = min(1.0, (i + event.get("step", 0) / p["steps"]) / n)
            event = dict(event, series=kind, progress=frac)
            if event.get("type") == "step":
                spent = time.perf_counter() - t0
                event["eta"] = spent / max(frac, 1e-9) * (1 - frac)
            ctx.emit(event)

        model = build(kind, base, p)
        res = train(model, tok, task, cfg(kind), on_event=emit, should_stop=ctx.should_stop)
        evals = {e["step"] for e in res["evals"]}
        results[kind] = {
            "trainable_params": res["trainable_params"], "total_params": res["total_params"],
            "base": res["base"], "final": res["final"], "seconds": res["train_seconds"],
            "seconds_per_step": median_step_seconds(res["history"], evals),
            "memory": memory_breakdown(model, res["memory"] or {}),
            "peak_cuda_bytes": res.get("peak_cuda_bytes"),
            "loss_curve": [h["loss"] for h in res["history"]],
            "eval_curve": [{k: e[k] for k in ("step", "eval_loss", "eval_accuracy") if k in e} for e in res["evals"]]}
        if kind == "qlora":
            results[kind]["base_bits"] = qlora.base_bits(model)
        trained[kind] = model
    out = {"device": str(device), "task": p["task"], "chance": task.chance, "variants": results}
    q = trained.get("qlora")
    if q is not None and ctx.out_dir:
        out["adapter"] = save_adapter(q, Path(ctx.out_dir) / "adapter")
    if q is not None and p["merge_check"]:
        if ctx.should_stop():
            raise Cancelled("cancelled before the merge check")
        out["merge"] = merge_report(q, base, p, tok, task)
        ctx.emit({"type": "step", "step": p["steps"], "series": "merge", "progress": 1.0, "eta": 0.0})
    out["paging"] = paging_note(device)
    out["seconds"] = time.perf_counter() - t0
    return out


def paging_note(device: torch.device) -> dict:
    """What this device can show about paged optimizers: only a CUDA device has unified memory to page."""
    if device.type != "cuda":
        return {"possible": False, "why": "cpu: optimizer states already live in host RAM; there is no device memory to page out of"}
    free, total = torch.cuda.mem_get_info(device)
    return {"possible": True, "why": "cuda: paged AdamW (bitsandbytes) would place states in unified memory; this lab "
            "never runs short, so no page moves", "free_bytes": free, "total_bytes": total}


LAB = Lab("qlora", PARAMS, run, quick={"steps": 40, "eval_every": 40},
          tiny={"task": "facts", "steps": 3, "batch_size": 4, "eval_every": 3, "eval_limit": 16, "r": 4})


# ---------------------------------------------------------------------------------------------------
# The page's instant picture: one layer's data flow and a whole-model memory bar, from labs.budget
# ---------------------------------------------------------------------------------------------------
def flow_numbers(model: str, layer: str = "q_proj", r: int = 16, blocksize: int = 64, double_quant: bool = True) -> dict:
    """Sizes on the arrows of one QLoRA linear of a real architecture (shapes from labs.budget presets)."""
    from labs.budget.memory import quant_constant_bytes
    from labs.budget.params import linear_shapes
    from labs.budget.presets import get_arch

    shapes = linear_shapes(get_arch(model))
    if layer not in shapes:
        raise ValueError(f"layer = {layer!r} is not allowed: allowed {', '.join(shapes)}")
    out_f, in_f = shapes[layer]
    n = out_f * in_f
    return {"model": model, "layer": layer, "out": out_f, "in": in_f, "r": r, "codes_bytes": n // 2,
            "scale_bytes": quant_constant_bytes(n, blocksize, double_quant), "bf16_tile_bytes": 2 * n,
            "lora_params": r * (in_f + out_f), "lora_bytes_bf16": 2 * r * (in_f + out_f)}


def memory_bars(model: str, r: int = 16, seq: int = 512, batch: int = 1, double_quant: bool = True) -> dict:
    """labs.budget.estimate for a 16-bit base + LoRA and an NF4 base + LoRA (bf16-mixed, AdamW, checkpointing)."""
    from labs.budget import estimate

    out = {}
    for name, method in (("lora_bf16", "lora"), ("qlora_nf4", "qlora")):
        mb = estimate(model, method, rank=r, seq=seq, batch=batch, double_quant=double_quant)["memory_bytes"]
        out[name] = {"frozen weights": mb["weights"], "quant constants": mb["quant_constants"],
                     "adapter grads + optimizer": mb["gradients"] + mb["optimizer"],
                     "activations": mb["activations"], "logits + overhead": mb["other"], "total": mb["total"]}
    return out
