"""Lab `serving`: one base, K LoRA adapters, one request stream, three serving strategies measured.

    part        what runs                                                  what it reports
    ─────────   ────────────────────────────────────────────────────────   ──────────────────────────────────
    main        merge_swap · per_group · batched on the chosen settings    max |logit − per-request reference|,
                                                                           tokens/s, latency p50/p95, adapter
                                                                           loads and cache hit rate, memory
    sweep       the three strategies at several K, then several batch      tokens/s and p95 latency against K
                sizes (same stream length)                                 and against batch size

Adapters are random with B ≠ 0 (each one really changes the logits: `adapter_effect` is the largest
|adapter − base| logit), ranks r or r, r/2, r/4 zero-padded (mixed ranks). Simulator: `labs.serving`;
kernels: `peftlab_kernels.multi_lora` (batched), `peftlab_kernels.lora` (per group). No training here.
"""
from __future__ import annotations

import copy

import torch

from labs.base import load_base
from labs.experiments import Context, Lab
from labs.methods.inject import preset
from labs.params import Param
from labs.serving import STRATEGIES, build_server, make_stream, make_tokens, reference, serve

TARGETS = ("q,v", "q,k,v,o", "all-linear")              # labs.methods.inject.TARGET_PRESETS keys
SWEEP_K = (1, 4, 16, 64)
SWEEP_BATCH = (1, 4, 16)

PARAMS = [
    Param("adapters", "int", 16, lo=1, hi=64, gpu_hi=1024, help="K adapters served by one base"),
    Param("r", "int", 8, lo=1, hi=64, help="LoRA rank (r_max when ranks are mixed)"),
    Param("mixed_ranks", "bool", False, help="ranks r, r/2, r/4 in turn, zero-padded to r in the stacked kernel"),
    Param("target_modules", "choice", "q,v", choices=tuple(TARGETS), help="linears that carry adapters"),
    Param("batch_size", "int", 8, lo=1, hi=64, gpu_hi=512, help="requests run together"),
    Param("traffic", "choice", "uniform", choices=("uniform", "skewed"),
          help="adapter choice per request: uniform, or skewed (Zipf: a few hot adapters)"),
    Param("cache_slots", "int", 16, lo=1, hi=64, gpu_hi=1024,
          help="adapters resident at once for the batched strategy (vLLM max_loras)"),
    Param("requests", "int", 32, lo=1, hi=512, help="requests in the stream"),
    Param("prompt_len", "int", 16, lo=2, hi=256, help="prompt tokens per request (prefill)"),
    Param("new_tokens", "int", 8, lo=1, hi=128, help="decode steps per request"),
    Param("sweep", "bool", True, help="also sweep K and batch size for the charts"),
    Param("threads", "int", 1, lo=0, hi=64, help="CPU threads for torch (0 = torch's default)"),
    Param("seed", "int", 0, lo=0, hi=2**31 - 1, help="random seed"),
]


def _fresh(base, p: dict, K: int, device):
    model = copy.deepcopy(base)
    srv = build_server(model, K, p["r"], preset(p["target_modules"]), slots=min(p["cache_slots"], K),
                       mixed_ranks=p["mixed_ranks"], seed=p["seed"])
    model.to(device)
    return srv


def _summary(out: dict, ref: torch.Tensor | None) -> dict:
    s = {k: out[k] for k in ("seconds", "p50_s", "p95_s", "tokens_per_s", "decode_tokens_per_s",
                             "adapter_loads", "cache_hits")}
    fetches = out["adapter_loads"] + out["cache_hits"]
    s["hit_rate"] = out["cache_hits"] / fetches if fetches else None
    if ref is not None:
        s["max_abs_diff"] = float((out["logits"] - ref).abs().max())
        s["argmax_agree"] = float((out["logits"].argmax(-1) == ref.argmax(-1)).float().mean())
    return s


