"""Lab `nf4`: NF4 vs FP4 vs INT4 on every linear layer of the bundled base, measured from real buffers.

    W (fp32) ──quantize_{nf4,fp4,int4}(blocksize, double_quant)──► NF4Tensor ──dequantize──► Ŵ
        per layer:   MSE = mean (W − Ŵ)²,  rel = ‖W − Ŵ‖_F / ‖W‖_F,  worst block MSE,
                     share of blocks whose max-|w| element comes back exactly (it maps to ±1)
        whole model: swap Ŵ in, LM loss / perplexity on the pretraining eval windows (+ a task's answer loss)
        storage:     bits/param = 8 · Σ nbytes(packed, absmax | qabsmax, absmax_scale, absmax_offset) / Σ numel
                     → 4.5 at blocksize 64, ≈ 4.127 with double quantization (QLoRA §3)

Also: a block-size sweep (error vs bits), the double-quantization saving for 7B/13B/70B (parameter counts
from `labs.budget`), a re-quantization round trip, and a bit-exactness check of `peftlab_kernels.nf4` against
bitsandbytes on the same weights (reported as unavailable, not failed, where bitsandbytes is missing).
The picture helpers at the bottom serve the page's instant (no-training) view.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from peftlab_kernels.codebooks import CODEBOOKS, NF4_OFFSET
from peftlab_kernels.nf4 import BLOCKSIZES, dequantize_4bit, quantize_4bit
from labs.experiments import Context, Lab
from labs.params import Param
from labs.quant_probe import (FORMATS, bits_formula, bnb_parity, double_quant_bits, layer_error, quantize_layers,
                              roundtrip, swapped, weight_stats)

GROUPS = {"all": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
          "attention": ("q_proj", "k_proj", "v_proj", "o_proj"), "mlp": ("gate_proj", "up_proj", "down_proj")}
BIG_MODELS = ("llama-2-7b", "llama-2-13b", "llama-2-70b")
SEQ_LEN = 128                    # the pretraining window length (labs.pretrain.PretrainConfig.seq_len)

PARAMS = [
    Param("model", "choice", "base", choices=("base", "minilm"),
          help="bundled base (Llama) or all-MiniLM-L6-v2 (real pretrained BERT; labs.minilm)"),
    Param("blocksize", "choice", 64, choices=BLOCKSIZES, help="weights sharing one absmax scale"),
    Param("double_quant", "bool", True, help="store the block scales in 8 bits (QLoRA's double quantization)"),
    Param("layers", "choice", "all", choices=tuple(GROUPS), help="which linear layers to quantize"),
    Param("eval_windows", "int", 64, lo=4, hi=256, gpu_hi=1024, help="128-token pretraining eval windows"),
    Param("task", "choice", "facts", choices=("none", "sentiment", "facts"), help="task whose answer loss is also measured"),
    Param("bnb_check", "bool", True, help="compare our bytes with bitsandbytes on the same weights"),
]


# ---------------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------------
def linear_modules(model, group: str = "all") -> dict[str, torch.nn.Linear]:
    """Decoder linears whose name ends in one of the group's suffixes (embeddings / lm_head stay fp32)."""
    suffixes = GROUPS[group]
    return {n: m for n, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and n.rsplit(".", 1)[-1] in suffixes}


def pretrain_windows(tok, n: int) -> torch.Tensor:
    """(n, 128) token windows from the held-out last 5% of the pretraining corpus (as labs.pretrain)."""
    from labs import corpus, pretrain

    ids = torch.tensor(tok(corpus.load())["input_ids"], dtype=torch.long)
    _, held = pretrain.split_ids(ids, SEQ_LEN)
    return pretrain.eval_windows(held, SEQ_LEN, n)


def model_quality(model, tok, windows: torch.Tensor, task) -> dict:
    from labs.pretrain import eval_loss
    from labs.tasks import evaluate

    device = next(model.parameters()).device
    loss = eval_loss(model, windows.to(device))
    out = {"lm_loss": loss, "ppl": math.exp(loss)}
    if task is not None:
        ev = evaluate(model, tok, task, choices=True)
        out.update(task_loss=ev["eval_loss"], task_choice_accuracy=ev["choice_accuracy"])
    return out


