"""Merging LoRA task adapters: task arithmetic, TIES and DARE on the delta weights, and peft's A/B combinations.

A LoRA adapter trained on task t changes each targeted matrix by its task vector (Ilharco et al. 2023,
arXiv:2212.04089, "Editing models with task arithmetic"):

    τ_t = ΔW_t = s_t · B_t A_t            (out, in), s_t = lora_alpha / r

    task arithmetic   ΔW = Σ_t w_t τ_t
    TIES-merging      (Yadav et al. 2023, arXiv:2306.01708, §3)
        1. trim        τ̂_t = keep the top `density` fraction of |τ_t| entries, zero the rest
        2. elect sign  γ = sign(Σ_t w_t τ̂_t)   ("total": the sign of the summed mass; "frequency": of the count)
        3. disjoint    ΔW = Σ_t w_t τ̂_t·[sign τ̂_t = γ]  /  #{t : sign τ̂_t = γ}   (mean over the agreeing tasks)
    DARE              (Yu et al. 2024, arXiv:2311.03099, §4.1): drop each entry with rate p = 1 − density and
                       rescale the survivors by 1/(1 − p), so E[τ̃_t] = τ_t;  then task arithmetic (dare_linear)
                       or TIES' elect + disjoint merge (dare_ties).

            τ_topic ─┐   trim      elect sign    disjoint mean
                     ├──► τ̂ ──────►  γ = ±1  ──────►  ΔW  ──►  W0 + ΔW   (one merged model, both tasks)
            τ_sent  ─┘   (or DARE's drop + 1/(1−p))

`combine(...)` does this on any list of same-shape tensors (the functions mirror peft.utils.merge_utils,
with DARE's mask drawn from an explicit `torch.Generator`, so a merge is reproducible from its seed).
`merged_deltas(...)` applies it to whole adapters, matrix by matrix, on ΔW: the papers' definition.

peft's `LoraModel.add_weighted_adapter` works on the factors instead (peft/tuners/lora/model.py):
    "linear", "ties", "dare_*", "magnitude_prune"   combine A's with weights sign·√|w·s| and B's with √|w·s|,
        then use (Σ B')(Σ A'): cheap, same rank, but the cross terms B_i A_j make it only an approximation of
        task arithmetic, and TIES/DARE then trim the factors, not ΔW;
    "cat"    A = [w_1 s_1 A_1; w_2 s_2 A_2], B = [B_1 B_2]: exactly Σ w_t τ_t, at rank Σ r_t;
    "svd" (and "ties_svd", "dare_*_svd", …)   combine ΔW, then keep its top-`svd_rank` singular triplets.
`add_weighted_adapter(...)` reproduces those, so a merged adapter can be installed with `install` and saved
in PEFT's format (lora_alpha = r, scaling 1, as peft writes it).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

SIGN_METHODS = ("total", "frequency")
DELTA_METHODS = ("task_arithmetic", "magnitude_prune", "ties", "dare_linear", "dare_ties")
FACTOR_METHODS = ("linear", "magnitude_prune", "ties", "dare_linear", "dare_ties")
SVD_METHODS = ("svd", "magnitude_prune_svd", "ties_svd", "dare_linear_svd", "dare_ties_svd")
COMBINATION_TYPES = FACTOR_METHODS + ("cat",) + SVD_METHODS


class LoraFactors(NamedTuple):
    """One adapted matrix of one adapter: ΔW = scaling · B @ A."""
    A: torch.Tensor          # (r, in)
    B: torch.Tensor          # (out, r)
    scaling: float

    def delta(self) -> torch.Tensor:
        return self.scaling * (self.B.float() @ self.A.float())           # (out, in)


# ---------------------------------------------------------------------------------------------- tensor level
def _check_density(density: float | None, method: str) -> float:
    if density is None or not 0.0 <= float(density) <= 1.0:
        raise ValueError(f"density={density!r}: {method} needs a fraction kept in 0..1")
    return float(density)


def trim(tensor: torch.Tensor, density: float) -> torch.Tensor:
    """TIES step 1: keep the k = ⌊density · numel⌋ entries of largest |value| (topk, as peft), zero the rest."""
    if density >= 1:
        return tensor
    flat = tensor.reshape(-1)
    keep = torch.zeros_like(flat)
    keep[torch.topk(flat.abs(), k=int(density * flat.numel()), largest=True).indices] = 1
    return tensor * keep.view_as(tensor)


def dare_drop(tensor: torch.Tensor, density: float, rescale: bool = True,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """DARE: keep each entry with probability density = 1 − p (Bernoulli mask), divide survivors by density."""
    if density >= 1:
        return tensor
    mask = torch.bernoulli(torch.full_like(tensor, density), generator=generator)
    dropped = tensor * mask
    return dropped / density if rescale else dropped


def sign_conflicts(a: torch.Tensor, b: torch.Tensor, density: float) -> tuple[int, int]:
    """(entries both trims keep, those among them with opposite signs): the interference TIES resolves."""
    kept = (trim(a, density) != 0) & (trim(b, density) != 0)
    return int(kept.sum()), int((kept & (a.sign() != b.sign())).sum())


def elect_sign(stacked: torch.Tensor, method: str = "total") -> torch.Tensor:
    """TIES step 2 on (T, …) stacked task tensors: True where an entry agrees with the elected sign γ
    (γ = +1 on a tie, as peft). "total": γ = sign Σ_t τ_t; "frequency": γ = sign Σ_t sign τ_t."""
    if method not in SIGN_METHODS:
        raise ValueError(f"majority_sign_method={method!r}: allowed one of {SIGN_METHODS}")
    sign = stacked.sign()
    mass = stacked.sum(0) if method == "total" else sign.sum(0)
    return sign == torch.where(mass >= 0, 1, -1)


def disjoint_merge(stacked: torch.Tensor, agree: torch.Tensor) -> torch.Tensor:
    """TIES step 3: mean over the tasks that agree with γ, per entry (an entry nobody keeps stays 0)."""
    return (stacked * agree).sum(0) / agree.sum(0).clamp(min=1.0)


def _weighted(stacked: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return stacked * weights.to(stacked).view(-1, *([1] * (stacked.dim() - 1)))   # (T, …) · w_t


def combine(tensors: list[torch.Tensor], weights, method: str, density: float | None = None,
            majority_sign_method: str = "total", generator: torch.Generator | None = None) -> torch.Tensor:
    """Merge same-shape task tensors with `method` (DELTA_METHODS; "linear" is an alias of task arithmetic)."""
    weights = torch.as_tensor(weights, dtype=torch.float32)
    if len(tensors) != len(weights) or not tensors:
        raise ValueError(f"weights={weights.tolist()}: need one weight per task tensor ({len(tensors)})")
    if method in ("task_arithmetic", "linear"):
        return _weighted(torch.stack(tensors), weights).sum(0)
    if method not in DELTA_METHODS:
        raise ValueError(f"method={method!r}: allowed one of {DELTA_METHODS + ('linear',)}")
    density = _check_density(density, method)
    if method in ("magnitude_prune", "ties"):
        stacked = torch.stack([trim(t, density) for t in tensors])
    else:
        stacked = torch.stack([dare_drop(t, density, True, generator) for t in tensors])
    if method in ("magnitude_prune", "dare_linear"):
        return _weighted(stacked, weights).sum(0)
    agree = elect_sign(stacked, majority_sign_method)          # elected on the unweighted trimmed tensors (peft)
    return disjoint_merge(_weighted(stacked, weights), agree)


# ---------------------------------------------------------------------------------------------- adapter level
Adapter = dict[str, LoraFactors]      # module name -> factors


def factors_from_model(model: nn.Module) -> Adapter:
    """Detached copies of every LoraLinear's (A, B, scaling) in `model` (ours; plain LoRA / rsLoRA)."""
    from labs.methods.lora import lora_layers

    out = {}
    for name, m in lora_layers(model).items():
        if m.use_dora:
            raise ValueError(f"{name}: DoRA's magnitude rescales W0 + sBA, so its update is not a task vector "
                             f"s·BA; merge plain LoRA adapters (use_dora=False)")
        out[name] = LoraFactors(m.lora_A.weight.detach().clone(), m.lora_B.weight.detach().clone(), m.scaling)
    if not out:
        raise ValueError("factors_from_model: the model has no LoRA layer; call labs.methods.lora.apply first")
    return out


