"""LoRA: low-rank adaptation (Hu et al. 2021, arXiv:2106.09685), with rsLoRA, DoRA and LoRA+ switches.

         x (…, in)
         │
    ┌────┴─────────────────────────┐
    │                              │  dropout (training only)
    W0 (out, in), frozen           A (r, in)    init: kaiming-uniform (PEFT) or N(0, 1/r)
    │                              │
    │                              B (out, r)   init: 0   → B·A = 0, the model starts exactly at the base
    │                              │  × scaling = lora_alpha / r   (rsLoRA: lora_alpha / √r, Kalajdzievski 2023)
    └──────────── + ───────────────┘
                  y = x W0ᵀ + b + scaling · (x Aᵀ) Bᵀ

Hot path: one call to `peftlab_kernels.lora.lora_linear` (fused, hand-written backward) when there is no dropout
or in eval mode; PEFT's plain formula `base(x) + lora_B(lora_A(dropout(x))) * scaling` otherwise.

Data-aware inits (labs.methods.lora_init): init="pissa" puts W's top-r singular triplets into B·A and the
residual into the base (starts exactly at the base); init="loftq" makes the base a 4-bit Q and B·A its rank-r
correction, alternating quantize/SVD `loftq_iter` times.

Merge: W0 ← W0 + scaling · B A (zero inference overhead); unmerge subtracts it again.
LoRA+ (Hayou et al. 2024, arXiv:2402.12354): B gets lr · ratio, A gets lr (ratio 16 by default).

Public API (names follow PEFT so the code transfers):
    model = apply(model, r=8, lora_alpha=16, target_modules="all-linear", use_rslora=False, use_dora=False)
    merge(model) / unmerge(model); PEFT-format files: labs.methods.io.save_lora_peft / load_lora_peft
"""
from __future__ import annotations

import functools
import itertools
import math
from dataclasses import asdict, dataclass, field
from typing import Union

import torch
from torch import nn

from labs.methods import inject
from labs.methods.fused import fused_lora
from labs.methods.dora import DoraStrategy

INITS = ("standard", "gaussian", "a_zero_b_random", "both_zero", "both_random", "pissa", "loftq")
DATA_INITS = ("pissa", "loftq")     # from the SVD of the base weight (labs.methods.lora_init); they rewrite the base


@dataclass
class LoraConfig:
    r: int = 8
    lora_alpha: float = 16
    target_modules: Union[str, list] = "all-linear"
    lora_dropout: float = 0.0
    use_rslora: bool = False
    use_dora: bool = False
    init: str = "standard"
    loftq_iter: int = 1                           # LoftQ's alternating quantize/SVD rounds (init="loftq" only)
    targets: list = field(default_factory=list)   # resolved full module names (filled by apply)

    def __post_init__(self):
        if not isinstance(self.r, int) or isinstance(self.r, bool) or self.r < 1:
            raise ValueError(f"r={self.r!r}: allowed an integer >= 1")
        if not isinstance(self.lora_alpha, (int, float)) or self.lora_alpha <= 0:
            raise ValueError(f"lora_alpha={self.lora_alpha!r}: allowed a number > 0")
        if not 0.0 <= float(self.lora_dropout) < 1.0:
            raise ValueError(f"lora_dropout={self.lora_dropout!r}: allowed 0 <= p < 1")
        if self.init not in INITS:
            raise ValueError(f"init={self.init!r}: allowed one of {INITS}")
        if not isinstance(self.loftq_iter, int) or isinstance(self.loftq_iter, bool) or not 1 <= self.loftq_iter <= 20:
            raise ValueError(f"loftq_iter={self.loftq_iter!r}: allowed an integer 1..20")

    @property
    def scaling(self) -> float:
        return self.lora_alpha / math.sqrt(self.r) if self.use_rslora else self.lora_alpha / self.r


