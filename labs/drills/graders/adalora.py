"""AdaLoRA drill: one step of the importance EMA, the triplet scores and masking to a budget.

Expected pattern: `labs.methods.adalora.RankAllocator` (`update_ipt` then `mask_to_budget`) on SVDLinear layers
holding the same P, Λ, Q, gradients and EMA state (PEFT's RankAllocator semantics).
"""
from __future__ import annotations

import torch
from torch import nn

from labs.drills.grading import Case, L
from labs.drills.graders import choice, randint, randn
from labs.methods.adalora import AdaLoraConfig, RankAllocator, SVDLinear

PARAMS = ("layers", "budget", "beta1", "beta2")
NAMES = ("A", "E", "B")


def _layer_state(g, d: int, k: int, r: int) -> dict:
    st = {"lora_A": randn(g, r, k), "lora_E": randn(g, r, 1), "lora_B": randn(g, d, r)}
    for n in NAMES:
        shape = st[f"lora_{n}"].shape
        st[f"grad_{n}"] = randn(g, *shape)
        st[f"ipt_{n}"] = torch.rand(*shape, generator=g)                 # EMA state from earlier steps
        st[f"unc_{n}"] = torch.rand(*shape, generator=g) * 0.5
    return st


def _reference(layers: dict, budget: int, beta1: float, beta2: float) -> dict:
    mods = {}
    r = next(iter(layers.values()))["lora_A"].shape[0]
    for name, st in layers.items():
        d, k = st["lora_B"].shape[0], st["lora_A"].shape[1]
        m = SVDLinear(nn.Linear(k, d), r=r, lora_alpha=8)
        with torch.no_grad():
            for n in NAMES:
                getattr(m, f"lora_{n}").copy_(st[f"lora_{n}"])
        for n in NAMES:
            getattr(m, f"lora_{n}").grad = st[f"grad_{n}"].clone()
        mods[name] = m
    alloc = RankAllocator(mods, AdaLoraConfig(total_step=100, init_r=r, target_r=1, beta1=beta1, beta2=beta2))
    for name, st in layers.items():
        for n in NAMES:
            alloc.exp_avg_ipt[(name, f"lora_{n}")] = st[f"ipt_{n}"].clone()
            alloc.exp_avg_unc[(name, f"lora_{n}")] = st[f"unc_{n}"].clone()
    alloc.update_ipt()
    return alloc.mask_to_budget(budget)


def _variant_pattern(layers: dict, budget: int, b1: float, b2: float, how: str) -> dict:
    """Plausible wrong scorings, to recognise them in a submission."""
    scores = {}
    for name, st in layers.items():
        s = {}
        for n in NAMES:
            ipt = (st[f"lora_{n}"] * st[f"grad_{n}"]).abs()
            avg = b1 * st[f"ipt_{n}"] + (1 - b1) * ipt
            unc = b2 * st[f"unc_{n}"] + (1 - b2) * (ipt - avg).abs()
            s[n] = ipt if how == "instant" else avg * unc
        red = torch.sum if how == "sum" else torch.mean
        scores[name] = s["E"].view(-1) + red(s["A"], dim=1) + red(s["B"], dim=0)
    allv = torch.cat(list(scores.values()))
    k = budget if how == "k=budget" else allv.numel() - budget
    if k <= 0:
        return {n: [True] * v.numel() for n, v in scores.items()}
    th = torch.kthvalue(allv, k)[0]
    return {n: (v > th).tolist() for n, v in scores.items()}


def _as_bools(v):
    if isinstance(v, torch.Tensor):
        v = v.reshape(-1).tolist()
    if isinstance(v, (list, tuple)) and all(isinstance(x, (bool, int)) and x in (0, 1, True, False) for x in v):
        return [bool(x) for x in v]
    return None


def _check(expected: dict, variants: list):
    def check(got, case, lang):
        if not isinstance(got, dict) or set(got) != set(expected):
            return L(lang, f"return a dict {{layer name: list of r bools}} with keys {sorted(expected)}; got "
                           f"{sorted(got) if isinstance(got, dict) else type(got).__name__}",
                     f"应返回 dict {{层名: r 个 bool 的列表}}，键为 {sorted(expected)}")
        for name, exp in expected.items():
            gv = _as_bools(got[name])
            if gv != exp:
                kept = sum(sum(v) for v in expected.values())
                msg = L(lang, f"layer {name!r}: expected keep {exp}, got {got[name]!r:.120}; the budget keeps {kept} "
                              f"triplets in total",
                        f"层 {name!r}：应保留 {exp}，实际 {got[name]!r:.120}；预算共保留 {kept} 个三元组")
                norm = {n: _as_bools(v) for n, v in got.items()}
                for pattern, en, zh in variants:
                    if norm == pattern and pattern != expected:
                        return msg + L(lang, "\nHint: " + en, "\n提示：" + zh)
                return msg
        return None
    return check


def mask(g: torch.Generator) -> list[Case]:
    cases = []
    for n_layers, r in ((2, 4), (3, choice(g, (3, 6))), (1, 5), (4, 2)):
        layers = {f"layers.{i}.{choice(g, ('q_proj', 'v_proj', 'up_proj'))}": _layer_state(
            g, randint(g, 5, 11), randint(g, 5, 11), r) for i in range(n_layers)}
        total = n_layers * r
        budget = randint(g, 1, total - 1) if total > 1 else 1
        b1, b2 = choice(g, (0.85, 0.9)), choice(g, (0.85, 0.95))
        exp = _reference(layers, budget, b1, b2)
        variants = [
            (_variant_pattern(layers, budget, b1, b2, "instant"),
             "score with the smoothed sensitivity times the uncertainty (Ī·Ū after this step's EMA update), not the raw |θ·g|.",
             "分数用平滑后的敏感度乘以不确定性（本步 EMA 更新后的 Ī·Ū），而不是原始的 |θ·g|。"),
            (_variant_pattern(layers, budget, b1, b2, "sum"),
             "the triplet score averages over the entries of P's column and Q's row (mean), it does not sum them.",
             "三元组分数对 P 的列和 Q 的行取平均（mean），不是求和。"),
            (_variant_pattern(layers, budget, b1, b2, "k=budget"),
             "`budget` is how many triplets to KEEP: the threshold is the (total − budget)-th smallest score.",
             "`budget` 是要保留的三元组个数：阈值是第 (total − budget) 小的分数。"),
        ]
        cases.append(Case(f"{n_layers} layer(s), r={r}, budget {budget}/{total}, beta1={b1}, beta2={b2}",
                          "adalora_mask", [layers, budget], exp, PARAMS, kwargs={"beta1": b1, "beta2": b2},
                          check=_check(exp, variants)))
    return cases