def factors_from_dir(path) -> Adapter:
    """The factors of a PEFT-format LoRA directory (ours or peft's), without building a model."""
    from pathlib import Path

    from labs.methods.io import ADAPTER_CONFIG, ADAPTER_WEIGHTS, PEFT_PREFIX, read_json, read_tensors

    path = Path(path)
    cfg = read_json(path / ADAPTER_CONFIG)
    if cfg.get("peft_type") != "LORA" or cfg.get("use_dora"):
        raise ValueError(f"{path / ADAPTER_CONFIG}: peft_type={cfg.get('peft_type')!r}, use_dora="
                         f"{cfg.get('use_dora')!r}; allowed a plain LoRA adapter")
    from labs.methods.lora import LoraConfig

    scaling = LoraConfig(r=int(cfg["r"]), lora_alpha=float(cfg["lora_alpha"]),
                         use_rslora=bool(cfg.get("use_rslora"))).scaling
    tensors = read_tensors(path / ADAPTER_WEIGHTS)
    out = {}
    for key, A in tensors.items():
        if key.endswith(".lora_A.weight"):
            name = key[len(PEFT_PREFIX):-len(".lora_A.weight")]
            out[name] = LoraFactors(A, tensors[key.replace(".lora_A.", ".lora_B.")], scaling)
    return out