def big_model_savings(bits_plain: float, bits_dq: float, blocksize: int) -> list[dict]:
    """Double quantization's saving on real architectures: quantized (linear) counts from labs.budget,
    bits/param as measured here, next to labs.budget's own formula for the quantization constants."""
    from labs.budget import estimate
    from labs.budget.params import count_params
    from labs.budget.presets import get_arch

    rows = []
    for name in BIG_MODELS:
        n = count_params(get_arch(name))["linear"]
        formula = [estimate(name, "qlora", nf4_blocksize=blocksize, double_quant=dq)["memory_bytes"]["quant_constants"]
                   for dq in (False, True)]
        rows.append({"model": name, "quantized_params": n, "bf16_bytes": 2 * n,
                     "plain_bytes": n * bits_plain / 8, "dq_bytes": n * bits_dq / 8,
                     "saved_bytes": n * (bits_plain - bits_dq) / 8, "saved_bytes_budget": formula[0] - formula[1]})
    return rows


def sweep(mods: dict, double_quant: bool) -> list[dict]:
    """Error against bits/param over block sizes, for each format (weights only: no model eval)."""
    rows = []
    for fmt in FORMATS:
        for bs in BLOCKSIZES:
            _, s = quantize_layers(mods, fmt, bs, double_quant)
            rows.append({"format": fmt, "blocksize": bs, "bits_per_param": s["bits_per_param"],
                         "mse": s["mse"], "rel_err": s["rel_err"]})
    return rows


# ---------------------------------------------------------------------------------------------------
# The lab
# ---------------------------------------------------------------------------------------------------
def run(p: dict, ctx: Context) -> dict:
    if p["model"] == "minilm":   # same formats and checks on real pretrained weights; quality = embeddings
        return run_minilm(p, ctx)
    from labs.base import load_base
    from labs.device import pick_device
    from labs.tasks import get_task

    device = pick_device(ctx.device)
    stages = 4 + len(FORMATS) + (1 if p["bnb_check"] else 0)
    t0 = time.perf_counter()
    tick = ctx.stage_ticker(stages)

    ctx.emit({"type": "start", "device": str(device), "steps": stages})
    model, tok = load_base(device=device)
    mods = linear_modules(model, p["layers"])
    task = None if p["task"] == "none" else get_task(p["task"])
    windows = pretrain_windows(tok, p["eval_windows"])
    tick("load")
    baseline = model_quality(model, tok, windows, task)
    tick("baseline")
    bs, dq = p["blocksize"], p["double_quant"]
    formats = {}
    for fmt in FORMATS:
        deq, summary = quantize_layers(mods, fmt, bs, dq)
        with swapped(mods, deq):
            summary.update(model_quality(model, tok, windows, task))
        formats[fmt] = summary
        tick(fmt)
    # double quantization on/off, NF4: bits from the buffers and the error change it costs
    _, other = quantize_layers(mods, "nf4", bs, not dq)
    plain, with_dq = (other, formats["nf4"]) if dq else (formats["nf4"], other)
    double = {"bits_plain": plain["bits_per_param"], "bits_dq": with_dq["bits_per_param"],
              "mse_plain": plain["mse"], "mse_dq": with_dq["mse"],
              "bits_formula_plain": bits_formula(bs, False), "bits_formula_dq": bits_formula(bs, True),
              "big_models": big_model_savings(plain["bits_per_param"], with_dq["bits_per_param"], bs)}
    tick("double_quant")
    first = dict(list(mods.items())[:len(GROUPS[p["layers"]])])            # decoder layer 0 of the group
    sweep_rows = sweep({n: m for n, m in first.items()}, dq)
    w0 = next(iter(mods.values())).weight.detach()
    trip = {fmt: {"plain": roundtrip(w0, fmt, bs, False), **({"double_quant": roundtrip(w0, fmt, bs, True)} if dq else {})}
            for fmt in FORMATS}
    tick("sweep")
    bnb = bnb_parity(first, bs, dq) if p["bnb_check"] else {"available": False, "reason": "bnb_check is off"}
    if p["bnb_check"]:
        tick("bitsandbytes")
    model_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return {"model": "base", "device": str(device), "seconds": time.perf_counter() - t0, "blocksize": bs,
            "double_quant": dq, "layers": p["layers"], "n_layers_quantized": len(mods), "quantized_params": sum(m.weight.numel() for m in mods.values()),
            "model_fp32_bytes": model_bytes, "baseline": baseline, "formats": formats, "double": double,
            "sweep": sweep_rows, "sweep_layers": list(first), "roundtrip": trip, "bnb": bnb,
            "task": p["task"], "eval_windows": int(windows.shape[0])}


