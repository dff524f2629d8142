"""Trainable-parameter counts of every method, as functions of rank, targets and lengths.

For a linear layer W of shape (out, in) and rank r (peft's names):

    LoRA / QLoRA   lora_A (r, in) + lora_B (out, r)              r*(in + out)
    DoRA           LoRA + lora_magnitude_vector (out,)            r*(in + out) + out
    AdaLoRA        lora_A (r, in) + lora_B (out, r) + lora_E (r, 1)   r*(in + out + 1)   (r = init_r)
    prompt         n_virtual_tokens * h                           (one soft-token table at the input)
    prefix         n * L * 2 * (k*d)                              (one K and one V row per layer; with GQA
                                                                   the prefix lives per *KV head*, k*d < h)
    P-tuning v2    prefix + reparam MLP: n*(k*d) + (k*d)*e + e + e*(L*2*k*d) + L*2*k*d   (e = encoder hidden)
    Houlsby        per layer 2 adapters * (down h*m + m, up m*h + h) = 2*(2*h*m + h + m)
                   (+ 2*h if the layer norms train too, as in the paper)
    LLaMA-Adapter  per adapted layer: prompt (len, h) + one zero-init gate   L_a*len*h + L_a
    (IA)³          ia3_l per target: out (k/v-style, rescales the output) or in (feed-forward, rescales the input)
    VeRA           vera_lambda_b (out,) + vera_lambda_d (r,) per target: out + r; plus the shared frozen
                   vera_A (r, max in) and vera_B (max out, r), buffers drawn from a seed (counted as frozen weights)

QLoRA counts exactly like LoRA: only the frozen base changes (to NF4), not the adapter.
"""
from __future__ import annotations

from labs.budget.params import LINEAR_NAMES, linear_shapes, total_params
from labs.budget.presets import ArchConfig, BudgetError
from labs.methods.registry import BUDGET_FORMULAS, SPECS

# the formulas below, by the names labs.methods.registry gives them (`spec.budget`): every method the registry
# sizes maps onto one of these (P-tuning v2 = prefix with prefix_projection, rsLoRA counts like LoRA)
METHODS = BUDGET_FORMULAS
# the low-rank family: a rank on targeted linears (lora, qlora, dora, adalora)
LORA_LIKE = tuple(dict.fromkeys(s.budget for s in SPECS.values() if s.budget and "target_modules" in s.settings))
VECTOR_METHODS = ("ia3", "vera")     # a learned vector per targeted linear (labs.methods.ia3 / vera)
IA3_FEEDFORWARD = ("down_proj",)
MAX_RANK = 65536
MAX_TOKENS = 4096


def parse_targets(targets: str | list | tuple) -> tuple[str, ...]:
    """``"all-linear"``, ``"q_proj,v_proj"`` or a list → validated tuple of linear-layer names."""
    if isinstance(targets, str):
        if targets.strip() == "all-linear":
            return LINEAR_NAMES
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    names = tuple(dict.fromkeys(targets))
    if not names:
        raise BudgetError("targets", f"targets = {targets!r} is empty: allowed all-linear or a comma list of "
                                     f"{', '.join(LINEAR_NAMES)}")
    for n in names:
        if n not in LINEAR_NAMES:
            raise BudgetError("targets", f"targets contains {n!r}: allowed all-linear or names from "
                                         f"{', '.join(LINEAR_NAMES)}")
    return names


def check_rank(c: ArchConfig, rank: int, targets: tuple[str, ...]) -> None:
    """A rank above min(out, in) of a targeted layer is not low-rank any more: refuse it."""
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise BudgetError("rank", f"rank = {rank!r} is not allowed: allowed an integer >= 1")
    shapes = linear_shapes(c)
    limit = min(min(shapes[t]) for t in targets)
    if rank > limit:
        worst = min(targets, key=lambda t: min(shapes[t]))
        raise BudgetError("rank", f"rank = {rank} is larger than layer {worst} {shapes[worst][0]}x"
                                  f"{shapes[worst][1]}: allowed 1..{limit}")


