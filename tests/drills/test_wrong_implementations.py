"""Plausible wrong implementations of the three fixed-contract drills must fail, each with its matching hint.

Each row: (name, code, a phrase the failing report must contain). The grader draws fresh random cases, so a
wrong answer that passes by luck on one seed would show up across runs; a fixed seed keeps this table exact.
"""
from __future__ import annotations

import pytest

from labs.drills import get_drill
from labs.drills.runner import check, run_trusted

LORA_HEAD = ("import math\nimport torch\n\n"
             "def lora_forward(x, W0, b, A, B, alpha, r, use_rslora=False):\n")
LORA_WRONG = [
    ("scaling alpha/r even with rsLoRA", "    s = alpha / r\n    y = x @ W0.T + s * (x @ A.T) @ B.T\n"
     "    return y + b if b is not None else y\n", "off by √r"),
    ("rsLoRA always", "    s = alpha / math.sqrt(r)\n    y = x @ W0.T + s * (x @ A.T) @ B.T\n"
     "    return y + b if b is not None else y\n", "use_rslora=False here"),
    ("bias dropped", "    s = alpha / math.sqrt(r) if use_rslora else alpha / r\n"
     "    return x @ W0.T + s * (x @ A.T) @ B.T\n", "bias b is missing"),
    ("no scaling", "    y = x @ W0.T + (x @ A.T) @ B.T\n    return y + b if b is not None else y\n",
     "missing its scaling"),
    ("r/alpha", "    s = r / alpha\n    y = x @ W0.T + s * (x @ A.T) @ B.T\n    return y + b if b is not None else y\n",
     "r/alpha instead"),
    ("scaled base", "    s = alpha / math.sqrt(r) if use_rslora else alpha / r\n"
     "    y = s * (x @ W0.T + (x @ A.T) @ B.T)\n    return y + s * b if b is not None else y\n",
     "only the LoRA branch is scaled"),
    ("transposes swapped", "    s = alpha / math.sqrt(r) if use_rslora else alpha / r\n"
     "    y = x @ W0 + s * (x @ A) @ B\n    return y + b if b is not None else y\n", "check the transposes"),
    ("fp32 output for bf16 input", "    s = alpha / math.sqrt(r) if use_rslora else alpha / r\n"
     "    x, W0, A, B = x.float(), W0.float(), A.float(), B.float()\n"
     "    y = x @ W0.T + s * (x @ A.T) @ B.T\n    return y + b.float() if b is not None else y\n", "dtype: expected"),
]

NF4_HEAD = get_drill("nf4-quantize").starter().split("def quantize_nf4")[0] + \
    "def quantize_nf4(w, blocksize=64):\n    flat = w.reshape(-1).float()\n    n = flat.numel()\n"
NEAREST = "    codes = (s.reshape(-1)[:, None] - NF4_LEVELS[None, :]).abs().argmin(1)[:n].to(torch.uint8)\n"
BLOCKS = ("    nb = -(-n // blocksize)\n"
          "    blocks = torch.nn.functional.pad(flat, (0, nb * blocksize - n)).view(nb, blocksize)\n")