def run_minilm(p: dict, ctx: Context) -> dict:
    """The same lab on all-MiniLM-L6-v2 (labs.minilm): weights → kurtosis/histograms; NF4/FP4/INT4 per-layer
    error; embeddings and retrieval with each format swapped in; double-quant bits; bitsandbytes parity."""
    from labs import minilm
    from labs.device import pick_device

    device = pick_device(ctx.device)
    stages = 3 + len(FORMATS) + (1 if p.get("bnb_check") else 0)
    t0 = time.perf_counter()
    tick = ctx.stage_ticker(stages)

    ctx.emit({"type": "start", "device": str(device), "steps": stages, "model": "minilm"})
    model, tok = minilm.load_minilm(device=device)
    mods = minilm.linear_modules(model, p["layers"])
    pairs = minilm.load_pairs()
    tick("load")
    stats = [{"name": n, "short": minilm.short_name(n), **weight_stats(m.weight)} for n, m in mods.items()]
    reference = minilm.pair_embeddings(model, tok, pairs)
    baseline = minilm.evaluate_pairs(reference)
    tick("baseline")
    bs, dq = p["blocksize"], p["double_quant"]
    formats = {}
    for fmt in FORMATS:
        deq, summary = quantize_layers(mods, fmt, bs, dq)
        for layer in summary["layers"]:
            layer["short"] = minilm.short_name(layer["name"])
        with swapped(mods, deq):
            summary.update(minilm.evaluate_pairs(minilm.pair_embeddings(model, tok, pairs), reference))
        formats[fmt] = summary
        tick(fmt)
    double = double_quant_bits(mods, bs)
    tick("double_quant")
    if p.get("bnb_check"):
        first = dict(list(mods.items())[:len(minilm.GROUPS[p["layers"]])])     # encoder layer 0 of the group
        bnb = bnb_parity(first, bs, dq)
        tick("bitsandbytes")
    else:
        bnb = {"available": False, "reason": "bnb_check is off"}
    kurt = [s["kurtosis"] for s in stats]
    return {"model": "minilm", "model_name": "sentence-transformers/all-MiniLM-L6-v2", "device": str(device),
            "seconds": time.perf_counter() - t0, "blocksize": bs, "double_quant": dq, "layers": p["layers"],
            "n_layers_quantized": len(mods), "quantized_params": sum(m.weight.numel() for m in mods.values()),
            "total_params": sum(t.numel() for t in model.parameters()),
            "weight_stats": stats, "kurtosis_range": [min(kurt), max(kurt)], "baseline": baseline,
            "formats": formats, "double": double, "bnb": bnb, "n_pairs": len(pairs)}


LAB = Lab("nf4", PARAMS, run, quick={"eval_windows": 32},
          tiny={"layers": "attention", "eval_windows": 4, "task": "none", "bnb_check": True})


# ---------------------------------------------------------------------------------------------------
# The page's instant picture: codebooks, one matrix, no model forward
# ---------------------------------------------------------------------------------------------------
def codebook_table() -> dict:
    """NF4's 16 levels with the N(0,1) probabilities they come from; FP4/INT4 levels sorted ascending."""
    z = torch.special.ndtri(torch.tensor(NF4_OFFSET, dtype=torch.float64)).item()   # Φ⁻¹(δ), the scale
    nf4 = CODEBOOKS["nf4"]().double()
    return {"nf4": nf4.tolist(), "nf4_prob": torch.special.ndtr(nf4 * z).tolist(), "z_delta": z,
            "fp4": CODEBOOKS["fp4"]().sort().values.tolist(), "int4": CODEBOOKS["int4"]().tolist()}