def _check_int(field: str, v, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise BudgetError(field, f"{field} = {v!r} is not allowed: allowed an integer {lo}..{hi}")
    return v


def lora_per_layer(c: ArchConfig, rank: int, targets: tuple[str, ...], method: str = "lora") -> dict[str, int]:
    """Trainable count of each targeted linear in ONE decoder layer."""
    out = {}
    for name in targets:
        o, i = linear_shapes(c)[name]
        n = rank * (i + o)
        if method == "dora":
            n += o                       # magnitude vector m, one entry per output feature
        elif method == "adalora":
            n += rank                    # the singular values lora_E (r, 1)
        out[name] = n
    return out


def vector_method_params(c: ArchConfig, method: str, rank: int, targets, feedforward) -> dict:
    """(IA)³ and VeRA: a vector per targeted linear (VeRA: two, plus the shared frozen projections)."""
    tg = parse_targets(targets)
    shapes = linear_shapes(c)
    if method == "ia3":
        # default: PEFT's for Llama (down_proj is the feed-forward one) when it is targeted; "" = none
        ff = (tuple(n for n in IA3_FEEDFORWARD if n in tg) if feedforward is None
              else parse_targets(feedforward) if feedforward else ())
        if not set(ff) <= set(tg):
            raise BudgetError("feedforward", f"feedforward = {','.join(ff)} is not allowed: allowed a subset of "
                                             f"targets ({','.join(tg)})")
        per = {n: shapes[n][1] if n in ff else shapes[n][0] for n in tg}     # (1, in) or (out, 1)
        return {"trainable": c.n_layers * sum(per.values()), "per_layer": per, "targets": tg, "feedforward": ff,
                "formula": f"L * (sum of out over {','.join(n for n in tg if n not in ff) or '-'} + sum of in "
                           f"over {','.join(ff) or '-'})"}
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= MAX_RANK:
        raise BudgetError("rank", f"rank = {rank!r} is not allowed: allowed an integer 1..{MAX_RANK}")
    per = {n: shapes[n][0] + rank for n in tg}
    projections = rank * max(shapes[n][1] for n in tg) + max(shapes[n][0] for n in tg) * rank
    return {"trainable": c.n_layers * sum(per.values()), "per_layer": per, "targets": tg, "rank": rank,
            "frozen_extra": projections,
            "formula": f"L * sum over {','.join(tg)} of (out + r), r={rank}; frozen shared A, B: "
                       f"r*max_in + max_out*r = {projections:,}"}


def trainable_params(c: ArchConfig, method: str, rank: int = 16, targets="all-linear", n_tokens: int = 20,
                     prefix_projection: bool = False, encoder_hidden: int | None = None,
                     adapter_size: int = 64, adapter_layers: int | None = None, adapter_len: int = 10,
                     train_layernorm: bool = False, feedforward=None) -> dict:
    """``{"trainable": N, "formula": text, "per_layer": {...}, "targets": (...)}`` for ``method``."""
    if method not in METHODS:
        raise BudgetError("method", f"method = {method!r} is not known: allowed {', '.join(METHODS)}")
    h, L, kvd = c.hidden_size, c.n_layers, c.kv_dim
    if method == "full":
        return {"trainable": total_params(c), "formula": "every parameter", "per_layer": {}, "targets": ()}
    if method in LORA_LIKE:
        tg = parse_targets(targets)
        check_rank(c, rank, tg)
        per = lora_per_layer(c, rank, tg, method)
        extra = {"dora": " + out (magnitude)", "adalora": " + r (lora_E)"}.get(method, "")
        return {"trainable": L * sum(per.values()), "per_layer": per, "targets": tg, "rank": rank,
                "formula": f"L * sum over {','.join(tg)} of r*(in+out){extra}, r={rank}"}
    if method in VECTOR_METHODS:
        return vector_method_params(c, method, rank, targets, feedforward)
    if method == "prompt":
        n = _check_int("n_tokens", n_tokens, 1, MAX_TOKENS)
        return {"trainable": n * h, "per_layer": {}, "targets": (), "formula": f"n_tokens*h = {n}*{h}"}
    if method == "prefix":
        n = _check_int("n_tokens", n_tokens, 1, MAX_TOKENS)
        base = n * L * 2 * kvd
        if not prefix_projection:
            return {"trainable": base, "per_layer": {}, "targets": (),
                    "formula": f"n*L*2*(kv_heads*head_dim) = {n}*{L}*2*{kvd} (GQA: per KV head)"}
        e = kvd if encoder_hidden is None else _check_int("encoder_hidden", encoder_hidden, 1, 1 << 16)
        mlp = n * kvd + kvd * e + e + e * (L * 2 * kvd) + L * 2 * kvd
        return {"trainable": mlp, "per_layer": {}, "targets": (), "stored_after_training": base,
                "formula": f"P-tuning v2 reparam: n*kd + kd*e + e + e*(2*L*kd) + 2*L*kd, kd={kvd}, e={e}"}
    if method == "houlsby":
        m = _check_int("adapter_size", adapter_size, 1, h)
        per = 2 * (2 * h * m + h + m) + (2 * h if train_layernorm else 0)   # + the two RMSNorm weights
        return {"trainable": L * per, "per_layer": {"adapters": per}, "targets": (), "adapter_size": m,
                "formula": f"L*(2*(2*h*m + h + m){' + 2*h norms' if train_layernorm else ''}), h={h}, m={m}"}
    # llama-adapter
    la = L if adapter_layers is None else _check_int("adapter_layers", adapter_layers, 1, L)
    n = _check_int("adapter_len", adapter_len, 1, MAX_TOKENS)
    return {"trainable": la * n * h + la, "per_layer": {"prompt+gate": n * h + 1}, "targets": (),
            "formula": f"L_a*len*h + L_a gates = {la}*{n}*{h} + {la}"}