def _point(base, p, K, batch, device, tokens, ctx, emit) -> dict:
    srv = _fresh(base, p, K, device)
    adapters = make_stream(tokens.shape[0], K, p["traffic"], seed=p["seed"])
    row = {"K": K, "batch_size": batch, "distinct_per_batch": _distinct(adapters, batch)}
    for strat in STRATEGIES:
        out = serve(srv, strat, tokens, adapters, p["prompt_len"], batch, ctx.should_stop)
        row[strat] = {"tokens_per_s": out["tokens_per_s"], "p95_s": out["p95_s"], "p50_s": out["p50_s"]}
        emit(f"K={K} b={batch} {strat}")
    return row


def _distinct(adapters: list[int], batch: int) -> float:
    chunks = [adapters[i: i + batch] for i in range(0, len(adapters), batch)]
    return sum(len(set(c)) for c in chunks) / len(chunks)


def run(p: dict, ctx: Context) -> dict:
    from labs.device import pick_device

    device = pick_device(ctx.device)
    old_threads = torch.get_num_threads()
    if device.type == "cpu" and p["threads"] > 0:
        torch.set_num_threads(p["threads"])     # a shared CPU: one thread avoids sync stalls that swamp timings
    try:
        return _run(p, ctx, device)
    finally:
        torch.set_num_threads(old_threads)


def _run(p: dict, ctx: Context, device) -> dict:
    base, tok = load_base()
    K, n = p["adapters"], p["requests"]
    ks = [k for k in SWEEP_K if k < K] + [K] if p["sweep"] else []
    bs = [b for b in SWEEP_BATCH if b != p["batch_size"] and b <= n] if p["sweep"] else []
    total = 1 + len(STRATEGIES) * (1 + len(ks) + len(bs))
    done = [0]

    def emit(label: str) -> None:
        done[0] += 1
        ctx.emit({"type": "step", "step": done[0], "progress": done[0] / total, "series": label})

    ctx.emit({"type": "start", "steps": total})
    tokens = make_tokens(tok, n, p["prompt_len"] + p["new_tokens"], seed=p["seed"]).to(device)
    srv = _fresh(base, p, K, device)
    adapters = make_stream(n, K, p["traffic"], seed=p["seed"])
    ref = reference(srv, tokens, adapters, p["prompt_len"])
    srv.route.mode = "base"
    from labs.serving import generate

    with torch.no_grad():
        base_logits = generate(srv, tokens, p["prompt_len"])
    emit("reference")
    strategies = {}
    for strat in STRATEGIES:
        strategies[strat] = _summary(serve(srv, strat, tokens, adapters, p["prompt_len"], p["batch_size"],
                                           ctx.should_stop), ref)
        emit(strat)
    sweep_k = [_point(base, p, k, p["batch_size"], device, tokens, ctx, emit) for k in ks]
    sweep_b = [_point(base, p, K, b, device, tokens, ctx, emit) for b in bs]
    if p["sweep"]:
        main = {"K": K, "batch_size": p["batch_size"], "distinct_per_batch": _distinct(adapters, p["batch_size"]),
                **{s: {k: strategies[s][k] for k in ("tokens_per_s", "p95_s", "p50_s")} for s in STRATEGIES}}
        sweep_b = sorted(sweep_b + [main], key=lambda r: r["batch_size"])
    ctx.emit({"type": "end"})
    memory = {"base_bytes": srv.base_bytes, "adapter_bytes": srv.adapter_bytes,
              "stacked_adapter_bytes": srv.padded_adapter_bytes, "slot_bytes": srv.slot_bytes,
              "merged_copies_bytes": K * srv.base_bytes,
              "shared_bytes": srv.base_bytes + srv.padded_adapter_bytes + srv.slot_bytes,
              "rank_padding_waste": 1 - srv.adapter_bytes / srv.padded_adapter_bytes}
    return {"device": device.type, "adapters": K, "ranks": srv.ranks, "targets": list(srv.layers),
            "distinct_per_batch": _distinct(adapters, p["batch_size"]),
            "adapter_effect": float((ref - base_logits).abs().max()),
            "strategies": strategies, "memory": memory, "sweep_k": sweep_k, "sweep_batch": sweep_b,
            "max_abs_diff": max(s["max_abs_diff"] for s in strategies.values())}


