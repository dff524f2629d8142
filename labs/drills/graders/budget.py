"""Memory drills: model-state bytes of a training config, and the KV cache of a GQA model.

Expected values: `labs.budget.estimate` (the VRAM calculator; its counts are checked against real models
and PyTorch's MemTracker in tests/budget).
"""
from __future__ import annotations

import torch

from labs.budget import estimate
from labs.drills.grading import Case, Mistake
from labs.drills.graders import choice, randint

STATE_PARAMS = ("config", "method", "rank", "precision")
KV_PARAMS = ("config", "batch", "seq_len", "bytes_per_element")


def _config(g, gqa: bool = True, explicit_head_dim: bool = False) -> dict:
    heads = choice(g, (4, 8, 16, 32))
    hd = choice(g, (16, 32, 64, 128))
    kv = choice(g, [h for h in (1, 2, 4, 8) if heads % h == 0 and h < heads]) if gqa else heads
    cfg = {"model_type": "llama", "vocab_size": randint(g, 1000, 64000), "hidden_size": heads * hd,
           "intermediate_size": randint(g, 2, 6) * heads * hd // 2 + randint(g, 0, 8) * 16,
           "num_hidden_layers": randint(g, 2, 40), "num_attention_heads": heads, "num_key_value_heads": kv,
           "tie_word_embeddings": bool(randint(g, 0, 1))}
    if explicit_head_dim:
        cfg["head_dim"] = hd * 2                            # head_dim ≠ hidden/heads (Gemma-style)
    return cfg


def model_states(g: torch.Generator) -> list[Case]:
    cases = []
    for method, precision in (("full", "bf16-mixed"), ("lora", "bf16-mixed"), ("full", "fp32"), ("lora", "bf16-true"),
                              ("lora", "fp32"), ("full", "bf16-true")):
        cfg = _config(g, gqa=bool(randint(g, 0, 1)))
        hd = cfg["hidden_size"] // cfg["num_attention_heads"]
        smallest = min(cfg["num_key_value_heads"] * hd, cfg["hidden_size"], cfg["intermediate_size"])
        rank = choice(g, [r for r in (1, 8, 16, 64) if r <= smallest])        # the calculator's allowed range
        est = estimate(model=cfg, method=method, rank=rank, precision=precision, optimizer="adamw")
        mb = est["memory_bytes"]
        exp = {k: mb[k] for k in ("weights", "gradients", "optimizer")}
        P, T = est["total_params"], est["trainable_params"]
        mistakes = []
        if precision == "bf16-mixed":
            mistakes.append(Mistake("bf16-mixed AdamW keeps an fp32 master copy in the optimizer too: 4 (master) + "
                                    "4 + 4 (m, v) = 12 bytes per trainable parameter.",
                                    "bf16 混合精度的 AdamW 在优化器里还有一份 fp32 主权重：4（主权重）+ 4 + 4（m、v）= 每个可训练参数 12 字节。",
                                    {**exp, "optimizer": 8 * T}))
        if cfg["tie_word_embeddings"]:
            untied = estimate(model={**cfg, "tie_word_embeddings": False}, method=method, rank=rank,
                              precision=precision, optimizer="adamw")["memory_bytes"]
            mistakes.append(Mistake("tie_word_embeddings=True: lm_head shares embed_tokens' matrix, count it once.",
                                    "tie_word_embeddings=True：lm_head 与 embed_tokens 共用矩阵，只算一次。",
                                    {k: untied[k] for k in exp}))
        if method == "lora":
            mistakes.append(Mistake("with LoRA only the adapters get gradients and optimizer states; the frozen base "
                                    "only costs its weights.", "LoRA 下只有适配器有梯度和优化器状态；冻结的基座只占权重。",
                                    {**exp, "gradients": exp["gradients"] * P // max(T, 1)}))
        cases.append(Case(f"{method} {precision} L={cfg['num_hidden_layers']} h={cfg['hidden_size']} "
                          f"heads={cfg['num_attention_heads']}/{cfg['num_key_value_heads']} r={rank}", "model_state_bytes",
                          [cfg, method, rank, precision], exp, STATE_PARAMS, exact=True,
                          mistakes=mistakes))
    return cases


def kv_cache(g: torch.Generator) -> list[Case]:
    cases = []
    for gqa, explicit, bpe in ((True, False, 2), (False, False, 2), (True, False, 4), (True, True, 2), (True, False, 2)):
        cfg = _config(g, gqa=gqa, explicit_head_dim=explicit)
        batch, seq = randint(g, 1, 64), randint(g, 1, 32768)
        precision = {2: "bf16-true", 4: "fp32"}[bpe]
        exp = estimate(model=cfg, method="full", mode="inference", batch=batch, seq=seq,
                       precision=precision)["activation_terms"]["kv cache 2*L*(k*d)*b*s"]
        L_, a, k = cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
        d = cfg.get("head_dim") or cfg["hidden_size"] // a
        mistakes = [Mistake("K and V are both cached: the factor 2.", "K 和 V 都要缓存：乘 2。", exp // 2)]
        if k != a:
            mistakes.append(Mistake("GQA: the cache holds num_key_value_heads heads, not num_attention_heads.",
                                    "GQA：缓存的是 num_key_value_heads 个头，而不是 num_attention_heads。", exp * a // k))
        if explicit:
            mistakes.append(Mistake("the config sets head_dim explicitly; use it instead of hidden_size / heads.",
                                    "config 显式给了 head_dim，要用它而不是 hidden_size / heads。",
                                    2 * L_ * k * (cfg["hidden_size"] // a) * batch * seq * bpe))
        cases.append(Case(f"L={L_} heads={a} kv_heads={k} head_dim={d} batch={batch} seq={seq} {bpe} B/elem",
                          "kv_cache_bytes", [cfg, batch, seq, bpe], exp, KV_PARAMS, exact=True, mistakes=mistakes))
    return cases
