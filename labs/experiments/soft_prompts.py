"""Lab `soft-prompts`: prompt tuning vs prefix tuning vs P-tuning v2 (MLP reparametrization) on one task,
with a merged LoRA as the reference for what inference costs when nothing is left to compute.

    prompt tuning   [P ; e(x)] → frozen model            trainable  p · d
    prefix tuning   K_l = [P_K^l ; K_l], V_l = [P_V^l ; V_l] in every layer
                                                         trainable  p · L · 2 · d_kv   (d_kv = kv_heads · head_dim)
    P-tuning v2     the same prefixes, produced while training by MLP(E), E (p, d_kv):
                                                         trainable  p·d_kv + d_kv·h + h + h·(L·2·d_kv) + L·2·d_kv
                                                         kept after training: the prefix formula (P only)

Then, measured on the trained variants: greedy decoding with a KV cache (median ms per generated token,
round-robin repeats), the context positions and KV-cache entries each request holds, and why none of
them merges: the share of attention each real token gives the prefix varies token by token (a weight
matrix applies one fixed map to every token), whereas merging LoRA changes no output (max |Δlogits|).
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch

from labs.base import load_base
from labs.experiments import Context, Lab
from labs.device import pick_device
from labs.inference_cost import compare_decode
from labs.methods import get_method, io
from labs.methods import lora as lora_method
from labs.methods.prompts import SOFT_PROMPTS as SOFT, kv_geometry, prefill_inputs
from labs.methods.inject import preset
from labs.params import Param, ParamError
from labs.tasks import TASKS, encode, evaluate, get_task
from labs.toolkit import SeriesEmitter, merge_check
from labs.train import TrainConfig, train

SERIES = {"prompt": "prompt tuning", "prefix": "prefix tuning", "ptuning-v2": "P-tuning v2", "lora": "LoRA"}

LORA_TARGETS = preset("q,v")           # the LoRA paper's choice; merged, any targets cost nothing at inference

PARAMS = [
    Param("task", "choice", "topic", choices=tuple(TASKS), help="which fine-tuning task"),
    Param("prompt", "bool", True, help="train prompt tuning (input embeddings only)"),
    Param("prefix", "bool", True, help="train prefix tuning (K/V in every layer)"),
    Param("ptuning_v2", "bool", True, help="train P-tuning v2 (deep prefixes from an MLP)"),
    Param("lora", "bool", True, help="train a LoRA reference (merged for the latency test)"),
    Param("num_virtual_tokens", "int", 10, lo=1, hi=64, gpu_hi=256, help="prompt length p"),
    Param("init", "choice", "text", choices=("text", "vocab", "random"),
          help="prompt-tuning init: label words, random vocabulary rows, or N(0,1)"),
    Param("encoder_hidden_size", "int", 128, lo=1, hi=1024, gpu_hi=4096, help="P-tuning v2 MLP width h"),
    Param("lr", "float", 3e-2, lo=1e-5, hi=1.0, log=True, help="soft-prompt learning rate (AdamW, cosine)"),
    Param("lora_r", "int", 8, lo=1, hi=64, help="LoRA reference rank (q_proj and v_proj, alpha = 2r)"),
    Param("lora_lr", "float", 1e-2, lo=1e-5, hi=1e-1, log=True, help="LoRA reference learning rate"),
    Param("steps", "int", 150, lo=1, hi=400, gpu_hi=5000, help="optimizer steps per method"),
    Param("batch_size", "int", 16, lo=1, hi=64, gpu_hi=512, help="examples per step"),
    Param("eval_every", "int", 50, lo=1, hi=1000, help="steps between evals"),
    Param("new_tokens", "int", 16, lo=1, hi=128, help="tokens generated per latency measurement"),
    Param("latency_repeats", "int", 5, lo=1, hi=50, help="generations per method (median taken)"),
    Param("eval_limit", "int", 0, lo=0, hi=100000, help="eval examples per evaluation (0 = the whole eval split)"),
    Param("seed", "int", 0, lo=0, hi=2**31 - 1, help="random seed"),
]


def geometry(config) -> dict:
    """The numbers every formula on the page uses, read from the model's config."""
    L, kv_heads, head_dim = kv_geometry(config)
    return {"layers": L, "hidden": config.hidden_size, "heads": config.num_attention_heads,
            "kv_heads": kv_heads, "head_dim": head_dim, "kv_dim": kv_heads * head_dim,
            "vocab": config.vocab_size, "max_positions": getattr(config, "max_position_embeddings", None)}