def init_lora_weights(A: torch.Tensor, B: torch.Tensor, init: str) -> None:
    """The LoRA-init lab's five schemes. Only the first two start at the base AND can learn:
    standard        A ~ kaiming-uniform(a=√5) (nn.Linear default, as PEFT/loralib), B = 0
    gaussian        A ~ N(0, 1/r²) std 1/r (PEFT's init_lora_weights="gaussian"), B = 0
    a_zero_b_random A = 0, B random: starts at the base; ∂L/∂B = s·gᵀ(xAᵀ) = 0 at first, only A moves
    both_zero       A = B = 0: both gradients are 0 (each needs the other ≠ 0), it never learns
    both_random     A, B random: B·A ≠ 0, the model starts away from the pretrained base."""
    r = A.shape[0]
    with torch.no_grad():
        if init in ("standard", "both_random"):
            nn.init.kaiming_uniform_(A, a=math.sqrt(5))
        elif init == "gaussian":
            nn.init.normal_(A, std=1 / r)
        else:
            A.zero_()
        if init in ("a_zero_b_random", "both_random"):
            nn.init.kaiming_uniform_(B, a=math.sqrt(5))
        else:
            B.zero_()


class LoraLinear(nn.Module):
    """A frozen linear (`base_layer`) plus a trainable low-rank update. Key names match PEFT's."""

    is_adapter_layer = True
    adapter_names = ("lora_A", "lora_B", "lora_magnitude_vector")

    def __init__(self, base_layer: nn.Module, cfg: LoraConfig, loftq_quant: dict | None = None):
        super().__init__()
        self.base_layer = base_layer
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        self.r, self.lora_alpha, self.use_rslora, self.use_dora = cfg.r, cfg.lora_alpha, cfg.use_rslora, cfg.use_dora
        self.scaling = cfg.scaling
        self.dropout_p = float(cfg.lora_dropout)
        self.lora_dropout = nn.Dropout(cfg.lora_dropout) if cfg.lora_dropout > 0 else nn.Identity()
        dtype = self.compute_dtype()
        device = next(itertools.chain(base_layer.parameters(), base_layer.buffers())).device
        self.lora_A = nn.Linear(self.in_features, cfg.r, bias=False, dtype=dtype, device=device)   # (r, in)
        self.lora_B = nn.Linear(cfg.r, self.out_features, bias=False, dtype=dtype, device=device)  # (out, r)
        if cfg.init in DATA_INITS:                  # PiSSA / LoftQ: B·A from the SVD of W; the base is rewritten
            from labs.methods import lora_init
            if cfg.init == "pissa":
                lora_init.pissa_init(self)
            else:
                lora_init.loftq_init(self, cfg.loftq_iter, loftq_quant)
        else:
            init_lora_weights(self.lora_A.weight, self.lora_B.weight, cfg.init)
        self.dora = DoraStrategy if cfg.use_dora else None
        if self.dora is not None:
            self.lora_magnitude_vector = self.dora.init_magnitude(self)    # (out,)
        self.merged = False
        self._merge_state: torch.Tensor | None = None

    # -- base weight access (dense nn.Linear here; QLoRA's 4-bit base overrides via `dequantize`) --
    def compute_dtype(self) -> torch.dtype:
        return getattr(self.base_layer, "compute_dtype", None) or self.base_layer.weight.dtype

    def base_weight(self) -> torch.Tensor:
        deq = getattr(self.base_layer, "dequantize", None)
        return deq() if callable(deq) else self.base_layer.weight

    @property
    def is_quantized(self) -> bool:
        return callable(getattr(self.base_layer, "dequantize", None))

    def delta_weight(self) -> torch.Tensor:
        return self.scaling * (self.lora_B.weight @ self.lora_A.weight)   # (out, in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base_layer(x)
        if self.dora is not None:
            return self.dora.forward(self, x)
        dropout_on = self.training and self.dropout_p > 0
        if dropout_on or self.is_quantized:
            return self.base_layer(x) + self.lora_B(self.lora_A(self.lora_dropout(x))) * self.scaling
        return fused_lora(x, self.base_layer.weight, self.base_layer.bias,
                           self.lora_A.weight, self.lora_B.weight, self.scaling)

    @torch.no_grad()
    def merge(self) -> None:
        if self.merged:
            return
        if self.is_quantized:
            raise TypeError("merge: the base is 4-bit; use labs.methods.qlora.merge, which dequantizes first")
        w = self.base_layer.weight
        if self.dora is not None:
            new, self._merge_state = self.dora.merged_weight(self)
            w.copy_(new)
        else:
            w.add_(self.delta_weight().to(w.dtype))
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if not self.merged:
            return
        w = self.base_layer.weight
        if self.dora is not None:
            w.copy_(self.dora.unmerged_weight(self, w, self._merge_state))
            self._merge_state = None
        else:
            w.sub_(self.delta_weight().to(w.dtype))
        self.merged = False

    def extra_repr(self) -> str:
        return f"r={self.r}, lora_alpha={self.lora_alpha}, scaling={self.scaling:.4g}, dora={self.use_dora}"


