"""AdaLoRA: adaptive budget allocation (Zhang et al. 2023, arXiv:2303.10512).

ΔW is kept in an SVD-like form and its rank is pruned while training:

    ΔW = P Λ Q        P = lora_B (out, r)   Λ = diag(lora_E) (r,)   Q = lora_A (r, in)     (PEFT's names)
    y  = x W0ᵀ + b + (x (Q ⊙ Λ)ᵀ Pᵀ) · lora_alpha / r_init

Importance of one parameter θ (§3.2):   I = |θ · ∂L/∂θ|
    sensitivity, smoothed       Ī_t = β1 Ī_{t-1} + (1 - β1) I_t
    uncertainty                 Ū_t = β2 Ū_{t-1} + (1 - β2) |I_t - Ī_t|
    score                       s = Ī · Ū
Triplet i (P[:, i], λ_i, Q[i, :]):   S_i = s(λ_i) + mean_j s(Q[i, j]) + mean_j s(P[j, i])

Budget (total kept triplets), cubic schedule (§3.3) over T steps with warm-up t_init and final t_final:
    b(t) = b0                                             t ≤ t_init
         = b_T + (b0 - b_T) (1 - (t - t_init)/(T - t_init - t_final))³     otherwise, masking every ΔT steps
         = b_T                                            t > T - t_final  (ranks frozen)
Masking: λ_i ← 0 for the b0 - b(t) triplets with the lowest S_i (P, Q keep training; λ_i may come back).
Orthogonality regulariser (eq. 4): R = mean over P, Q of ||PᵀP - I||_F, ||QQᵀ - I||_F, added to the loss.

Decisions follow PEFT's `RankAllocator` (peft/tuners/adalora/layer.py) step for step; the parity test feeds
both the same gradients and compares the masks. `history` records each module's rank for the lab heatmap.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from labs.methods import inject
from labs.methods.fused import fused_lora


@dataclass
class AdaLoraConfig:
    total_step: int
    init_r: int = 12
    target_r: int = 8
    tinit: int = 0
    tfinal: int = 0
    deltaT: int = 1
    beta1: float = 0.85
    beta2: float = 0.85
    orth_reg_weight: float = 0.5
    lora_alpha: float = 8
    lora_dropout: float = 0.0
    target_modules: object = "all-linear"

    def __post_init__(self):
        for name in ("total_step", "init_r", "target_r", "deltaT"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}={v!r}: allowed an integer >= 1")
        if self.target_r > self.init_r:
            raise ValueError(f"target_r={self.target_r} > init_r={self.init_r}: the budget can only shrink")
        if not (0 <= self.tinit and 0 <= self.tfinal and self.tinit < self.total_step - self.tfinal):
            raise ValueError(f"tinit={self.tinit}, tfinal={self.tfinal}, total_step={self.total_step}: need "
                             "0 <= tinit < total_step - tfinal, or there is no budgeting phase")
        for name in ("beta1", "beta2"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r}: allowed 0 < {name} < 1")
        if self.orth_reg_weight < 0:
            raise ValueError(f"orth_reg_weight={self.orth_reg_weight!r}: allowed >= 0")


class SVDLinear(nn.Module):
    is_adapter_layer = True
    adapter_names = ("lora_A", "lora_E", "lora_B")

    def __init__(self, base_layer: nn.Linear, r: int, lora_alpha: float, lora_dropout: float = 0.0):
        super().__init__()
        self.base_layer = base_layer
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        w = base_layer.weight
        self.lora_A = nn.Parameter(torch.randn(r, self.in_features, device=w.device, dtype=w.dtype) * 0.02)   # Q
        self.lora_E = nn.Parameter(torch.zeros(r, 1, device=w.device, dtype=w.dtype))                     # Λ
        self.lora_B = nn.Parameter(torch.randn(self.out_features, r, device=w.device, dtype=w.dtype) * 0.02)  # P
        self.r = r
        self.ranknum = float(r)                       # PEFT divides by the INITIAL rank, never the pruned one
        self.scaling = lora_alpha if lora_alpha > 0 else float(r)
        self.dropout_p = float(lora_dropout)
        self.lora_dropout = nn.Dropout(lora_dropout) if lora_dropout > 0 else nn.Identity()
        self.merged = False

    def factor(self) -> float:
        return self.scaling / (self.ranknum + 1e-5)   # PEFT's +1e-5, kept for identical numbers

    def delta_weight(self) -> torch.Tensor:
        return self.lora_B @ (self.lora_A * self.lora_E) * self.factor()                # (out, in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base_layer(x)
        if self.training and self.dropout_p > 0:
            return self.base_layer(x) + (self.lora_dropout(x) @ (self.lora_A * self.lora_E).t()
                                         @ self.lora_B.t()) * self.factor()
        return fused_lora(x, self.base_layer.weight, self.base_layer.bias,
                           self.lora_A * self.lora_E, self.lora_B, self.factor())       # (…, out)

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self.base_layer.weight.add_(self.delta_weight())
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.base_layer.weight.sub_(self.delta_weight())
            self.merged = False


def orth_regularizer(layers: dict[str, SVDLinear]) -> torch.Tensor:
    """mean over every P and Q of ||PᵀP - I||_F and ||QQᵀ - I||_F (PEFT's AdaLoraModel.forward)."""
    terms = []
    for m in layers.values():
        for cov in (m.lora_A @ m.lora_A.t(), m.lora_B.t() @ m.lora_B):                  # (r, r) each
            terms.append(torch.linalg.matrix_norm(cov - torch.eye(cov.shape[0], dtype=cov.dtype,
                                                                   device=cov.device)))
    return torch.stack(terms).mean()


class RankAllocator:
    def __init__(self, layers: dict[str, SVDLinear], cfg: AdaLoraConfig):
        self.layers, self.cfg = layers, cfg
        self.init_bgt = sum(m.r for m in layers.values())
        self.target_bgt = cfg.target_r * len(layers)
        self.history: list[dict] = []
        self.rank_pattern: dict[str, list[bool]] | None = None
        self.reset_ipt()

    def reset_ipt(self) -> None:
        self.exp_avg_ipt: dict[tuple[str, str], torch.Tensor] = {}
        self.exp_avg_unc: dict[tuple[str, str], torch.Tensor] = {}

    def budget_schedule(self, step: int) -> tuple[int, bool]:
        c = self.cfg
        if step <= c.tinit:
            return self.init_bgt, False
        if step > c.total_step - c.tfinal:
            return self.target_bgt, True
        mul = 1 - (step - c.tinit) / (c.total_step - c.tfinal - c.tinit)
        return int((self.init_bgt - self.target_bgt) * mul ** 3 + self.target_bgt), step % c.deltaT == 0

    @torch.no_grad()
    def update_ipt(self) -> None:
        b1, b2 = self.cfg.beta1, self.cfg.beta2
        for name, m in self.layers.items():
            for pname in ("lora_A", "lora_B", "lora_E"):
                p = getattr(m, pname)
                if p.grad is None:
                    continue
                key = (name, pname)
                ipt = (p * p.grad).abs()                                   # I = |θ ∂L/∂θ|
                avg = self.exp_avg_ipt.get(key, torch.zeros_like(p))
                unc = self.exp_avg_unc.get(key, torch.zeros_like(p))
                avg = b1 * avg + (1 - b1) * ipt                            # sensitivity (EMA β1)
                self.exp_avg_ipt[key] = avg
                self.exp_avg_unc[key] = b2 * unc + (1 - b2) * (ipt - avg).abs()   # uncertainty (EMA β2)

    def _score(self, name: str, pname: str) -> torch.Tensor:
        return self.exp_avg_ipt[(name, pname)] * self.exp_avg_unc[(name, pname)]

    def triplet_scores(self) -> dict[str, torch.Tensor]:
        """S_i per module (r,): s(λ_i) + mean_j s(Q_ij) + mean_j s(P_ji), summed in PEFT's order."""
        out = {}
        for name in self.layers:
            s_a = self._score(name, "lora_A").mean(dim=1, keepdim=True)                   # (r, 1)
            s_b = self._score(name, "lora_B").mean(dim=0).view(-1, 1)                      # (r, 1)
            out[name] = self._score(name, "lora_E").view(-1) + torch.cat([s_a, s_b], 1).sum(1)   # (r,)
        return out

    @torch.no_grad()
    def mask_to_budget(self, budget: int) -> dict[str, list[bool]]:
        if not self.exp_avg_ipt:        # no statistics yet (PEFT would raise a KeyError here): take this step's
            self.update_ipt()
        scores = self.triplet_scores()
        k = self.init_bgt - budget
        if k <= 0:
            return {n: [True] * m.r for n, m in self.layers.items()}
        threshold = torch.kthvalue(torch.cat(list(scores.values())), k=k)[0].item()
        pattern = {}
        for name, m in self.layers.items():
            keep = scores[name] > threshold
            m.lora_E.masked_fill_(~keep.view(-1, 1), 0.0)
            pattern[name] = keep.tolist()
        return pattern

    @torch.no_grad()
    def apply_pattern(self) -> None:
        for name, m in self.layers.items():
            keep = torch.tensor(self.rank_pattern[name], device=m.lora_E.device).view(-1, 1)
            m.lora_E.masked_fill_(~keep, 0.0)

    def ranks(self) -> dict[str, int]:
        """Kept triplets per module: r_init before the first masking, then the size of the kept set."""
        if self.rank_pattern is None:
            return {n: m.r for n, m in self.layers.items()}
        return {n: int(sum(keep)) for n, keep in self.rank_pattern.items()}

    def step(self, model: nn.Module, global_step: int) -> dict:
        """PEFT's `AdaLoraModel.update_and_allocate`, call after optimizer.step(), before zero_grad()."""
        c = self.cfg
        final = c.total_step - c.tfinal
        budget, mask_now = self.budget_schedule(global_step)
        if global_step < final:
            self.update_ipt()
            if mask_now:
                self.rank_pattern = self.mask_to_budget(budget)
        elif global_step == final:
            self.rank_pattern = self.mask_to_budget(budget)
            self.reset_ipt()
        elif self.rank_pattern is not None:
            self.apply_pattern()
        record = {"step": global_step, "budget": budget, "ranks": self.ranks()}
        self.history.append(record)
        return record


def svd_layers(model: nn.Module) -> dict[str, SVDLinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, SVDLinear)}


