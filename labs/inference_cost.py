"""Inference cost, measured: greedy decoding with a KV cache; the model configs the pages' pictures size.

    prefill   logits, cache = model(prompt [⊕ soft prompt], cache=[prefix K/V])       timed once
    decode    repeat new_tokens times: logits, cache = model(argmax token, cache)      each step timed
              → median milliseconds per generated token; the cache length the request ended with

Variants are measured round-robin (repeat 1 of every variant, then repeat 2, …) so a burst of load on a
shared machine hits all of them alike; the statistic is the median, robust to the odd slow step.
Used by the soft-prompts and adapters labs and the trade-off table (labs never import streamlit; this file neither).
"""
from __future__ import annotations

import inspect
import statistics
import time
from typing import Callable

import torch


def cache_kwarg(model) -> str:
    """transformers >= 5.2x calls the KV cache argument `cache`; earlier 5.x `past_key_values`."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def cache_of(out):
    """The cache a forward returned, under either name."""
    cache = out.get("cache") if hasattr(out, "get") else None
    return cache if cache is not None else out.past_key_values


@torch.no_grad()
def decode_once(model, prefill: dict, new_tokens: int) -> dict:
    """One greedy generation. `prefill` holds input_ids or inputs_embeds (B, T[, d]) and optionally a
    ready cache (a prefix); returns the prefill seconds, the per-token seconds and the final cache length."""
    kw = cache_kwarg(model)
    args = dict(prefill)
    if "cache" in args:
        args[kw] = args.pop("cache")
    t0 = time.perf_counter()
    out = model(**args, use_cache=True)
    nxt = out.logits[:, -1].argmax(-1, keepdim=True)                          # (B, 1)
    tokens = [int(nxt[0, 0])]                                                 # waits for the device
    prefill_s = time.perf_counter() - t0
    cache = cache_of(out)
    per_token, cpu = [], []
    for _ in range(new_tokens):
        t0, c0 = time.perf_counter(), time.process_time()
        out = model(input_ids=nxt, use_cache=True, **{kw: cache})
        cache = cache_of(out)
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)                      # (B, 1)
        tokens.append(int(nxt[0, 0]))                                         # waits for the device
        per_token.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)      # CPU seconds of this process: robust when the machine is shared
    return {"prefill_s": prefill_s, "per_token_s": per_token, "cpu_per_token_s": cpu,
            "cache_len": int(cache.get_seq_length()), "tokens": tokens}


def compare_decode(variants: dict[str, tuple[torch.nn.Module, Callable[[], dict]]], new_tokens: int,
                   repeats: int, should_stop: Callable[[], bool] = lambda: False) -> dict[str, dict]:
    """{name: (model, make_prefill)} → {name: {ms_per_token, ms_per_token_q25/q75, prefill_ms, cache_len}}.

    `make_prefill()` is called outside the timed region (a prefix cache is rebuilt per repeat: it grows as
    tokens are decoded). One warm-up generation per variant is discarded."""
    from labs.train import Cancelled

    for model, make in variants.values():
        model.eval()
        decode_once(model, make(), min(new_tokens, 2))                       # warm-up: allocator, kernels
    steps: dict[str, list[float]] = {n: [] for n in variants}
    cpu: dict[str, list[float]] = {n: [] for n in variants}
    prefill: dict[str, list[float]] = {n: [] for n in variants}
    last: dict[str, dict] = {}
    for _ in range(repeats):
        for name, (model, make) in variants.items():
            if should_stop():
                raise Cancelled("cancelled while measuring latency")
            r = decode_once(model, make(), new_tokens)
            steps[name] += r["per_token_s"]
            cpu[name] += r["cpu_per_token_s"]
            prefill[name].append(r["prefill_s"])
            last[name] = r
    out = {}
    for name in variants:
        q = statistics.quantiles(steps[name], n=4) if len(steps[name]) >= 2 else steps[name] * 3
        out[name] = {"ms_per_token": 1e3 * statistics.median(steps[name]),
                     "ms_per_token_q25": 1e3 * q[0], "ms_per_token_q75": 1e3 * q[-1],
                     "cpu_ms_per_token": 1e3 * statistics.median(cpu[name]),
                     "prefill_ms": 1e3 * statistics.median(prefill[name]),
                     "cache_len": last[name]["cache_len"], "generated": last[name]["tokens"]}
    return out


def model_configs() -> dict:
    """{label: config} for the pages' instant pictures: the bundled model (its real config.json) first,
    then the calculator's published presets, as objects with the transformers config field names."""
    import json
    from types import SimpleNamespace

    from labs.base import model_dir
    from labs.budget.presets import MAIN_PRESETS, PRESETS

    out = {}
    try:
        cfg = json.loads((model_dir() / "config.json").read_text())
        out["bundled"] = SimpleNamespace(**cfg)
    except (FileNotFoundError, json.JSONDecodeError):
        pass                                          # no bundled model yet: presets only
    for name in MAIN_PRESETS:
        c = PRESETS[name]
        out[name] = SimpleNamespace(**c.hf, head_dim=c.head_dim)
    return out