def _names(adapters: list[Adapter]) -> list[str]:
    return list(dict.fromkeys(n for a in adapters for n in a))      # union, first-seen order


def merged_deltas(adapters: list[Adapter], weights, method: str = "task_arithmetic", density: float | None = None,
                  majority_sign_method: str = "total", generator: torch.Generator | None = None
                  ) -> dict[str, torch.Tensor]:
    """{module: merged ΔW (out, in)}: `combine` applied to the task vectors s·BA of each matrix
    (an adapter that does not target a matrix contributes a zero task vector there)."""
    out = {}
    for name in _names(adapters):
        deltas = [a[name].delta() if name in a else None for a in adapters]
        ref = next(d for d in deltas if d is not None)
        deltas = [torch.zeros_like(ref) if d is None else d for d in deltas]
        out[name] = combine(deltas, weights, method, density, majority_sign_method, generator)
    return out


@torch.no_grad()
def apply_deltas(model: nn.Module, deltas: dict[str, torch.Tensor]) -> nn.Module:
    """W ← W + ΔW for each named linear of a plain (adapter-free) model: the merged model, zero overhead."""
    for name, delta in deltas.items():
        w = model.get_submodule(name).weight
        w.add_(delta.to(device=w.device, dtype=w.dtype))
    return model


def add_weighted_adapter(adapters: list[Adapter], weights, combination_type: str = "svd",
                         svd_rank: int | None = None, density: float | None = None,
                         majority_sign_method: str = "total", svd_clamp: float | None = None,
                         generator: torch.Generator | None = None) -> tuple[Adapter, int]:
    """peft's `add_weighted_adapter` on our factors: ({module: LoraFactors(A, B, scaling=1)}, new r).
    Modules are visited in the order given (pass them in the model's module order to match peft's RNG use)."""
    if combination_type not in COMBINATION_TYPES:
        raise ValueError(f"combination_type={combination_type!r}: allowed one of {COMBINATION_TYPES}")
    if len(weights) != len(adapters):
        raise ValueError(f"weights={list(weights)}: need one weight per adapter ({len(adapters)})")
    if len(adapters) == 1:
        combination_type = "linear"
    ranks = [next(iter(a.values())).A.shape[0] for a in adapters]
    if combination_type in FACTOR_METHODS and len(set(ranks)) != 1:
        raise ValueError(f"combination_type={combination_type!r} needs equal ranks; got r={ranks} (use cat or svd)")
    new_r = sum(ranks) if combination_type == "cat" else (
        (svd_rank or max(ranks)) if combination_type in SVD_METHODS else ranks[0])
    out: Adapter = {}
    for name in _names(adapters):
        present = [(a[name], w) for a, w in zip(adapters, weights) if name in a]
        if combination_type == "cat":
            A = torch.cat([f.A * w * f.scaling for f, w in present], 0)          # (Σr, in)
            B = torch.cat([f.B for f, _ in present], 1)                          # (out, Σr)
            A = torch.cat([A, A.new_zeros(new_r - A.shape[0], A.shape[1])], 0)    # pad if a module was missing
            B = torch.cat([B, B.new_zeros(B.shape[0], new_r - B.shape[1])], 1)
        elif combination_type in SVD_METHODS:
            base = "task_arithmetic" if combination_type == "svd" else combination_type[:-len("_svd")]
            delta = combine([f.delta() for f, _ in present], [w for _, w in present], base, density,
                            majority_sign_method, generator)
            B, A = _svd_factors(delta, new_r, svd_clamp)
        else:
            ws = [w * f.scaling for f, w in present]
            w_A = [math.copysign(math.sqrt(abs(x)), x) for x in ws]              # sign on A only
            w_B = [math.sqrt(abs(x)) for x in ws]
            A = combine([f.A for f, _ in present], w_A, combination_type, density, majority_sign_method, generator)
            B = combine([f.B for f, _ in present], w_B, combination_type, density, majority_sign_method, generator)
        out[name] = LoraFactors(A, B, 1.0)
    return out, new_r


