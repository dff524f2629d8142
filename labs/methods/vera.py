"""VeRA: Vector-based Random Matrix Adaptation (Kopiczko et al. 2024, arXiv:2310.11454, §3).

LoRA's A and B become ONE pair of frozen random matrices shared by every adapted layer; each layer trains
only two scaling vectors:

         x (…, in)
         │
    ┌────┴───────────────────────────────────┐
    W0 (out, in), frozen                     A[:, :in]   (r, in)   shared, frozen, kaiming-uniform from a seed
    │                                        ⊙ λ_d (r,)            trained, init d_initial (0.1)
    │                                        B[:out, :]  (out, r)  shared, frozen, kaiming-uniform
    │                                        ⊙ λ_b (out,)          trained, init 0 → starts exactly at the base
    └──────────────── + ─────────────────────┘
          y = x W0ᵀ + b + λ_b ⊙ ((λ_d ⊙ (x Aᵀ)) Bᵀ)        ΔW = Λ_b B Λ_d A

A and B are drawn once, for the largest (out, in) among the targets, from `torch.Generator().manual_seed(
projection_prng_key)`; a smaller layer uses the top-left slice. Trainable per layer: out + r (LoRA: r·(in+out)),
so r can be large (the paper uses 256–1024) at a tiny parameter count. The seed regenerates A and B, so an
adapter file needs only the vectors; PEFT also saves A and B by default (`save_projection=True`), and so do we.

Matches PEFT (peft/tuners/vera/model.py `_init_vera_A_vera_B`, `_kaiming_init`; layer.py `Linear.forward`):
A first, then B, each U(−√(6/fan_in), √(6/fan_in)) from the same generator; PEFT names `vera_lambda_b`,
`vera_lambda_d`, and the shared `base_model.vera_A` / `base_model.vera_B` in the saved file.

    model = apply(model, r=256, target_modules=["q_proj", "v_proj"], projection_prng_key=0)
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field
from typing import Union

import torch
import torch.nn.functional as F
from torch import nn

from labs.methods import inject

DEFAULT_TARGETS = ["q_proj", "v_proj"]
PROJECTIONS = "vera_projections"          # the submodule of the model that holds the shared A and B


@dataclass
class VeraConfig:
    r: int = 256
    target_modules: Union[str, list] = field(default_factory=lambda: list(DEFAULT_TARGETS))
    projection_prng_key: int = 0
    vera_dropout: float = 0.0
    d_initial: float = 0.1
    targets: list = field(default_factory=list)   # resolved full module names (filled by apply)

    def __post_init__(self):
        if not isinstance(self.r, int) or isinstance(self.r, bool) or self.r < 1:
            raise ValueError(f"r={self.r!r}: allowed an integer >= 1")
        if not isinstance(self.projection_prng_key, int) or self.projection_prng_key < 0:
            raise ValueError(f"projection_prng_key={self.projection_prng_key!r}: allowed an integer >= 0")
        if not 0.0 <= float(self.vera_dropout) < 1.0:
            raise ValueError(f"vera_dropout={self.vera_dropout!r}: allowed 0 <= p < 1")
        if not isinstance(self.d_initial, (int, float)) or not math.isfinite(self.d_initial):
            raise ValueError(f"d_initial={self.d_initial!r}: allowed a finite number (the paper uses 0.1)")


def kaiming_uniform(shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """U(−b, b) with b = √3 · √2/√fan_in (gain √2), drawn from `generator`; fan_in = shape[1]."""
    bound = math.sqrt(3.0) * math.sqrt(2.0) / math.sqrt(shape[1])
    return torch.empty(shape).uniform_(-bound, bound, generator=generator)


class VeraProjections(nn.Module):
    """The shared frozen pair: vera_A (r, in_max), vera_B (out_max, r). Buffers, so they never train."""

    def __init__(self, r: int, in_max: int, out_max: int, seed: int):
        super().__init__()
        g = torch.Generator(device="cpu").manual_seed(seed)
        self.register_buffer("vera_A", kaiming_uniform((r, in_max), g))      # drawn first, as PEFT
        self.register_buffer("vera_B", kaiming_uniform((out_max, r), g))


class VeraLinear(nn.Module):
    """A frozen linear plus Λ_b B Λ_d A x with the shared A, B (held by reference, not as a submodule)."""

    is_adapter_layer = True
    adapter_names = ("vera_lambda_b", "vera_lambda_d")

    def __init__(self, base_layer: nn.Linear, projections: VeraProjections, cfg: VeraConfig):
        super().__init__()
        self.base_layer = base_layer
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        self.r = cfg.r
        self.__dict__["projections"] = projections        # shared: one copy in the model, moved with it
        w = base_layer.weight
        self.vera_lambda_b = nn.Parameter(torch.zeros(self.out_features, dtype=w.dtype, device=w.device))
        self.vera_lambda_d = nn.Parameter(torch.full((cfg.r,), float(cfg.d_initial), dtype=w.dtype,
                                                     device=w.device))
        self.vera_dropout = nn.Dropout(cfg.vera_dropout) if cfg.vera_dropout > 0 else nn.Identity()
        self.merged = False

    def sliced(self) -> tuple[torch.Tensor, torch.Tensor]:
        A = self.projections.vera_A[:, : self.in_features]          # (r, in)
        B = self.projections.vera_B[: self.out_features, :]         # (out, r)
        return A, B

    def delta_weight(self) -> torch.Tensor:
        A, B = self.sliced()
        return (self.vera_lambda_b[:, None] * B) @ (self.vera_lambda_d[:, None] * A)   # (out, in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base_layer(x)
        if self.merged:
            return y
        A, B = self.sliced()
        h = F.linear(self.vera_dropout(x).to(A.dtype), A) * self.vera_lambda_d   # (…, r)
        return (y + self.vera_lambda_b * F.linear(h, B)).to(y.dtype)               # (…, out)

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self.base_layer.weight.add_(self.delta_weight().to(self.base_layer.weight.dtype))
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.base_layer.weight.sub_(self.delta_weight().to(self.base_layer.weight.dtype))
            self.merged = False

    def extra_repr(self) -> str:
        return f"r={self.r}, in={self.in_features}, out={self.out_features} (A, B shared)"


def vera_layers(model: nn.Module) -> dict[str, VeraLinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, VeraLinear)}


def apply(model: nn.Module, r: int = 256, target_modules=None, projection_prng_key: int = 0,
          vera_dropout: float = 0.0, d_initial: float = 0.1) -> nn.Module:
    """Freeze `model`, draw the shared A, B from `projection_prng_key` for the largest targeted shape, and wrap
    every targeted linear in a VeraLinear, in place; returns the same model."""
    if hasattr(model, PROJECTIONS):
        raise ValueError("apply: the model already carries a VeRA adapter; load a fresh base model")
    cfg = VeraConfig(r=r, target_modules=list(DEFAULT_TARGETS) if target_modules is None else target_modules,
                     projection_prng_key=projection_prng_key, vera_dropout=vera_dropout, d_initial=d_initial)
    all_linears = inject.linear_names(model)
    names = inject.match_targets(model, cfg.target_modules)
    shapes = [model.get_submodule(n).weight.shape for n in names]
    out_max, in_max = max(s[0] for s in shapes), max(s[1] for s in shapes)
    projections = VeraProjections(cfg.r, in_max, out_max, cfg.projection_prng_key)
    w0 = model.get_submodule(names[0]).weight
    projections.to(device=w0.device, dtype=w0.dtype)      # PEFT casts A, B to the base layer's dtype too
    cfg.targets = inject.inject(model, cfg.target_modules, lambda _n, m: VeraLinear(m, projections, cfg))
    model.add_module(PROJECTIONS, projections)
    cfg.target_modules = inject.compact_targets(all_linears, cfg.targets)
    model.peft_lab_config = {"method": "vera", **asdict(cfg)}
    return model


merge = functools.partial(inject.merge_layers, layers=vera_layers)        # fold ΔW = Λ_b B Λ_d A into each weight
unmerge = functools.partial(inject.unmerge_layers, layers=vera_layers)


def merge_and_unload(model: nn.Module) -> nn.Module:
    """Fold ΔW = Λ_b B Λ_d A into each weight, put the plain linears back and drop the shared projections."""
    inject.unload_layers(model, vera_layers)
    delattr(model, PROJECTIONS)
    return model


# -- PEFT format (labs.methods.io) --------------------------------------------------------------------------
PEFT_TYPE = "VERA"
# PEFT saves the shared pair one level up ("base_model.vera_A"), outside "base_model.model."
SHARED_KEYS = {"vera_A": "base_model.vera_A", "vera_B": "base_model.vera_B"}


def peft_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """`<module>.vera_lambda_b` / `.vera_lambda_d` per layer (live parameters; io adds "base_model.model.")."""
    sd = {}
    for name, m in vera_layers(model).items():
        sd[f"{name}.vera_lambda_b"] = m.vera_lambda_b
        sd[f"{name}.vera_lambda_d"] = m.vera_lambda_d
    return sd


def shared_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The frozen projections under PEFT's full saved keys."""
    proj = getattr(model, PROJECTIONS)
    return {SHARED_KEYS["vera_A"]: proj.vera_A, SHARED_KEYS["vera_B"]: proj.vera_B}


def peft_config(cfg: dict) -> dict:
    return {"peft_type": PEFT_TYPE, "r": cfg["r"], "target_modules": cfg["target_modules"],
            "projection_prng_key": cfg["projection_prng_key"], "save_projection": True,
            "vera_dropout": cfg["vera_dropout"], "d_initial": cfg["d_initial"], "fan_in_fan_out": False,
            "bias": "none", "modules_to_save": None, "init_weights": True,
            "layers_to_transform": None, "layers_pattern": None}


def apply_kwargs_from_peft(cfg: dict) -> dict:
    """The `apply` arguments for a PEFT VERA adapter_config.json."""
    for key, ok in (("fan_in_fan_out", False), ("bias", "none"), ("modules_to_save", None),
                    ("layers_to_transform", None)):
        if cfg.get(key) not in (None, ok):
            raise ValueError(f"{key}={cfg[key]!r} is not supported; allowed {ok!r}")
    return {"r": int(cfg["r"]), "target_modules": cfg["target_modules"],
            "projection_prng_key": int(cfg.get("projection_prng_key", 0)),
            "vera_dropout": float(cfg.get("vera_dropout") or 0.0), "d_initial": float(cfg.get("d_initial", 0.1))}
