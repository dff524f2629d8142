"""Lab `adapters`: Houlsby bottleneck adapters vs LLaMA-Adapter vs LoRA on one task, and what each costs at
inference.

    Houlsby         h' = h + W_up f(W_down h + b_down) + b_up, after attention and after the MLP of every layer
                    trainable  L·(4·d·m + 2·d + 2·m)  + the layer norms it trains (2·L·d here)
    LLaMA-Adapter   top L_a layers: out = Attn(x) + o_proj(g · softmax(Q K_Pᵀ/√d_h) V_P), g = 0 at init
                    trainable  L_a·K·d  + L_a gates
    LoRA            W0 + (α/r)·B·A on every linear; merged before it is timed: the base's exact compute

Measured: accuracy and curves for each; the step-0 eval against the base model (a closed gate changes
nothing); the LLaMA-Adapter gates after every step (they start at 0 and open); median milliseconds per
generated token (greedy, KV cache) at batch 1 and at a larger batch, vs the base and the merged LoRA.
The adapters sit in series and are nonlinear, so there is nothing to merge: their cost stays.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch

from labs.base import load_base
from labs.device import pick_device
from labs.experiments import Context, Lab
from labs.inference_cost import compare_decode
from labs.methods import get_method, io
from labs.methods import lora as lora_method
from labs.methods.adapters import AdaptedAttention, decoder_layers
from labs.methods.inject import preset
from labs.params import Param, ParamError
from labs.tasks import TASKS, encode, evaluate, get_task
from labs.toolkit import SeriesEmitter
from labs.train import Hooks, TrainConfig, train

SERIES = {"houlsby": "Houlsby", "llama-adapter": "LLaMA-Adapter", "lora": "LoRA"}

LORA_TARGETS = preset("q,v")           # the LoRA paper's choice; merged, any targets cost nothing at inference

PARAMS = [
    Param("task", "choice", "topic", choices=tuple(TASKS), help="which fine-tuning task"),
    Param("houlsby", "bool", True, help="train Houlsby adapters (after attention and after the MLP)"),
    Param("llama_adapter", "bool", True, help="train LLaMA-Adapter (gated prompts in the top layers)"),
    Param("lora", "bool", True, help="train a LoRA reference (merged for the latency test)"),
    Param("bottleneck", "int", 16, lo=1, hi=256, gpu_hi=1024, help="Houlsby bottleneck width m"),
    Param("adapter_layers", "int", 2, lo=1, hi=64, help="LLaMA-Adapter: how many top layers get prompts"),
    Param("adapter_len", "int", 10, lo=1, hi=64, help="LLaMA-Adapter prompt length K"),
    Param("gate_init", "float", 0.0, lo=-1.0, hi=1.0, help="LLaMA-Adapter gate at step 0 (the paper: 0)"),
    Param("lr", "float", 1e-2, lo=1e-5, hi=1e-1, log=True, help="Houlsby learning rate (AdamW, cosine)"),
    Param("llama_lr", "float", 3e-2, lo=1e-5, hi=1e-1, log=True, help="LLaMA-Adapter learning rate"),
    Param("lora_r", "int", 8, lo=1, hi=64, help="LoRA reference rank (q_proj and v_proj, alpha = 2r)"),
    Param("lora_lr", "float", 1e-2, lo=1e-5, hi=1e-1, log=True, help="LoRA reference learning rate"),
    Param("steps", "int", 150, lo=1, hi=400, gpu_hi=5000, help="optimizer steps per method"),
    Param("batch_size", "int", 16, lo=1, hi=64, gpu_hi=512, help="examples per step"),
    Param("eval_every", "int", 50, lo=1, hi=1000, help="steps between evals"),
    Param("latency_batch", "int", 16, lo=2, hi=64, gpu_hi=256, help="the larger batch of the latency test"),
    Param("new_tokens", "int", 16, lo=1, hi=128, help="tokens generated per latency measurement"),
    Param("latency_repeats", "int", 5, lo=1, hi=50, help="generations per method and batch (median taken)"),
    Param("eval_limit", "int", 0, lo=0, hi=100000, help="eval examples per evaluation (0 = the whole eval split)"),
    Param("seed", "int", 0, lo=0, hi=2**31 - 1, help="random seed"),
]


def formula(method: str, config, p: dict, trains_norms: bool = True) -> dict:
    """Trainable parameters by formula, from the model's config."""
    L, d = config.num_hidden_layers, config.hidden_size
    if method == "houlsby":
        m = p["bottleneck"]
        adapters = L * (4 * d * m + 2 * d + 2 * m)
        norms = 2 * L * d if trains_norms else 0       # input_layernorm + post_attention_layernorm (RMSNorm: d each)
        return {"value": adapters + norms, "adapters": adapters, "norms": norms, "approx": 4 * L * d * m,
                "text": f"L·(4dm + 2d + 2m) + 2Ld = {L}·(4·{d}·{m} + 2·{d} + 2·{m}) + 2·{L}·{d}"}
    La, K = p["adapter_layers"], p["adapter_len"]
    return {"value": La * K * d + La, "prompts": La * K * d, "gates": La,
            "text": f"L_a·K·d + L_a = {La}·{K}·{d} + {La}"}