NF4_WRONG = [
    ("global absmax", BLOCKS + "    absmax = flat.abs().max().expand(nb).clone()\n"
     "    s = blocks / absmax[:, None]\n" + NEAREST + "    return codes, absmax\n", "not one global max"),
    ("tail block dropped", "    nb = n // blocksize\n    blocks = flat[:nb * blocksize].view(nb, blocksize)\n"
     "    absmax = blocks.abs().amax(1)\n    s = blocks / absmax[:, None]\n"
     "    codes = (s.reshape(-1)[:, None] - NF4_LEVELS[None, :]).abs().argmin(1).to(torch.uint8)\n"
     "    codes = torch.cat([codes, torch.full((n - codes.numel(),), 7, dtype=torch.uint8)])\n"
     "    return codes, absmax\n", "block of its own"),
    ("signed max", BLOCKS + "    absmax = blocks.amax(1)\n    s = blocks / absmax[:, None]\n" + NEAREST +
     "    return codes, absmax\n", "ABSOLUTE value"),
    ("uniform INT4 grid", BLOCKS + "    absmax = blocks.abs().amax(1)\n    s = blocks / absmax.clamp(min=1e-38)[:, None]\n"
     "    codes = torch.round((s.reshape(-1) + 1) * 7.5)[:n].to(torch.uint8)\n    return codes, absmax\n",
     "not evenly spaced"),
    ("levels reversed", BLOCKS + "    absmax = blocks.abs().amax(1)\n    s = blocks / absmax.clamp(min=1e-38)[:, None]\n"
     "    codes = 15 - (s.reshape(-1)[:, None] - NF4_LEVELS[None, :]).abs().argmin(1)[:n]\n"
     "    return codes.to(torch.uint8), absmax\n", "nearest level"),
    ("codes as int64", BLOCKS + "    absmax = blocks.abs().amax(1)\n    s = blocks / absmax.clamp(min=1e-38)[:, None]\n"
     "    codes = (s.reshape(-1)[:, None] - NF4_LEVELS[None, :]).abs().argmin(1)[:n]\n    return codes, absmax\n",
     "dtype: expected torch.uint8"),
]

DORA_HEAD = "import torch\n\ndef dora_forward(x, W0, A, B, m, alpha, r):\n    s = alpha / r\n"
DORA_WRONG = [
    ("norm not detached", "    V = W0 + s * (B @ A)\n    W = m[:, None] * V / torch.linalg.vector_norm(V, dim=1, keepdim=True)\n"
     "    return x @ W.T\n", "norm carries gradient"),
    ("column norm", "    with torch.no_grad():\n        n = torch.linalg.vector_norm(W0 + s * (B @ A), dim=0, keepdim=True)\n"
     "    V = W0 + s * (B @ A)\n    return x @ (m[:, None] * V / n).T\n", "OUTPUT ROW"),
    ("no scaling in the norm", "    with torch.no_grad():\n        n = torch.linalg.vector_norm(W0 + B @ A, dim=1)\n"
     "    return (m / n) * (x @ W0.T + (x @ A.T) @ B.T)\n", "needs its scaling"),
    ("magnitude ignored", "    with torch.no_grad():\n        n = torch.linalg.vector_norm(W0 + s * (B @ A), dim=1)\n"
     "    return (x @ W0.T + s * (x @ A.T) @ B.T) / n\n", "values: max abs error"),
    ("no normalisation (plain LoRA times m)", "    return m * (x @ W0.T + s * (x @ A.T) @ B.T)\n", "values: max abs error"),
    ("detached everything", "    with torch.no_grad():\n        n = torch.linalg.vector_norm(W0 + s * (B @ A), dim=1)\n"
     "        y = (m / n) * (x @ W0.T + s * (x @ A.T) @ B.T)\n    return y\n", "no grad_fn"),
]

TABLE = ([("lora-forward", LORA_HEAD, *row) for row in LORA_WRONG]
         + [("nf4-quantize", NF4_HEAD, *row) for row in NF4_WRONG]
         + [("dora-forward", DORA_HEAD, *row) for row in DORA_WRONG])
# the bar: at least five plausible wrong implementations per fixed-contract drill
assert all(sum(row[0] == d for row in TABLE) >= 5 for d in ("lora-forward", "nf4-quantize", "dora-forward"))


@pytest.mark.parametrize("drill_id,head,name,body,phrase", TABLE, ids=[f"{t[0]}:{t[2]}" for t in TABLE])
def test_wrong_implementation_fails_with_its_hint(drill_id, head, name, body, phrase):
    report = check(drill_id, head + body, runner=run_trusted, seed=1234)
    assert not report.passed, f"{name} passed"
    messages = "\n".join(t.message for t in report.tests if not t.passed)
    assert phrase in messages, messages[:1500]
    assert "called " in messages or "expected" in messages