LAB = Lab("serving", PARAMS, run, quick={"requests": 12, "prompt_len": 12, "new_tokens": 4, "batch_size": 6},
          tiny={"adapters": 4, "r": 2, "batch_size": 2, "requests": 4, "prompt_len": 4, "new_tokens": 2,
               "cache_slots": 2, "sweep": True, "target_modules": "q,v"})


# ---------------------------------------------------------------------------------------------
# The page's instant picture: formulas from model shapes and a cache simulation, no model run
# ---------------------------------------------------------------------------------------------
LLAMA_7B = {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
            "num_key_value_heads": 32, "vocab_size": 32000, "tie_word_embeddings": False}
BYTES = {"fp32": 4, "bf16": 2}


def model_shapes(preset: str) -> dict:
    """Llama config fields of the bundled model (its config.json, no weights loaded) or Llama-2-7B."""
    if preset == "llama-7b":
        return dict(LLAMA_7B)
    if preset != "bundled":
        raise ValueError(f"preset={preset!r}: allowed bundled, llama-7b")
    import json

    from labs.base import model_dir

    return json.loads((model_dir() / "config.json").read_text())


def linear_shapes(cfg: dict) -> dict[str, tuple[int, int]]:
    """(in, out) of each decoder linear type of a Llama layer."""
    h, i = cfg["hidden_size"], cfg["intermediate_size"]
    kv = cfg["num_key_value_heads"] * cfg.get("head_dim", h // cfg["num_attention_heads"])
    return {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
            "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}


def param_counts(cfg: dict, r: int, target_modules: str) -> tuple[int, int]:
    """(base parameters, one adapter's parameters) from the shapes: r·(in + out) per targeted linear."""
    shapes = linear_shapes(cfg)
    L, h, V = cfg["num_hidden_layers"], cfg["hidden_size"], cfg["vocab_size"]
    base = V * h * (1 if cfg.get("tie_word_embeddings") else 2) + h
    base += L * (sum(i * o for i, o in shapes.values()) + 2 * h)
    targets = preset(target_modules)
    names = list(shapes) if targets == "all-linear" else targets
    return base, L * sum(r * sum(shapes[n]) for n in names)


def memory_curve(preset: str, r: int, target_modules: str, dtype: str, k_max: int, slots: int) -> dict:
    """Bytes against K: K merged copies (K·M0) vs one base + K adapters in host memory + `slots` on device."""
    base, adapter = param_counts(model_shapes(preset), r, target_modules)
    b = BYTES[dtype]
    ks = list(range(1, k_max + 1))
    return {"K": ks, "merged": [k * base * b for k in ks],
            "shared_device": [(base + min(k, slots) * adapter) * b for k in ks],
            "host_adapters": [k * adapter * b for k in ks], "base_bytes": base * b, "adapter_bytes": adapter * b}


def cache_hit_rate(K: int, traffic: str, slots: int, batch_size: int, n: int = 2000, seed: int = 0) -> dict:
    """LRU over `slots` on a synthetic stream, batch by batch (a batch's adapters must all be resident)."""
    from collections import OrderedDict

    adapters = make_stream(n, K, traffic, seed=seed)
    lru: OrderedDict[int, None] = OrderedDict()
    hits = loads = 0
    for b0 in range(0, n, batch_size):
        for a in dict.fromkeys(adapters[b0: b0 + batch_size]):
            if a in lru:
                lru.move_to_end(a)
                hits += 1
            else:
                loads += 1
                lru[a] = None
                if len(lru) > slots:
                    lru.popitem(last=False)
    batches = [adapters[i: i + batch_size] for i in range(0, n, batch_size)]
    return {"hit_rate": hits / (hits + loads), "loads": loads, "distinct_per_batch": _distinct(adapters, batch_size),
            "batch": adapters[:batch_size], "active_share": _active_share(batches, slots)}


def _active_share(batches: list[list[int]], slots: int) -> float:
    """Fraction of batches whose distinct adapters fit in `slots` (else the batch is split)."""
    return sum(len(set(b)) <= slots for b in batches) / len(batches)