def lora_layers(model: nn.Module) -> dict[str, LoraLinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, LoraLinear)}


def apply(model: nn.Module, r: int = 8, lora_alpha: float = 16, target_modules="all-linear",
          lora_dropout: float = 0.0, use_rslora: bool = False, use_dora: bool = False,
          init: str = "standard", loftq_iter: int = 1, loftq_quant: dict | None = None,
          linear_types: tuple[type, ...] = (nn.Linear,)) -> nn.Module:
    """Freeze `model` and wrap every targeted linear in a LoraLinear, in place; returns the same model.
    init="pissa" / "loftq" rewrite each targeted base weight (residual / 4-bit Q_T; see labs.methods.lora_init);
    `loftq_quant` ({"quant_type", "blocksize", "double_quant"}) sets LoftQ's 4-bit format (NF4, 64, DQ by default)."""
    cfg = LoraConfig(r=r, lora_alpha=lora_alpha, target_modules=target_modules, lora_dropout=lora_dropout,
                     use_rslora=use_rslora, use_dora=use_dora, init=init, loftq_iter=loftq_iter)
    all_linears = inject.linear_names(model, linear_types)
    cfg.targets = inject.inject(model, target_modules, lambda _n, m: LoraLinear(m, cfg, loftq_quant), linear_types)
    cfg.target_modules = inject.compact_targets(all_linears, cfg.targets)
    model.peft_lab_config = {"method": "dora" if use_dora else ("rslora" if use_rslora else "lora"), **asdict(cfg)}
    return model


# merge(model): W0 ← W0 + s·BA (DoRA: m/||·||·(W0 + sBA)) in every layer, the forward is the base's alone;
# unmerge(model) takes it out again; merge_and_unload(model): merged plain linears, no adapter code left
merge = functools.partial(inject.merge_layers, layers=lora_layers)
unmerge = functools.partial(inject.unmerge_layers, layers=lora_layers)
merge_and_unload = functools.partial(inject.unload_layers, layers=lora_layers)


def loraplus_param_groups(model: nn.Module, lr: float, ratio: float = 16.0, weight_decay: float = 0.0) -> list[dict]:
    """LoRA+ optimizer groups: lr_B = ratio · lr_A (Hayou et al. 2024). Other trainable params (A, DoRA m) get lr."""
    if ratio <= 0:
        raise ValueError(f"ratio={ratio!r}: allowed a number > 0 (LoRA+ uses 16; 1 is plain LoRA)")
    b_params, other = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (b_params if name.endswith("lora_B.weight") else other).append(p)
    if not b_params:
        raise ValueError("loraplus_param_groups: the model has no trainable lora_B; call lora.apply first")
    return [{"params": other, "lr": lr, "weight_decay": weight_decay, "name": "lora_A"},
            {"params": b_params, "lr": lr * ratio, "weight_decay": weight_decay, "name": "lora_B"}]