def merge_and_unload(model: nn.Module) -> nn.Module:
    """Fold each P·diag(Λ)·Q update into its base weight and put the plain linear back (what decoding times)."""
    return inject.unload_layers(model, svd_layers)


def _add_orth_reg(weight: float):
    def hook(model, _args, output):
        loss = getattr(output, "loss", None)
        if weight > 0 and isinstance(loss, torch.Tensor):
            output.loss = loss + weight * orth_regularizer(model.adalora_controller.layers)
        return output
    return hook


def apply(model: nn.Module, total_step: int, init_r: int = 12, target_r: int = 8, tinit: int = 0,
          tfinal: int = 0, deltaT: int = 1, beta1: float = 0.85, beta2: float = 0.85,
          orth_reg_weight: float = 0.5, lora_alpha: float = 8, lora_dropout: float = 0.0,
          target_modules="all-linear") -> nn.Module:
    """Freeze `model`, wrap the targets in SVDLinear, attach `model.adalora_controller` (the RankAllocator)
    and a forward hook that adds orth_reg_weight · R to `output.loss`. Call
    `labs.methods.on_step_end(model, step)` after each optimizer step."""
    cfg = AdaLoraConfig(total_step=total_step, init_r=init_r, target_r=target_r, tinit=tinit, tfinal=tfinal,
                        deltaT=deltaT, beta1=beta1, beta2=beta2, orth_reg_weight=orth_reg_weight,
                        lora_alpha=lora_alpha, lora_dropout=lora_dropout, target_modules=target_modules)
    inject.inject(model, target_modules, lambda _n, m: SVDLinear(m, init_r, lora_alpha, lora_dropout))
    model.adalora_controller = RankAllocator(svd_layers(model), cfg)
    model.register_forward_hook(_add_orth_reg(orth_reg_weight))
    model.peft_lab_config = {"method": "adalora", **asdict(cfg)}
    return model


def rank_history(model: nn.Module) -> list[dict]:
    """[{"step", "budget", "ranks": {module: rank}}] — rows of the AdaLoRA lab's heatmap."""
    return model.adalora_controller.history