def _svd_factors(delta: torch.Tensor, r: int, clamp: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Best rank-r factors of ΔW (Eckart–Young): B = U_r·diag(S_r) (out, r), A = Vh_r (r, in)."""
    U, S, Vh = torch.linalg.svd(delta, full_matrices=True)
    B, A = U[:, :r] @ torch.diag(S[:r]), Vh[:r, :]
    if clamp is not None:
        hi = torch.quantile(torch.cat([B.flatten(), A.flatten()]), clamp)
        B, A = B.clamp(-hi, hi), A.clamp(-hi, hi)
    return B, A


def install(model: nn.Module, factors: Adapter, r: int) -> nn.Module:
    """Put a merged adapter on a fresh base: LoRA with r = lora_alpha = `r` (scaling 1, as peft writes a merged
    adapter) on exactly the merged modules, weights copied in. `labs.methods.io.save` then writes PEFT's format."""
    from labs.methods import lora

    lora.apply(model, r=r, lora_alpha=r, target_modules=list(factors))
    layers = lora.lora_layers(model)
    with torch.no_grad():
        for name, f in factors.items():
            layers[name].lora_A.weight.copy_(f.A)
            layers[name].lora_B.weight.copy_(f.B)
    return model


def sparsity_report(deltas: dict[str, torch.Tensor]) -> dict:
    """Fraction of exactly-zero entries and the Frobenius norm over all merged matrices."""
    zeros = sum(int((d == 0).sum()) for d in deltas.values())
    total = sum(d.numel() for d in deltas.values())
    norm = math.sqrt(sum(float(d.float().pow(2).sum()) for d in deltas.values()))
    return {"zero_fraction": zeros / max(total, 1), "norm": norm}