def weight_names(path=None) -> list[str]:
    """Names of the decoder linear weights in the model folder's safetensors (no model is built)."""
    names = [n for n in _tensor_index(path) if n.endswith(".weight") and n.split(".")[-2] in GROUPS["all"]]
    order = {s: i for i, s in enumerate(GROUPS["all"])}
    layer = lambda n: int(next((x for x in n.split(".") if x.isdigit()), -1))  # noqa: E731
    return sorted(names, key=lambda n: (layer(n), order[n.split(".")[-2]]))


def load_weight(name: str, path=None) -> torch.Tensor:
    from safetensors import safe_open

    index = _tensor_index(path)
    if name not in index:
        raise KeyError(f"weight = {name!r} is not in the model: allowed e.g. {', '.join(weight_names(path)[:3])}")
    with safe_open(str(index[name]), framework="pt") as f:
        return f.get_tensor(name).float()


def _tensor_index(path=None) -> dict[str, Path]:
    from safetensors import safe_open

    from labs.base import model_dir

    folder = model_dir(path)
    idx = folder / "model.safetensors.index.json"
    if idx.is_file():
        return {k: folder / v for k, v in json.loads(idx.read_text())["weight_map"].items()}
    with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        return {k: folder / "model.safetensors" for k in f.keys()}


SOURCES = ("weights", "normal", "uniform", "student_t3")


def synthetic(kind: str, shape, seed: int = 0, like: torch.Tensor | None = None) -> torch.Tensor:
    """A sample shaped like `shape`, scaled to the std of `like` (or 0.02): normal, uniform or heavy-tailed."""
    if kind not in SOURCES[1:]:
        raise ValueError(f"source = {kind!r} is not allowed: allowed {', '.join(SOURCES)}")
    g = torch.Generator().manual_seed(seed)
    if kind == "normal":
        x = torch.randn(shape, generator=g)
    elif kind == "uniform":
        x = torch.rand(shape, generator=g) * 2 - 1
    else:  # Student's t with 3 degrees of freedom: z / sqrt(χ²₃ / 3)
        chi2 = torch.randn((3, *shape), generator=g).pow(2).sum(0)
        x = torch.randn(shape, generator=g) / (chi2 / 3).sqrt()
    std = like.float().std().item() if like is not None else 0.02
    return x / x.std() * std


def picture(w: torch.Tensor, blocksize: int, double_quant: bool, block: int = 0, bins: int = 81) -> dict:
    """Per format: code usage (sorted levels), errors, bits/param, and the levels scaled by block `block`'s
    absmax; histograms of w/absmax pooled over blocks and of the raw weights of that block."""
    n_blocks = math.ceil(w.numel() / blocksize)
    if not 0 <= block < n_blocks:
        raise ValueError(f"block = {block} is out of range: allowed 0..{n_blocks - 1}")
    flat = w.float().reshape(-1)
    out = {"n_blocks": n_blocks, "block": block, "formats": {}}
    for fmt in FORMATS:
        q = quantize_4bit(w.float(), fmt, blocksize, double_quant)
        absmax = q.block_absmax()                                                  # (B,)
        codes = torch.stack([q.packed >> 4, q.packed & 0xF], 1).reshape(-1)[:w.numel()].long()
        levels = CODEBOOKS[fmt]()
        order = levels.argsort()
        usage = torch.bincount(codes, minlength=16)[order]                        # by ascending level
        out["formats"][fmt] = {"levels": levels[order].tolist(), "usage": usage.tolist(),
                               "block_levels": (levels[order] * absmax[block]).tolist(),
                               "bits_per_param": q.bits_per_param(),
                               **layer_error(w, dequantize_4bit(q), blocksize)}
    plain = quantize_4bit(w.float(), "nf4", blocksize, False).block_absmax()
    scaled = flat / plain.repeat_interleave(blocksize)[:flat.numel()].clamp(min=1e-38)
    hist = torch.histc(scaled, bins=bins, min=-1.0, max=1.0)
    blk = flat[block * blocksize:(block + 1) * blocksize]
    lim = plain[block].item() or 1.0
    out.update(scaled_hist=hist.tolist(), scaled_edges=torch.linspace(-1, 1, bins + 1).tolist(),
               block_values=blk.tolist(), block_absmax=lim)
    return out
