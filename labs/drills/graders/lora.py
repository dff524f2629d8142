"""LoRA drills: forward (with rsLoRA), merge/unmerge, backward by hand, LoRA+ learning rates.

Expected values: `peftlab_kernels.lora` (the fused op's reference formula and its hand-written backward),
`labs.methods.lora.LoraConfig.scaling`, `LoraLinear.merge/unmerge`, `loraplus_param_groups`.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from labs.drills.grading import Case, L, Mistake, Raises
from labs.drills.graders import choice, dtype_name, randint, randn
from labs.methods.lora import LoraConfig, LoraLinear, loraplus_param_groups
from peftlab_kernels.lora import lora_backward_torch, lora_linear_reference

FORWARD_PARAMS = ("x", "W0", "b", "A", "B", "alpha", "r", "use_rslora")


def _scaling(alpha: float, r: int, rs: bool) -> float:
    return LoraConfig(r=r, lora_alpha=alpha, use_rslora=rs).scaling


def _weights(g, d: int, k: int, r: int, dtype, bias: bool = True):
    W0 = randn(g, d, k, dtype=dtype, scale=1 / math.sqrt(k))
    A = randn(g, r, k, dtype=dtype, scale=1 / math.sqrt(k))
    B = randn(g, d, r, dtype=dtype, scale=1 / math.sqrt(r))            # non-zero on purpose (B = 0 at init)
    b = randn(g, d, dtype=dtype) if bias else None
    return W0, b, A, B


def _forward_geometry(g):
    """(lead dims, d, k, r, rs, bias, dtype): r = 1, odd sizes, batch dims, 1-D x, both dtypes, both flags."""
    odd = lambda lo, hi: randint(g, lo, hi) | 1                               # noqa: E731
    return [
        ((odd(3, 9),), odd(5, 13), odd(5, 13), 1, False, True, torch.float32),
        ((2, odd(3, 7)), odd(9, 17), odd(5, 11), choice(g, (4, 8)), True, True,
         torch.float32),
        ((), odd(5, 9), odd(7, 15), choice(g, (2, 4)), False, False, torch.float32),
        ((2, 3, odd(3, 5)), odd(5, 9), odd(5, 9), choice(g, (4, 16)), True, False, torch.float32),
        ((odd(3, 7),), odd(11, 21), odd(9, 19), choice(g, (4, 8)), False, True, torch.bfloat16),
        ((2, odd(3, 5)), odd(7, 13), odd(7, 13), choice(g, (4, 16)), True, True, torch.bfloat16),
    ]


def forward(g: torch.Generator) -> list[Case]:
    cases = []
    for lead, d, k, r, rs, bias, dtype in _forward_geometry(g):
        alpha = choice(g, (8.0, 12.5, 16.0, 32.0))
        W0, b, A, B = _weights(g, d, k, r, dtype, bias)
        x = randn(g, *lead, k, dtype=dtype)
        s = _scaling(alpha, r, rs)
        exp = lora_linear_reference(x, W0, b, A, B, s)
        wrong = lambda s2, bias2=b, base=1.0: (lora_linear_reference(x, W0 * base, bias2, A, B, s2))  # noqa: E731
        mistakes = [
            Mistake("the scaling is off by √r: use_rslora=True means s = alpha/√r, not alpha/r.",
                    "缩放差了 √r：use_rslora=True 时 s = alpha/√r，而不是 alpha/r。", wrong(alpha / r)) if rs else
            Mistake("use_rslora=False here: s = alpha/r (alpha/√r is rsLoRA only).",
                    "这里 use_rslora=False：s = alpha/r（alpha/√r 只用于 rsLoRA）。", wrong(alpha / math.sqrt(r))),
            Mistake("the LoRA branch is missing its scaling s = alpha/r (or alpha/√r).",
                    "LoRA 分支漏了缩放 s = alpha/r（或 alpha/√r）。", wrong(1.0)),
            Mistake("the scaling is r/alpha instead of alpha/r.", "缩放写成了 r/alpha，应为 alpha/r。", wrong(r / alpha)),
            Mistake("only the LoRA branch is scaled: y = x W0ᵀ + b + s·(x Aᵀ)Bᵀ, not s·(everything).",
                    "只缩放 LoRA 分支：y = x W0ᵀ + b + s·(x Aᵀ)Bᵀ，不是整体乘 s。",
                    s * lora_linear_reference(x, W0, b, A, B, 1.0)),
        ]
        if b is not None:
            mistakes.append(Mistake("the bias b is missing.", "漏了偏置 b。", wrong(s, None)))
        name = (f"{dtype_name(dtype)} x{tuple(x.shape)} d={d} k={k} r={r} "
                f"{'rsLoRA' if rs else 'LoRA'}{' +bias' if bias else ' b=None'}")
        cases.append(Case(name, "lora_forward", [x, W0, b, A, B, alpha, r], exp, FORWARD_PARAMS,
                          kwargs={"use_rslora": rs}, mistakes=mistakes))
    return cases


def error_hint(err: str, lang: str) -> str:
    if "cannot be multiplied" in err or "size of tensor a" in err or "must match the size" in err:
        return L(lang, "Hint: check the transposes. W0 is (d, k), A is (r, k), B is (d, r), so y = x W0ᵀ + b + s·(x Aᵀ) Bᵀ;"
                       " x may have any number of leading dims.",
                 "提示：检查转置。W0 是 (d, k)，A 是 (r, k)，B 是 (d, r)，所以 y = x W0ᵀ + b + s·(x Aᵀ) Bᵀ；x 可以有任意多个前导维度。")
    if "NoneType" in err:
        return L(lang, "Hint: b may be None (a layer without bias).", "提示：b 可能是 None（没有偏置的层）。")
    return ""


# ---------------------------------------------------------------------------------------------
def _layer(W0, A, B, alpha, r, rs) -> LoraLinear:
    d, k = W0.shape
    base = nn.Linear(k, d, bias=False, dtype=W0.dtype)
    m = LoraLinear(base, LoraConfig(r=r, lora_alpha=alpha, use_rslora=rs))
    with torch.no_grad():
        base.weight.copy_(W0)
        m.lora_A.weight.copy_(A)
        m.lora_B.weight.copy_(B)
    return m


def merge(g: torch.Generator) -> list[Case]:
    cases = []
    params = ("W0", "A", "B", "alpha", "r", "use_rslora")
    for dtype, square in ((torch.float32, False), (torch.float32, True), (torch.bfloat16, False)):
        d = randint(g, 5, 13) | 1
        k = d if square else randint(g, 4, 12) * 2 + 1
        r, rs = choice(g, (1, 4, 8)), bool(randint(g, 0, 1))
        rs = rs and r > 1
        alpha = choice(g, (8.0, 16.0, 24.0))
        W0, _, A, B = _weights(g, d, k, r, dtype, bias=False)
        layer = _layer(W0, A, B, alpha, r, rs)
        layer.merge()
        merged = layer.base_layer.weight.detach().clone()
        s = layer.scaling
        tag = f"{dtype_name(dtype)} W0({d},{k}) r={r} {'rsLoRA' if rs else 'LoRA'}"
        wrong_s = alpha / r if rs else alpha / math.sqrt(r)
        mistakes = [Mistake("the update is missing its scaling s.", "更新量漏了缩放 s。", W0 + (B @ A)),
                    Mistake("the scaling does not match use_rslora (alpha/r vs alpha/√r).",
                            "缩放与 use_rslora 不符（alpha/r 与 alpha/√r）。", W0 + wrong_s * (B @ A))]
        if square:
            mistakes.append(Mistake("ΔW = B A is (d, k); (B A)ᵀ = Aᵀ Bᵀ is the transpose.",
                                    "ΔW = B A 形状是 (d, k)；Aᵀ Bᵀ 是它的转置。", W0 + s * (B @ A).t()))
        cases.append(Case(f"merge {tag}", "merge", [W0, A, B, alpha, r], merged, params, kwargs={"use_rslora": rs},
                          mistakes=mistakes))
        layer.unmerge()
        restored = layer.base_layer.weight.detach().clone()
        cases.append(Case(f"unmerge {tag}", "unmerge", [merged, A, B, alpha, r], restored,
                          ("W",) + params[1:], kwargs={"use_rslora": rs},
                          mistakes=[Mistake("unmerge subtracts the same s·B A that merge added.",
                                            "unmerge 要减去 merge 加上的同一个 s·B A。", merged + s * (B @ A))]))
    return cases


# ---------------------------------------------------------------------------------------------
def backward(g: torch.Generator) -> list[Case]:
    cases = []
    params = ("x", "A", "B", "dy", "scaling")
    for lead, dtype in (((randint(g, 3, 9) | 1,), torch.float32), ((2, randint(g, 2, 5) | 1), torch.float32),
                        ((2, 3, 3), torch.float32), ((randint(g, 4, 8),), torch.bfloat16)):
        d, k, r = randint(g, 5, 12) | 1, randint(g, 5, 12) | 1, choice(g, (1, 4, 8))
        s = choice(g, (0.5, 2.0, 4.0))
        _, _, A, B = _weights(g, d, k, r, dtype, bias=False)
        x = randn(g, *lead, k, dtype=dtype)
        dy = randn(g, *lead, d, dtype=dtype)
        x2, g2 = x.reshape(-1, k), dy.reshape(-1, d)
        u = x2 @ A.t()
        dx, dA, dB = lora_backward_torch(g2, x2, u, torch.zeros(d, k, dtype=dtype), A, B, s, need_x=True)
        exp = (dA, dB, dx.reshape(x.shape))
        _, dA1, dB1 = lora_backward_torch(g2, x2, u, torch.zeros(d, k, dtype=dtype), A, B, 1.0, need_x=False)
        mistakes = [Mistake("the gradients carry the scaling s too: y = s·(x Aᵀ)Bᵀ.",
                            "梯度也要乘缩放 s：y = s·(x Aᵀ)Bᵀ。", (dA1, dB1, exp[2] / s))]
        cases.append(Case(f"{dtype_name(dtype)} x{tuple(x.shape)} d={d} r={r} s={s}", "lora_backward",
                          [x, A, B, dy, s], exp, params, mistakes=mistakes))
    return cases


# ---------------------------------------------------------------------------------------------
_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _model_from_names(names: list[tuple[str, bool]]) -> tuple[nn.Module, dict]:
    root, by_id = nn.Module(), {}
    for name, trainable in names:
        *path, leaf = name.split(".")
        mod = root
        for part in path:
            if not hasattr(mod, part):
                mod.add_module(part, nn.Module())
            mod = getattr(mod, part)
        p = nn.Parameter(torch.zeros(1), requires_grad=trainable)
        mod.register_parameter(leaf, p)
        by_id[id(p)] = name
    return root, by_id


def _names(g, dora: bool) -> list[tuple[str, bool]]:
    out = [("model.embed_tokens.weight", False)]
    for layer in range(randint(g, 1, 3)):
        for mod in _MODULES[:randint(g, 2, len(_MODULES))]:
            pre = f"model.layers.{layer}.{'self_attn' if mod.endswith(('q_proj', 'k_proj', 'v_proj', 'o_proj')) else 'mlp'}.{mod}"
            out += [(f"{pre}.base_layer.weight", False), (f"{pre}.lora_A.weight", True), (f"{pre}.lora_B.weight", True)]
            if dora:
                out.append((f"{pre}.lora_magnitude_vector", True))
    out.append(("lm_head.weight", bool(randint(g, 0, 1))))           # sometimes trained too (modules_to_save)
    return out


def loraplus(g: torch.Generator) -> list[Case]:
    cases = []
    params = ("params", "lr", "ratio")
    for dora, ratio in ((False, 16.0), (True, choice(g, (4.0, 8.0, 20.0))), (False, choice(g, (2.0, 32.0)))):
        names = _names(g, dora)
        lr = choice(g, (1e-4, 2e-4, 5e-5))
        model, by_id = _model_from_names(names)
        groups = loraplus_param_groups(model, lr=lr, ratio=ratio)
        exp = {by_id[id(p)]: float(grp["lr"]) for grp in groups for p in grp["params"]}
        wrong_ratio_on_a = {n: (lr if n.endswith("lora_B.weight") else lr * ratio) for n in exp}
        with_frozen = {n: (lr * ratio if n.endswith("lora_B.weight") else lr) for n, _ in names}
        cases.append(Case(f"{'DoRA' if dora else 'LoRA'} model, {len(names)} params, ratio={ratio:g}",
                          "loraplus_learning_rates", [names, lr], exp, params, kwargs={"ratio": ratio},
                          mistakes=[Mistake("B gets lr·ratio; A (and everything else trainable) keeps lr.",
                                            "B 用 lr·ratio；A（以及其它可训练参数）保持 lr。", wrong_ratio_on_a),
                                    Mistake("frozen parameters (requires_grad=False) get no optimizer group.",
                                            "冻结参数（requires_grad=False）不进优化器。", with_frozen)]))
    names = [(n, t) for n, t in _names(g, False) if "lora_B" not in n]
    try:
        loraplus_param_groups(_model_from_names(names)[0], lr=1e-4, ratio=16.0)
        exp = None
    except ValueError:
        exp = Raises(ValueError)
    cases.append(Case("no lora_B at all", "loraplus_learning_rates", [names, 1e-4], exp, params,
                      kwargs={"ratio": 16.0}))
    return cases
