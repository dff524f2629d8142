"""GaLore: gradient low-rank projection (Zhao et al. 2024, arXiv:2403.03507, Algorithm 2). Full-parameter
training whose optimizer state lives in a rank-r subspace of each weight's gradient.

    G (m, n) = ∂L/∂W                                    every parameter of the model trains (no adapter)
    every T steps (update_proj_gap):  U, S, Vᵀ = SVD(G)
        m ≤ n:  P = U[:, :r]  (m, r)     R = Pᵀ G  (r, n)      project from the left
        m > n:  P = V[:, :r]  (n, r)     R = G P   (m, r)      project from the right
    Adam on R:   M ← β₁M + (1−β₁)R,   V ← β₂V + (1−β₂)R²,   N = M̂ / (√V̂ + ε)       M, V: (r, n) or (m, r)
    back:        G̃ = α · P N   (or α · N Pᵀ)             α = scale (the paper's 0.25)
    W ← W − η G̃ − η λ W                                 decoupled weight decay (AdamW)

Optimizer state per (m, n) matrix: 2·r·max(m, n)… precisely 2·r·n (left) or 2·m·r (right) moment entries plus
the projector (m·r or n·r), instead of AdamW's 2·m·n. Weights and gradients stay full size: GaLore saves
optimizer memory, not weight or gradient memory (the paper's per-layer weight update removes the full
gradient on a GPU; this loop keeps it, as `labs.train` measures). Parameters that are not targeted
matrices (norms, embeddings, the head) get plain AdamW, as the paper's `galore_torch` does.
Like `galore_torch`, the moments are kept when the projector changes (they were built in the old basis).

    opt = GaLoreAdamW(param_groups(model, rank=8, update_proj_gap=50, scale=0.25), lr=1e-3)
"""
from __future__ import annotations

import math

import torch
from torch import nn

from labs.methods import inject


class GaLoreProjector:
    """The 'std' projector of galore_torch: left when rows ≤ cols, right otherwise; refreshed every `gap` steps."""

    def __init__(self, rank: int, update_proj_gap: int, scale: float):
        self.rank, self.gap, self.scale = rank, update_proj_gap, scale
        self.P: torch.Tensor | None = None
        self.left = True

    def project(self, grad: torch.Tensor, step: int) -> torch.Tensor:
        m, n = grad.shape
        self.left = m <= n
        if self.P is None or step % self.gap == 0:
            U, _, Vh = torch.linalg.svd(grad.float(), full_matrices=False)    # (m, k), (k,), (k, n)
            self.P = (U[:, :self.rank] if self.left else Vh[:self.rank].T).to(grad.dtype).contiguous()
        return self.P.T @ grad if self.left else grad @ self.P               # (r, n) or (m, r)

    def project_back(self, low: torch.Tensor) -> torch.Tensor:
        return self.scale * (self.P @ low if self.left else low @ self.P.T)  # (m, n)


class GaLoreAdamW(torch.optim.Optimizer):
    """AdamW; a group with "rank" keeps its moments in the projected space (see the module docstring)."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0):
        if lr <= 0:
            raise ValueError(f"lr={lr!r}: allowed a number > 0")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self._projectors: dict[int, GaLoreProjector] = {}

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                state["step"] = state.get("step", 0) + 1
                grad = p.grad
                proj = None
                if "rank" in group and p.dim() == 2:
                    proj = self._projectors.setdefault(id(p), GaLoreProjector(
                        group["rank"], group["update_proj_gap"], group["scale"]))
                    grad = proj.project(grad, state["step"] - 1)
                    state["projector"] = proj.P                      # counted as optimizer state
                if "exp_avg" not in state:
                    state["exp_avg"] = torch.zeros_like(grad)
                    state["exp_avg_sq"] = torch.zeros_like(grad)
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                t = state["step"]
                step_size = group["lr"] * math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
                update = m / (v.sqrt() + group["eps"])
                if proj is not None:
                    update = proj.project_back(update)
                p.add_(update, alpha=-step_size)
                if group["weight_decay"]:
                    p.add_(p, alpha=-group["lr"] * group["weight_decay"])
        return loss


def param_groups(model: nn.Module, rank: int = 8, update_proj_gap: int = 50, scale: float = 0.25,
                 target_modules="all-linear") -> list[dict]:
    """Unfreeze every parameter; the weights of `target_modules` (PEFT rules) get the projected group."""
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise ValueError(f"rank={rank!r}: allowed an integer >= 1")
    if not isinstance(update_proj_gap, int) or update_proj_gap < 1:
        raise ValueError(f"update_proj_gap={update_proj_gap!r}: allowed an integer >= 1")
    if not scale > 0:
        raise ValueError(f"scale={scale!r}: allowed a number > 0 (the paper uses 0.25)")
    names = inject.match_targets(model, target_modules)
    projected = {id(model.get_submodule(n).weight) for n in names}
    low, rest = [], []
    for p in model.parameters():
        p.requires_grad_(True)
        (low if id(p) in projected else rest).append(p)
    groups = [{"params": low, "rank": rank, "update_proj_gap": update_proj_gap, "scale": scale, "name": "galore"}]
    return groups + ([{"params": rest, "name": "adamw"}] if rest else [])


def state_bytes(opt: torch.optim.Optimizer) -> dict:
    """Measured optimizer state: {"moments", "projectors", "total"} in bytes (the step counters are ints)."""
    moments = projectors = 0
    for st in opt.state.values():
        for k, v in st.items():
            if not isinstance(v, torch.Tensor):
                continue
            nbytes = v.numel() * v.element_size()
            if k == "projector":
                projectors += nbytes
            else:
                moments += nbytes
    return {"moments": moments, "projectors": projectors, "total": moments + projectors}
