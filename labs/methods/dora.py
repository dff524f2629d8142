"""DoRA: weight-decomposed low-rank adaptation (Liu et al. 2024, arXiv:2402.09353).

    W0 = m · V / ||V||            m: magnitude (out,)    V / ||V||: direction (out, in), unit rows
    W' = m · (W0 + s·B A) / ||W0 + s·B A||              only the direction gets the LoRA update

PEFT's convention (peft/tuners/lora/dora.py), followed here exactly: one magnitude per OUTPUT ROW
(the paper writes column norms of a (d, k) matrix used as x W; torch stores W as (out, in), so "column" of
the paper = row here), initialised to ||W0 + s·B A||_row (= ||W0||_row when B = 0, so W' = W0 at init).

Section 4.3: the norm ||W0 + s·B A|| is treated as a constant in the backward pass (detached), which
saves memory and barely changes accuracy. The forward is then

    y = (m / ||W0 + s·B A||) ⊙ (x W0ᵀ + s · (x Aᵀ) Bᵀ) + b

computed here with ONE fused LoRA matmul (peftlab_kernels.lora.lora_linear) and one (out,)-vector rescale;
PEFT computes the base product, then the LoRA product, then rebuilds B·A through an identity matmul.

This is a strategy object used by `LoraLinear` (labs/methods/lora.py) when `use_dora=True`.
"""
from __future__ import annotations

import torch
from torch import nn

from labs.methods.fused import fused_lora



def weight_norm(weight: torch.Tensor, lora_A: torch.Tensor, lora_B: torch.Tensor, scaling: float) -> torch.Tensor:
    """||W0 + s·B A|| per output row, detached (DoRA §4.3).  weight (out, in), A (r, in), B (out, r) -> (out,)."""
    with torch.no_grad():
        w = torch.addmm(weight, lora_B, lora_A, alpha=scaling)     # (out, in)  W0 + s·B A
        return torch.linalg.vector_norm(w, dim=1)                  # (out,)


class DoraStrategy:
    """Stateless helpers; the magnitude lives on the LoraLinear as `lora_magnitude_vector` (PEFT's key name)."""

    @staticmethod
    def init_magnitude(module: nn.Module) -> nn.Parameter:
        w = module.base_weight()
        return nn.Parameter(weight_norm(w, module.lora_A.weight, module.lora_B.weight, module.scaling).to(w.dtype))

    @staticmethod
    def forward(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """(…, in) -> (…, out).  With dropout in training, the LoRA branch sees dropout(x), the base sees x."""
        A, B, s = module.lora_A.weight, module.lora_B.weight, module.scaling
        weight = module.base_weight()                               # (out, in), frozen
        bias = module.base_layer.bias
        scale = module.lora_magnitude_vector / weight_norm(weight, A, B, s)   # (out,)  m / ||W0 + sBA||
        if module.training and module.dropout_p > 0:
            base = x @ weight.t()                                    # (…, out)
            lora = module.lora_B(module.lora_A(module.lora_dropout(x))) * s
            y = scale * (base + lora)
        else:
            y = scale * fused_lora(x, weight, None, A, B, s)      # (…, out) one fused pass
        return y + bias if bias is not None else y

    @staticmethod
    def merged_weight(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """(W', norm) with W' = m/||W0+sBA|| · (W0 + sBA); the norm is kept to undo the merge exactly."""
        w = module.base_weight()
        A, B, s = module.lora_A.weight, module.lora_B.weight, module.scaling
        with torch.no_grad():
            norm = weight_norm(w, A, B, s)
            factor = (module.lora_magnitude_vector / norm).unsqueeze(1)          # (out, 1)
            return factor * torch.addmm(w, B, A, alpha=s), norm

    @staticmethod
    def unmerged_weight(module: nn.Module, merged: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
        A, B, s = module.lora_A.weight, module.lora_B.weight, module.scaling
        with torch.no_grad():
            factor = (module.lora_magnitude_vector / norm).unsqueeze(1)          # (out, 1)
            return merged / factor - s * (B @ A)

    @staticmethod
    def magnitude_direction(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """(m, V/||V||) of the adapted weight W' (for the DoRA lab's ΔM / ΔD plot, paper Fig. 2):
        m = lora_magnitude_vector (out,), direction rows (out, in) of unit norm."""
        w = module.base_weight()
        A, B, s = module.lora_A.weight, module.lora_B.weight, module.scaling
        with torch.no_grad():
            v = torch.addmm(w, B, A, alpha=s)                                    # (out, in)
            return module.lora_magnitude_vector.detach().clone(), v / weight_norm(w, A, B, s).unsqueeze(1)


def delta_m_delta_d(m0: torch.Tensor, d0: torch.Tensor, m: torch.Tensor, d: torch.Tensor) -> tuple[float, float]:
    """Paper eq. (2)-(3), per weight matrix: ΔM = mean |m - m0|, ΔD = mean (1 - cos(d_row, d0_row))."""
    dm = (m - m0).abs().mean().item()
    dd = (1 - torch.nn.functional.cosine_similarity(d, d0, dim=1)).mean().item()
    return dm, dd


def decompose(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(m, direction) of any dense weight (out, in): used to measure full fine-tuning and LoRA the same way."""
    m = torch.linalg.vector_norm(weight, dim=1)                                  # (out,)
    return m, weight / m.unsqueeze(1)


def snapshot(model: nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{module name: (m, direction)} of every adapted linear's CURRENT weight, for ΔM/ΔD over training.
    DoRA layers report their learned magnitude; plain LoRA layers decompose W0 + s·B A the same way."""
    out = {}
    for name, mod in model.named_modules():
        if not getattr(mod, "is_adapter_layer", False) or not hasattr(mod, "lora_B"):
            continue
        if getattr(mod, "use_dora", False):
            out[name] = DoraStrategy.magnitude_direction(mod)
        elif hasattr(mod, "delta_weight"):
            with torch.no_grad():
                out[name] = decompose(mod.base_weight() + mod.delta_weight())
    return out