def gates(model) -> list[torch.nn.Parameter]:
    return [m.adaption_gate for m in model.modules() if isinstance(m, AdaptedAttention)]


def build(method: str, base, p: dict):
    model = copy.deepcopy(base)
    if method == "houlsby":
        return get_method("houlsby")(model, bottleneck=p["bottleneck"])
    if method == "llama-adapter":
        model = get_method("llama-adapter")(model, adapter_len=p["adapter_len"], adapter_layers=p["adapter_layers"])
        with torch.no_grad():
            for g in gates(model):
                g.fill_(p["gate_init"])
        return model
    return lora_method.apply(model, r=p["lora_r"], lora_alpha=2 * p["lora_r"], target_modules=LORA_TARGETS)


def run(p: dict, ctx: Context) -> dict:
    chosen = [m for m, key in (("houlsby", "houlsby"), ("llama-adapter", "llama_adapter"), ("lora", "lora"))
              if p[key]]
    if not chosen:
        raise ParamError("houlsby", "houlsby, llama_adapter, lora = false: allowed at least one method switched on")
    task = get_task(p["task"])
    base, tok = load_base()
    n_layers = len(decoder_layers(base))
    if p["llama_adapter"] and p["adapter_layers"] > n_layers:
        raise ParamError("adapter_layers", f"adapter_layers = {p['adapter_layers']} is out of range: "
                                           f"allowed 1..{n_layers} (this model's layer count)")
    base_eval = evaluate(base, tok, task, limit=p["eval_limit"] or None)
    device = pick_device(ctx.device)
    emitter = SeriesEmitter(ctx.emit, len(chosen), share=0.8)
    variants, models, gate_track = {}, {}, []
    for i, method in enumerate(chosen):
        model = build(method, base, p)
        lr = {"houlsby": p["lr"], "llama-adapter": p["llama_lr"], "lora": p["lora_lr"]}[method]
        hooks = None
        if method == "llama-adapter":
            gate_track = [[float(g.detach()) for g in gates(model)]]              # step 0: as initialised
            def after_step(step, model=model):
                values = [float(g.detach()) for g in gates(model)]
                gate_track.append(values)
                return {"gates": values}
            hooks = Hooks(after_step=after_step)
        cfg = TrainConfig(steps=p["steps"], batch_size=p["batch_size"], lr=lr, eval_every=p["eval_every"],
                          seed=p["seed"], device=ctx.device, eval_limit=p["eval_limit"] or None)
        res = train(model, tok, task, cfg, on_event=emitter.part(i, SERIES[method]), should_stop=ctx.should_stop,
                    hooks=hooks)
        model.eval()
        entry = {"series": SERIES[method], "trainable_params": res["trainable_params"], "base": res["base"],
                 "final": res["final"], "evals": res["evals"], "seconds": res["train_seconds"],
                 "seconds_per_step": res["seconds_per_step"], "first_loss": res["history"][0]["loss"],
                 "step0_loss_change": res["base"]["eval_loss"] - base_eval["eval_loss"]}
        if method != "lora":
            entry["formula"] = formula(method, base.config, p)
        else:
            entry["formula"] = {"value": res["trainable_params"],
                                "text": f"Σ r·(in + out) over {len(lora_method.lora_layers(model))} linears"}
        variants[method] = entry
        models[method] = model
        if ctx.out_dir:
            io.save(model, Path(ctx.out_dir) / "adapter" / method)

    emitter.phase("latency")
    base.to(device).eval()
    if "lora" in models:
        models["lora"] = lora_method.merge_and_unload(models["lora"])  # folded into W0: nothing left to compute
    latency = {}
    for batch in (1, p["latency_batch"]):
        ids = encode(tok, task.eval[:1], device)["input_ids"].expand(batch, -1).contiguous()   # (B, T)
        plan = {name: (m, lambda ids=ids: {"input_ids": ids}) for name, m in {"base": base, **models}.items()}
        lat = compare_decode(plan, p["new_tokens"], p["latency_repeats"], ctx.should_stop)
        ref = lat["lora"]["ms_per_token"] if "lora" in lat else None
        for r in lat.values():
            r["overhead_vs_base"] = r["ms_per_token"] / lat["base"]["ms_per_token"] - 1
            r["overhead_vs_lora"] = r["ms_per_token"] / ref - 1 if ref else None
            r.pop("generated", None)
        latency[str(batch)] = lat
    best = max(variants, key=lambda m: variants[m]["final"]["eval_accuracy"])
    return {"task": p["task"], "chance": task.chance, "base": base_eval, "layers": n_layers,
            "hidden": base.config.hidden_size, "final": {**variants[best]["final"], "variant": best},
            "variants": variants, "gates": gate_track, "latency": latency,
            "latency_batches": [1, p["latency_batch"]],
            "seconds": sum(v["seconds"] for v in variants.values())}


LAB = Lab("adapters", PARAMS, run,
          quick={"steps": 60, "eval_every": 20, "eval_limit": 64, "latency_repeats": 3, "new_tokens": 12},
          tiny={"steps": 3, "eval_every": 3, "eval_limit": 16, "batch_size": 4, "bottleneck": 4, "adapter_layers": 2,
               "adapter_len": 3, "lora_r": 2, "latency_batch": 2, "new_tokens": 2, "latency_repeats": 1})