def formula(method: str, g: dict, p: int, h: int) -> dict:
    """Trainable parameters by formula: while training, and kept for inference (P-tuning v2 drops its MLP)."""
    L, d, kv = g["layers"], g["hidden"], g["kv_dim"]
    prefix = p * L * 2 * kv
    if method == "prompt":
        return {"train": p * d, "kept": p * d, "text": f"p·d = {p}·{d}"}
    if method == "prefix":
        return {"train": prefix, "kept": prefix, "text": f"p·L·2·d_kv = {p}·{L}·2·{kv}",
                "hidden_formula": p * L * 2 * d}
    mlp = p * kv + kv * h + h + h * L * 2 * kv + L * 2 * kv
    return {"train": mlp, "kept": prefix, "hidden_formula": p * L * 2 * d,
            "text": f"p·d_kv + d_kv·h + h + h·L·2·d_kv + L·2·d_kv = {p}·{kv} + {kv}·{h} + {h} + {h}·{L}·2·{kv} + {L}·2·{kv}"}


def build(method: str, base, tok, task, p: dict):
    """Wrap the (shared, frozen) base with one soft-prompt method."""
    if method == "prompt":
        return get_method("prompt")(base, num_virtual_tokens=p["num_virtual_tokens"], init=p["init"],
                                    init_text=task.label_text(), tokenizer=tok, seed=p["seed"])
    if method == "prefix":
        return get_method("prefix")(base, num_virtual_tokens=p["num_virtual_tokens"])
    return get_method("ptuning-v2")(base, num_virtual_tokens=p["num_virtual_tokens"],
                                    encoder_hidden_size=p["encoder_hidden_size"])


@torch.no_grad()
def prefix_attention_share(wrapped, tok, task, limit: int = 32) -> dict:
    """Per layer: the fraction of each real token's attention that lands on the p prefix slots.

    A merged weight would apply one fixed linear map to every token; the prefix's contribution instead is
    softmax-weighted by a share that depends on the token and its context: the spread shows it."""
    base = wrapped.base_model
    batch = encode(tok, task.eval[:limit], next(base.parameters()).device)
    impl = base.config._attn_implementation
    base.set_attn_implementation("eager")          # only eager attention returns its probabilities
    try:
        out = wrapped(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_attentions=True)
    finally:
        base.set_attn_implementation(impl)
    real = batch["attention_mask"].bool()                                               # (B, T)
    n = wrapped.num_virtual_tokens
    layers = []
    for att in out.attentions:                                                          # (B, H, T, n + T)
        share = att[..., :n].sum(-1).mean(1)                                            # (B, T) heads averaged
        vals = share[real]
        layers.append({"mean": float(vals.mean()), "min": float(vals.min()), "max": float(vals.max()),
                       "std": float(vals.std())})
    return {"layers": layers, "tokens": int(real.sum())}


