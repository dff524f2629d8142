"""Adapter drills: the Houlsby bottleneck block and LLaMA-Adapter's zero-init gated prompt attention.

Expected values: `labs.methods.adapters.BottleneckAdapter` and `AdaptedAttention` (PEFT's adaption-prompt
layout) around a stub attention whose own output is zero, so only the adapter branch is compared.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from labs.drills.grading import Case, L, Mistake
from labs.drills.graders import choice, dtype_name, randint, randn
from labs.methods.adapters import AdaptedAttention, BottleneckAdapter

H_PARAMS = ("h", "W_down", "b_down", "W_up", "b_up")


def houlsby(g: torch.Generator) -> list[Case]:
    cases = []
    for lead, dtype in (((randint(g, 3, 7) | 1,), torch.float32), ((2, randint(g, 3, 5) | 1), torch.float32),
                        ((2, 2, 3), torch.float32), ((randint(g, 3, 6),), torch.bfloat16)):
        d, m = randint(g, 6, 16) | 1, choice(g, (1, 2, 4, 5))
        block = BottleneckAdapter(d, m, activation="gelu").to(dtype)
        W_down, b_down = randn(g, m, d, dtype=dtype, scale=0.5), randn(g, m, dtype=dtype, scale=0.5)
        W_up, b_up = randn(g, d, m, dtype=dtype, scale=0.5), randn(g, d, dtype=dtype, scale=0.5)  # non-zero
        with torch.no_grad():
            block.down.weight.copy_(W_down), block.down.bias.copy_(b_down)
            block.up.weight.copy_(W_up), block.up.bias.copy_(b_up)
        h = randn(g, *lead, d, dtype=dtype)
        with torch.no_grad():
            exp = block(h)
        z = h @ W_down.t() + b_down
        mistakes = [Mistake("the block is residual: return h + up(act(down(h))).", "这是残差块：返回 h + up(act(down(h)))。",
                            exp - h),
                    Mistake("the activation is GELU (exact, erf form), not ReLU.", "激活函数是 GELU（精确的 erf 形式），不是 ReLU。",
                            h + torch.relu(z) @ W_up.t() + b_up),
                    Mistake("use the exact GELU (approximate='none'), as nn.GELU() does; the tanh form differs slightly.",
                            "用精确 GELU（approximate='none'），与 nn.GELU() 一致；tanh 近似略有差别。",
                            h + torch.nn.functional.gelu(z, approximate="tanh") @ W_up.t() + b_up)]
        cases.append(Case(f"{dtype_name(dtype)} h{tuple(h.shape)} d={d} bottleneck m={m}", "houlsby_adapter",
                          [h, W_down, b_down, W_up, b_up], exp, H_PARAMS, mistakes=mistakes,
                          tol=(1e-5, 1e-5) if dtype == torch.float32 else None))
    return cases


# ---------------------------------------------------------------------------------------------
class _StubAttention(nn.Module):
    """Just what AdaptedAttention reads from a Llama attention: q/k/v/o projections and head_dim; output 0."""

    def __init__(self, d: int, heads: int, kv_heads: int, hd: int, dtype):
        super().__init__()
        self.head_dim = hd
        self.q_proj = nn.Linear(d, heads * hd, bias=False, dtype=dtype)
        self.k_proj = nn.Linear(d, kv_heads * hd, bias=False, dtype=dtype)
        self.v_proj = nn.Linear(d, kv_heads * hd, bias=False, dtype=dtype)
        self.o_proj = nn.Linear(heads * hd, d, bias=False, dtype=dtype)

    def forward(self, hidden_states, position_embeddings=None, **kwargs):
        return (torch.zeros_like(hidden_states),)


LA_PARAMS = ("h", "prompt", "Wq", "Wk", "Wv", "Wo", "gate", "num_heads", "cos", "sin")


def _rope(b, t, hd, g, dtype):
    pos = torch.arange(t, dtype=torch.float32) + randint(g, 0, 20)
    inv = 1.0 / (10000 ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    ang = torch.cat([pos[:, None] * inv[None, :]] * 2, dim=-1)                    # (T, hd)
    return ang.cos()[None].expand(b, t, hd).to(dtype), ang.sin()[None].expand(b, t, hd).to(dtype)


def llama_adapter(g: torch.Generator) -> list[Case]:
    cases = []
    geoms = [(2, 5, 4, 2, 4, 0.7, torch.float32), (1, 3, 2, 2, 8, -1.3, torch.float32),
             (2, 7, 4, 1, 4, 0.4, torch.float32), (1, 4, 2, 2, 4, 0.0, torch.float32),
             (2, 3, 4, 2, 8, 1.1, torch.bfloat16)]
    for b, t, heads, kv_heads, hd, gate, dtype in geoms:
        t = t + randint(g, 0, 2) * 2
        d, n = heads * hd, randint(g, 2, 6)
        attn = _StubAttention(d, heads, kv_heads, hd, dtype)
        W = {k: randn(g, *getattr(attn, k).weight.shape, dtype=dtype, scale=1 / math.sqrt(d))
             for k in ("q_proj", "k_proj", "v_proj", "o_proj")}
        with torch.no_grad():
            for k, v in W.items():
                getattr(attn, k).weight.copy_(v)
        ad = AdaptedAttention(attn, adapter_len=n, hidden_size=d, num_heads=heads)
        prompt = randn(g, 1, n, d, dtype=dtype)
        with torch.no_grad():
            ad.adaption_prompt.copy_(prompt)
            ad.adaption_gate.fill_(gate)                     # zero at init; non-zero here, plus one gate = 0 case
        h = randn(g, b, t, d, dtype=dtype)
        cos, sin = _rope(b, t, hd, g, dtype)
        with torch.no_grad():
            exp = ad(h, position_embeddings=(cos, sin))[0]
            ungated = exp / gate if gate else None
        mistakes = []
        if gate:
            mistakes.append(Mistake("multiply the attention over the prompt by the gate (zero-initialised, learned).",
                                    "对提示词的注意力结果要乘以门控（零初始化、可学习）。", ungated))
        name = (f"{dtype_name(dtype)} h({b}, {t}, {d}) heads={heads} kv_heads={kv_heads} head_dim={hd} prompt len {n} "
                f"gate={gate:g}")
        cases.append(Case(name, "adapter_branch", [h, prompt, W["q_proj"], W["k_proj"], W["v_proj"], W["o_proj"],
                                                    torch.tensor([gate], dtype=dtype), heads, cos, sin], exp,
                          LA_PARAMS, mistakes=mistakes))
    return cases


def error_hint(err: str, lang: str) -> str:
    if "cannot be multiplied" in err or "size of tensor" in err or "must match" in err or "shape" in err:
        return L(lang, "Hint: with grouped-query attention the prompt has kv_heads = Wk.shape[0] // head_dim heads; "
                       "repeat each of them num_heads // kv_heads times (repeat_interleave on the head dim).",
                 "提示：分组查询注意力（GQA）下提示词只有 kv_heads = Wk.shape[0] // head_dim 个头；"
                 "每个重复 num_heads // kv_heads 次（在头维度上 repeat_interleave）。")
    return ""
