"""Multi-LoRA drill: BGMV, one adapter per row, -1 = no adapter (Punica's batched gather matrix-vector).

Expected values: `peftlab_kernels.multi_lora.bgmv_reference` (the per-request loop the fast kernels are tested
against); the timed case is compared with `peftlab_kernels.multi_lora.bgmv` (the dispatched fast path).
"""
from __future__ import annotations

import torch

from labs.drills.grading import Case, L, Mistake
from labs.drills.graders import dtype_name, randint, randn
from peftlab_kernels.multi_lora import bgmv as bgmv_fast
from peftlab_kernels.multi_lora import bgmv_reference

PARAMS = ("x", "A", "B", "idx", "scaling")


def _case(g, T, K, r, k, d, dtype, none_rows=True):
    x = randn(g, T, k, dtype=dtype)
    A = randn(g, K, r, k, dtype=dtype, scale=k ** -0.5)
    B = randn(g, K, d, r, dtype=dtype, scale=r ** -0.5)                       # non-zero (B = 0 at init)
    scaling = (torch.rand(K, generator=g) * 3 + 0.5).to(dtype)
    idx = torch.randint(-1 if none_rows else 0, K, (T,), generator=g)
    if none_rows:
        idx[0] = -1
    return x, A, B, idx, scaling


def bgmv(g: torch.Generator) -> list[Case]:
    cases = []
    for T, K, r, dtype in ((randint(g, 5, 9) | 1, 3, 4, torch.float32), (1, 2, 1, torch.float32),
                           (randint(g, 10, 17), 4, 8, torch.float32), (randint(g, 6, 11), 3, 4, torch.bfloat16)):
        k, d = randint(g, 5, 13) | 1, randint(g, 5, 13) | 1
        x, A, B, idx, s = _case(g, T, K, r, k, d, dtype, none_rows=T > 1)
        exp = bgmv_reference(x, A, B, idx, s)
        last = idx.clone()
        last[last < 0] = K - 1                                             # -1 read as "the last adapter"
        mistakes = [Mistake("idx = -1 means NO adapter for that row: its output is 0, not adapter K−1 (Python's "
                            "negative indexing).", "idx = -1 表示该行不用适配器：输出为 0，而不是 Python 负索引取到的第 K−1 个适配器。",
                            bgmv_reference(x, A, B, last, s)),
                    Mistake("each row is scaled by its own adapter's scaling[idx[t]].",
                            "每一行乘的是它自己那个适配器的 scaling[idx[t]]。", bgmv_reference(x, A, B, idx, torch.ones_like(s)))]
        cases.append(Case(f"{dtype_name(dtype)} T={T} rows, K={K} adapters, r={r}, in={k}, out={d}, "
                          f"{int((idx < 0).sum())} rows without adapter", "bgmv", [x, A, B, idx, s], exp, PARAMS,
                          mistakes=mistakes))
    x, A, B, idx, s = _case(g, 256, 8, 16, 512, 512, torch.float32)
    cases.append(Case("timed: T=256 rows, K=8, r=16, 512 → 512, fp32", "bgmv", [x, A, B, idx, s],
                      bgmv_reference(x, A, B, idx, s), PARAMS, repeat=3, timer=lambda: bgmv_fast(x, A, B, idx, s)))
    return cases


def error_hint(err: str, lang: str) -> str:
    if "index" in err and "out of" in err:
        return L(lang, "Hint: rows with idx = -1 have no adapter; mask them out before gathering A[idx].",
                 "提示：idx = -1 的行没有适配器；在取 A[idx] 之前先把它们屏蔽掉。")
    return ""