def run(p: dict, ctx: Context) -> dict:
    chosen = [m for m, key in (("prompt", "prompt"), ("prefix", "prefix"), ("ptuning-v2", "ptuning_v2"),
                               ("lora", "lora")) if p[key]]
    if not any(m in SOFT for m in chosen):
        raise ParamError("prompt", "prompt, prefix, ptuning_v2 = false: allowed at least one soft-prompt "
                                   "method switched on")
    task = get_task(p["task"])
    base, tok = load_base()
    g = geometry(base.config)
    base_eval = evaluate(base, tok, task, limit=p["eval_limit"] or None)
    device = pick_device(ctx.device)
    emitter = SeriesEmitter(ctx.emit, len(chosen), share=0.85)
    variants, models = {}, {}
    for i, method in enumerate(chosen):
        if method == "lora":
            model = lora_method.apply(copy.deepcopy(base), r=p["lora_r"], lora_alpha=2 * p["lora_r"],
                                      target_modules=LORA_TARGETS)
            lr = p["lora_lr"]
        else:
            model = build(method, base, tok, task, p)
            lr = p["lr"]
        cfg = TrainConfig(steps=p["steps"], batch_size=p["batch_size"], lr=lr, eval_every=p["eval_every"],
                          seed=p["seed"], device=ctx.device, eval_limit=p["eval_limit"] or None)
        res = train(model, tok, task, cfg, on_event=emitter.part(i, SERIES[method]), should_stop=ctx.should_stop)
        model.eval()
        entry = {"series": SERIES[method], "trainable_params": res["trainable_params"], "base": res["base"],
                 "final": res["final"], "evals": res["evals"], "seconds": res["train_seconds"],
                 "seconds_per_step": res["seconds_per_step"], "first_loss": res["history"][0]["loss"],
                 "last_loss": res["history"][-1]["loss"]}
        if method in SOFT:
            entry["formula"] = formula(method, g, p["num_virtual_tokens"], p["encoder_hidden_size"])
        else:
            entry["formula"] = {"train": res["trainable_params"], "kept": 0,
                                "text": f"Σ r·(in + out) over {len(lora_method.lora_layers(model))} linears"}
        variants[method] = entry
        models[method] = model
        if ctx.out_dir:
            io.save(model, Path(ctx.out_dir) / "adapter" / method)

    # why it cannot merge: prefix attention share per token; LoRA: merging leaves the logits unchanged
    emitter.phase("merge-check")
    deep = next((m for m in ("prefix", "ptuning-v2") if m in models), None)
    merge = {"prefix_method": deep,
             "prefix_share": prefix_attention_share(models[deep], tok, task) if deep else None,
             "lora_max_abs_logit_change": merge_check(models["lora"], tok, task) if "lora" in models else None}

    # inference cost, measured: one request (batch 1), greedy decode with KV cache
    emitter.phase("latency")
    ids = encode(tok, task.eval[:1], device)["input_ids"]                              # (1, T)
    base.to(device)
    plan = {"base": (base, lambda: {"input_ids": ids})}
    for method, model in models.items():
        if method == "lora":
            model = lora_method.merge_and_unload(model)     # plain linears again: the base's exact compute
        plan[method] = prefill_inputs(method, model, ids) if method in SOFT else (model, lambda: {"input_ids": ids})
    lat = compare_decode(plan, p["new_tokens"], p["latency_repeats"], ctx.should_stop)
    ref = lat["lora"]["ms_per_token"] if "lora" in lat else lat["base"]["ms_per_token"]
    elem = next(base.parameters()).element_size()
    for name, r in lat.items():
        r["overhead_vs_base"] = r["ms_per_token"] / lat["base"]["ms_per_token"] - 1
        r["overhead_vs_ref"] = r["ms_per_token"] / ref - 1
        r["extra_positions"] = r["cache_len"] - lat["base"]["cache_len"]
        r["kv_cache_bytes"] = r["cache_len"] * g["layers"] * 2 * g["kv_dim"] * elem
    best = max((m for m in variants if m in SOFT), key=lambda m: variants[m]["final"]["eval_accuracy"])
    return {"task": p["task"], "chance": task.chance, "geometry": g, "base": base_eval,
            "final": {**variants[best]["final"], "variant": best}, "variants": variants,
            "latency": lat, "latency_reference": "lora" if "lora" in lat else "base",
            "prompt_tokens": int(ids.shape[1]), "merge": merge,
            "seconds": sum(v["seconds"] for v in variants.values())}


LAB = Lab("soft-prompts", PARAMS, run,
          quick={"steps": 60, "eval_every": 20, "eval_limit": 64, "latency_repeats": 3, "new_tokens": 12},
          tiny={"steps": 2, "eval_every": 2, "eval_limit": 16, "batch_size": 4, "num_virtual_tokens": 4,
               "encoder_hidden_size": 8, "lora_r": 2, "new_tokens": 2, "latency_repeats": 1})
