"""(IA)³: Infused Adapter by Inhibiting and Amplifying Inner Activations (Liu et al. 2022, arXiv:2205.05638, §3.3).

A learned vector rescales activations element-wise; nothing else trains. Two placements, as in PEFT:

    attention-type target (k_proj, v_proj)        feed-forward target (down_proj)
    x ──► W0 (out, in) ──► ⊙ l (out,) ──► y        x ──► ⊙ l (in,) ──► W0 (out, in) ──► y
          y = (x W0ᵀ + b) ⊙ l                            y = (x ⊙ l) W0ᵀ + b

    l = 1 at init → the model starts exactly at the base.        trainable = Σ out (attention) + Σ in (ffn)

The paper rescales the keys, the values and the FFN's intermediate activation (the input of the second FFN
matrix): for a Llama block that is k_proj, v_proj (output side) and down_proj (input side), PEFT's default for
Llama. It trains about 0.01 % of a 3B model, ~10× fewer parameters than LoRA at r = 1 on the same targets.

Merge: scaling a row (attention) or a column (ffn) of W0 is the same linear map, so l folds into the weight:
W0 ← W0 · diag-scale, bias ← bias ⊙ l for attention targets (unmerge divides, exact only while l ≠ 0).

PEFT stores `ia3_l` as (out, 1) for attention targets and (1, in) for feed-forward targets; so do we
(peft/tuners/ia3/layer.py `IA3Layer.update_layer`), so the tensors save under PEFT's names unchanged.

    model = apply(model, target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"])
"""
from __future__ import annotations

import functools
import re
from dataclasses import asdict, dataclass, field
from typing import Union

import torch
from torch import nn

from labs.methods import inject

DEFAULT_TARGETS = ["k_proj", "v_proj", "down_proj"]
DEFAULT_FEEDFORWARD = ["down_proj"]


@dataclass
class IA3Config:
    target_modules: Union[str, list] = field(default_factory=lambda: list(DEFAULT_TARGETS))
    feedforward_modules: Union[str, list] = field(default_factory=lambda: list(DEFAULT_FEEDFORWARD))
    targets: list = field(default_factory=list)          # resolved full names (filled by apply)
    feedforward: list = field(default_factory=list)      # resolved full names of the feed-forward targets

    def __post_init__(self):
        ff = self.feedforward_modules
        if isinstance(ff, str):
            try:
                re.compile(ff)
            except re.error as err:
                raise ValueError(f"feedforward_modules={ff!r} is not a valid regex ({err})") from err
        elif not isinstance(ff, (list, tuple)) or not all(isinstance(t, str) for t in ff):
            raise ValueError(f"feedforward_modules={ff!r}: allowed a list of module names or a regex string")
        if isinstance(ff, (list, tuple)) and isinstance(self.target_modules, (list, tuple)):
            extra = sorted(set(ff) - set(self.target_modules))
            if extra:
                raise ValueError(f"feedforward_modules={list(ff)!r}: {extra} not in target_modules="
                                 f"{list(self.target_modules)!r}; feedforward_modules must be a subset")


def is_feedforward(name: str, feedforward_modules) -> bool:
    """PEFT's rule (peft/tuners/ia3/model.py `_check_target_module_feedforward`): a regex string must fullmatch
    the full name; a list entry matches when the full name ends with it."""
    if isinstance(feedforward_modules, str):
        return bool(re.fullmatch(feedforward_modules, name))
    return any(name.endswith(t) for t in feedforward_modules)


