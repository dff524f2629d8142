"""Prefix-tuning drill: the per-layer past key/value shape and the trainable parameter count.

Expected values: `labs.methods.prompts.kv_geometry` (the cache geometry prefix tuning builds) and the number of
parameters of `labs.methods.prompts.PrefixEncoder` (PEFT's layout), built on the meta device.
"""
from __future__ import annotations

from types import SimpleNamespace

import torch

from labs.drills.grading import Case, Mistake
from labs.drills.graders import choice, randint
from labs.methods.prompts import PrefixEncoder, kv_geometry

PARAMS = ("config", "num_virtual_tokens", "batch", "prefix_projection", "encoder_hidden_size")


def shapes(g: torch.Generator) -> list[Case]:
    cases = []
    for proj, hidden, gqa in ((False, None, True), (False, None, False), (True, None, True), (True, "set", True),
                              (False, None, True)):
        heads = choice(g, (4, 8, 32))
        hd = choice(g, (16, 64, 128))
        kvh = choice(g, [k for k in (1, 2, 4) if k < heads]) if gqa else heads
        cfg = {"num_hidden_layers": randint(g, 2, 40), "num_attention_heads": heads, "num_key_value_heads": kvh,
               "hidden_size": heads * hd}
        n, batch = randint(g, 1, 40), randint(g, 1, 9)
        e = randint(g, 16, 512) if hidden else None
        L_, kv_heads, head_dim = kv_geometry(SimpleNamespace(**cfg))
        with torch.device("meta"):
            enc = PrefixEncoder(n, L_, kv_heads * head_dim, proj, e or kv_heads * head_dim)
        params = sum(p.numel() for p in enc.parameters())
        exp = {"key_shape": (batch, kv_heads, n, head_dim), "value_shape": (batch, kv_heads, n, head_dim),
               "num_layers": L_, "trainable_params": params}
        mistakes = [Mistake("each layer caches K AND V: 2 · L · n · (kv_heads · head_dim) numbers.",
                            "每层要缓存 K 和 V：2 · L · n · (kv_heads · head_dim) 个数。",
                            {**exp, "trainable_params": params // 2})] if not proj else []
        if gqa:
            mistakes.append(Mistake("GQA: prefixes live per KEY/VALUE head (num_key_value_heads), not per query head.",
                                    "GQA：前缀按 key/value 头（num_key_value_heads）存放，而不是按 query 头。",
                                    {**exp, "key_shape": (batch, heads, n, head_dim),
                                     "value_shape": (batch, heads, n, head_dim)}))
        cases.append(Case(f"L={L_} heads={heads} kv_heads={kvh} head_dim={hd} n={n} batch={batch} "
                          f"projection={proj}{f' hidden={e}' if e else ''}", "prefix_tuning_shapes",
                          [cfg, n, batch], exp, PARAMS, kwargs={"prefix_projection": proj, "encoder_hidden_size": e},
                          exact=True, mistakes=mistakes))
    return cases
