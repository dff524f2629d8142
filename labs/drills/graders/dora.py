"""DoRA drill: forward with the norm detached (paper §4.3), gradients checked.

Expected values and gradients: `labs.methods.lora.LoraLinear(use_dora=True)` (its `DoraStrategy.forward`),
the layer checked against peft's DoRA.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from labs.drills.grading import Case, Mistake
from labs.drills.graders import choice, dtype_name, randint, randn
from labs.methods.lora import LoraConfig, LoraLinear

PARAMS = ("x", "W0", "A", "B", "m", "alpha", "r")


def _reference(x, W0, A, B, m, alpha, r, dy):
    d, k = W0.shape
    layer = LoraLinear(nn.Linear(k, d, bias=False, dtype=W0.dtype), LoraConfig(r=r, lora_alpha=alpha, use_dora=True))
    layer.base_layer.weight.requires_grad_(False)                       # the frozen base, as lora.apply leaves it
    with torch.no_grad():
        layer.base_layer.weight.copy_(W0)
        layer.lora_A.weight.copy_(A)
        layer.lora_B.weight.copy_(B)
        layer.lora_magnitude_vector.copy_(m)
    xr = x.detach().clone().requires_grad_(True)
    y = layer(xr)
    y.backward(dy)
    grads = {0: xr.grad, 2: layer.lora_A.weight.grad, 3: layer.lora_B.weight.grad, 4: layer.lora_magnitude_vector.grad}
    return y.detach(), grads


def _variant(x, W0, A, B, m, s, dy, dim: int, detach: bool):
    """A plausible wrong DoRA (norm over the wrong axis, or a norm that carries gradient), with its gradients."""
    leaves = [t.detach().clone().requires_grad_(True) for t in (x, A, B, m)]
    xl, Al, Bl, ml = leaves
    V = W0 + s * (Bl @ Al)                                              # (d, k)
    norm = torch.linalg.vector_norm(V, dim=dim, keepdim=True)          # (d, 1) rows, (1, k) columns
    if detach:
        norm = norm.detach()
    W = ml[:, None] * V / norm
    y = xl @ W.t()
    y.backward(dy)
    return y.detach(), {0: xl.grad, 2: Al.grad, 3: Bl.grad, 4: ml.grad}


def forward(g: torch.Generator) -> list[Case]:
    cases = []
    geoms = [((randint(g, 3, 7) | 1,), 1, torch.float32), ((2, randint(g, 3, 5) | 1), 4, torch.float32),
             ((), 8, torch.float32), ((2, 3, 5), choice(g, (2, 4)), torch.float32), ((randint(g, 4, 7),), 4, torch.bfloat16)]
    for lead, r, dtype in geoms:
        d, k = randint(g, 5, 13) | 1, randint(g, 5, 13) | 1
        alpha = choice(g, (8.0, 16.0, 12.0))
        W0 = randn(g, d, k, dtype=dtype, scale=1 / math.sqrt(k))
        A = randn(g, r, k, dtype=dtype, scale=1 / math.sqrt(k))
        B = randn(g, d, r, dtype=dtype, scale=1 / math.sqrt(r))               # non-zero: a trained adapter
        m = (torch.rand(d, generator=g) * 1.5 + 0.25).to(dtype)                # not the init ‖W0 + sBA‖
        x = randn(g, *lead, k, dtype=dtype)
        dy = randn(g, *lead, d, dtype=dtype)
        y, grads = _reference(x, W0, A, B, m, alpha, r, dy)
        s = alpha / r
        y_live, g_live = _variant(x, W0, A, B, m, s, dy, dim=1, detach=False)
        y_col, g_col = _variant(x, W0, A, B, m, s, dy, dim=0, detach=True)
        mistakes = [
            Mistake("the forward is right but the norm carries gradient: DoRA (§4.3) and PEFT treat ‖W0 + sBA‖ as a "
                    "constant in backward; compute it under torch.no_grad() or call .detach() on it.",
                    "前向正确，但范数带了梯度：DoRA（§4.3）和 PEFT 在反向中把 ‖W0 + sBA‖ 当常数；在 torch.no_grad() 下计算它，"
                    "或对它调用 .detach()。", y_live, g_live),
            Mistake("the norm is per OUTPUT ROW of W (d,): torch.linalg.vector_norm(W, dim=1). The paper's 'column' norm "
                    "is of the (k, d) matrix it multiplies as x W; PyTorch stores W as (d, k).",
                    "范数是对 W 的每个输出行取的（d 个）：torch.linalg.vector_norm(W, dim=1)。论文写的“列”范数是针对 x W 形式的 "
                    "(k, d) 矩阵；PyTorch 存的是 (d, k)。", y_col, g_col),
            Mistake("the LoRA update inside the norm needs its scaling: V = W0 + (alpha/r)·B A.",
                    "范数里的 LoRA 更新量要乘缩放：V = W0 + (alpha/r)·B A。",
                    _variant(x, W0, A, B, m, 1.0, dy, dim=1, detach=True)[0]),
        ]
        grad = {"wrt": [0, 2, 3, 4], "dy": dy, "expected": grads}
        cases.append(Case(f"{dtype_name(dtype)} x{tuple(x.shape)} d={d} k={k} r={r} alpha={alpha:g}", "dora_forward",
                          [x, W0, A, B, m, alpha, r], y, PARAMS, grad=grad, mistakes=mistakes))
    return cases