class IA3Linear(nn.Module):
    """A frozen linear (`base_layer`) whose output (attention) or input (feed-forward) is rescaled by `ia3_l`."""

    is_adapter_layer = True
    adapter_names = ("ia3_l",)

    def __init__(self, base_layer: nn.Linear, is_feedforward: bool):
        super().__init__()
        self.base_layer = base_layer
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        self.is_feedforward = is_feedforward
        shape = (1, self.in_features) if is_feedforward else (self.out_features, 1)
        w = base_layer.weight
        self.ia3_l = nn.Parameter(torch.ones(shape, dtype=w.dtype, device=w.device))   # (1, in) or (out, 1)
        self.merged = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base_layer(x)
        scale = self.ia3_l.flatten()
        if self.is_feedforward:
            return self.base_layer(x * scale)                     # (…, in) ⊙ (in,)
        return self.base_layer(x) * scale                         # (…, out) ⊙ (out,)

    def _weight_scale(self) -> torch.Tensor:
        # W0 is (out, in): an attention target scales rows (out, 1), a feed-forward target columns (1, in)
        return self.ia3_l.detach()

    @torch.no_grad()
    def merge(self) -> None:
        if self.merged:
            return
        self.base_layer.weight.mul_(self._weight_scale().to(self.base_layer.weight.dtype))
        if not self.is_feedforward and self.base_layer.bias is not None:
            self.base_layer.bias.mul_(self.ia3_l.detach().flatten().to(self.base_layer.bias.dtype))
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if not self.merged:
            return
        if bool((self.ia3_l == 0).any()):
            raise ValueError("unmerge: an ia3_l entry is 0, the merged weight lost that row/column for good")
        self.base_layer.weight.div_(self._weight_scale().to(self.base_layer.weight.dtype))
        if not self.is_feedforward and self.base_layer.bias is not None:
            self.base_layer.bias.div_(self.ia3_l.detach().flatten().to(self.base_layer.bias.dtype))
        self.merged = False

    def extra_repr(self) -> str:
        return f"feedforward={self.is_feedforward}, ia3_l={tuple(self.ia3_l.shape)}"


def ia3_layers(model: nn.Module) -> dict[str, IA3Linear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, IA3Linear)}


def apply(model: nn.Module, target_modules=None, feedforward_modules=None) -> nn.Module:
    """Freeze `model` and wrap each targeted linear in an IA3Linear, in place; returns the same model.
    `feedforward_modules` (a subset of the targets) get their input rescaled, the others their output."""
    cfg = IA3Config(target_modules=list(DEFAULT_TARGETS) if target_modules is None else target_modules,
                    feedforward_modules=list(DEFAULT_FEEDFORWARD) if feedforward_modules is None
                    else feedforward_modules)
    all_linears = inject.linear_names(model)
    chosen = set(inject.match_targets(model, cfg.target_modules))
    ff = sorted(n for n in all_linears if is_feedforward(n, cfg.feedforward_modules))
    outside = [n for n in ff if n not in chosen]
    if outside:
        raise ValueError(f"feedforward_modules={cfg.feedforward_modules!r} matches {outside[:3]}, which "
                         f"target_modules={cfg.target_modules!r} does not select; it must be a subset")
    cfg.feedforward = ff
    cfg.targets = inject.inject(model, cfg.target_modules, lambda n, m: IA3Linear(m, n in ff))
    cfg.target_modules, cfg.feedforward_modules = peft_target_lists(all_linears, cfg.targets, ff)
    model.peft_lab_config = {"method": "ia3", **asdict(cfg)}
    return model


def peft_target_lists(all_linears: list[str], targets: list[str], ff: list[str]) -> tuple[list, list]:
    """Compact `target_modules` / `feedforward_modules` lists that peft resolves to the same modules; peft also
    requires the second to be a subset of the first, else both fall back to full names."""
    t = inject.compact_targets(all_linears, targets)
    f = inject.compact_targets(targets, ff) if ff else []
    if set(f) <= set(t) and all(is_feedforward(n, f) == (n in ff) for n in targets):
        return t, f
    return sorted(targets), sorted(ff)


# fold every ia3_l into its weight (unmerge divides it out again); merge_and_unload: plain linears, no adapter code
merge = functools.partial(inject.merge_layers, layers=ia3_layers)
unmerge = functools.partial(inject.unmerge_layers, layers=ia3_layers)
merge_and_unload = functools.partial(inject.unload_layers, layers=ia3_layers)


# -- PEFT format (labs.methods.io) --------------------------------------------------------------------------
PEFT_TYPE = "IA3"


def peft_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """`<module>.ia3_l` for every IA3Linear (live parameters); io adds PEFT's "base_model.model." prefix."""
    return {f"{name}.ia3_l": m.ia3_l for name, m in ia3_layers(model).items()}


def peft_config(cfg: dict) -> dict:
    return {"peft_type": PEFT_TYPE, "target_modules": cfg["target_modules"],
            "feedforward_modules": cfg["feedforward_modules"], "fan_in_fan_out": False,
            "init_ia3_weights": True, "modules_to_save": None, "exclude_modules": None}


def apply_kwargs_from_peft(cfg: dict) -> dict:
    """The `apply` arguments for a PEFT IA3 adapter_config.json."""
    if cfg.get("fan_in_fan_out"):
        raise ValueError("fan_in_fan_out=True is not supported (GPT-2 Conv1D); allowed False")
    return {"target_modules": cfg["target_modules"], "feedforward_modules": cfg["feedforward_modules"]}
