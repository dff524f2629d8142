"""NF4 drills: blockwise quantize (codes + absmax) and dequantize with double quantization.

Expected values: `peftlab_kernels.nf4.quantize_nf4` / `dequantize_nf4` (bit-exact with bitsandbytes) and the
16 levels of `peftlab_kernels.codebooks.nf4_codebook()`.
"""
from __future__ import annotations

import torch

from labs.drills.grading import Case, L, Mistake, compare
from labs.drills.graders import dtype_name, randint, randn
from peftlab_kernels.codebooks import dynamic_map, nf4_codebook
from peftlab_kernels.nf4 import dequantize_nf4, quantize_nf4

Q_PARAMS = ("w", "blocksize")


def _codes(q) -> torch.Tensor:
    """(n,) uint8 codes from the packed bytes (element 2i in the high nibble)."""
    p = q.packed
    return torch.stack([p >> 4, p & 0xF], 1).reshape(-1)[:q.numel()]


def _weights(g, shape, dtype, blocksize: int) -> torch.Tensor:
    w = randn(g, *shape).reshape(-1)
    n = w.numel()
    if n > 2 * blocksize:                                   # adversarial blocks:
        w[:blocksize] = 0.0                                 # an all-zero block (absmax 0)
        w[blocksize:2 * blocksize] *= 0.01                  # a tiny block, its max negative
        w[blocksize + 3] = -0.05
    return w.reshape(shape).to(dtype)


def _check_quant(w: torch.Tensor, blocksize: int):
    q = quantize_nf4(w, blocksize=blocksize, double_quant=False)
    codes, absmax = _codes(q), q.absmax
    levels = nf4_codebook()
    flat = w.reshape(-1).float()
    block = torch.arange(flat.numel()) // blocksize
    s = flat / absmax.clamp(min=1e-38)[block]                # the normalised value each code encodes

    def check(got, case, lang):
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            return L(lang, "return a tuple (codes, absmax)", "应返回 tuple (codes, absmax)")
        g_codes, g_absmax = got
        m = compare(g_absmax, absmax, lang, tol=(0.0, 1e-6), what="absmax")
        if m:
            return m
        if not isinstance(g_codes, torch.Tensor) or g_codes.dtype != torch.uint8 or g_codes.shape != codes.shape:
            return compare(g_codes, codes, lang, exact=True, what="codes")
        if int(g_codes.max()) > 15:
            return L(lang, f"codes: values must be 0..15, got {int(g_codes.max())}",
                     f"codes：取值应在 0..15，实际有 {int(g_codes.max())}")
        err_got = (s - levels[g_codes.long()]).abs()
        err_exp = (s - levels[codes.long()]).abs()
        bad = err_got > err_exp + 1e-6                       # a tie (exact midpoint) accepts either neighbour
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            ce, cg = int(codes[i]), int(g_codes[i])
            return L(lang, f"codes: {int(bad.sum())}/{codes.numel()} not the nearest level; first at flat index {i} "
                           f"(block {i // blocksize}): w={float(flat[i]):.6g}, w/absmax={float(s[i]):.6g}, expected "
                           f"code {ce} (level {float(levels[ce]):.6g}), got {cg} (level {float(levels[cg]):.6g})",
                     f"codes：{int(bad.sum())}/{codes.numel()} 个不是最近的级别；第一个在展平下标 {i}（块 {i // blocksize}）："
                     f"w={float(flat[i]):.6g}，w/absmax={float(s[i]):.6g}，应为 code {ce}"
                     f"（级别 {float(levels[ce]):.6g}），实际 {cg}（级别 {float(levels[cg]):.6g}）")
        return None
    return codes, absmax, check


def quantize(g: torch.Generator) -> list[Case]:
    cases = []
    geoms = [((randint(g, 3, 9) * 64 + randint(g, 1, 63),), 64, torch.float32),       # a partial tail block
             ((randint(g, 5, 11) | 1, randint(g, 17, 41) | 1), 64, torch.float32),    # 2-D, odd sizes
             ((randint(g, 2, 4), 128 + randint(g, 1, 50)), 32, torch.float32),
             ((randint(g, 3, 7), 3, 64), 128, torch.bfloat16),
             ((randint(g, 200, 900) | 1,), 64, torch.bfloat16),
             ((37,), 64, torch.float32)]                                                # one partial block only
    for shape, bs, dtype in geoms:
        w = _weights(g, shape, dtype, bs)
        codes, absmax, check = _check_quant(w, bs)
        n_full = w.numel() // bs
        flat = w.reshape(-1).float()
        mistakes = [
            Mistake("absmax is per block of `blocksize` consecutive elements, not one global max.",
                    "absmax 是每 blocksize 个连续元素一块、各自求最大绝对值，而不是全局一个。",
                    (None, flat.abs().max().expand(absmax.shape).clone())),
            Mistake("absmax is the largest ABSOLUTE value of the block (max |w|), not max w.",
                    "absmax 是块内最大的绝对值 max |w|，不是 max w。",
                    (None, torch.stack([flat[i:i + bs].max() for i in range(0, flat.numel(), bs)]))),
            Mistake("the last, partial block is a block of its own: absmax has ceil(n/blocksize) entries.",
                    "最后不满的一块也单独成块：absmax 有 ceil(n/blocksize) 个。", (None, absmax[:n_full].clone())),
        ]
        case = Case(f"{dtype_name(dtype)} w{tuple(shape)} blocksize={bs} ({absmax.numel()} blocks, "
                    f"tail {w.numel() % bs})", "quantize_nf4", [w], (codes, absmax), Q_PARAMS,
                    kwargs={"blocksize": bs}, check=lambda got, c, lang, _chk=check, _m=mistakes, _a=absmax:
                    _with_hints(_chk(got, c, lang), got, _m, lang))
        cases.append(case)
    w = randn(g, 256, 1024)
    codes, absmax, check = _check_quant(w, 64)
    cases.append(Case("timed: w(256, 1024) fp32 blocksize=64", "quantize_nf4", [w], (codes, absmax), Q_PARAMS,
                      kwargs={"blocksize": 64}, check=check, repeat=3,
                      timer=lambda: quantize_nf4(w, blocksize=64, double_quant=False)))
    return cases


def _with_hints(msg, got, mistakes, lang):
    if msg is None or not isinstance(got, (tuple, list)) or len(got) != 2:
        return msg
    for m in mistakes:
        if compare(got[1], m.expected[1], lang, tol=(0.0, 1e-6)) is None:
            return msg + L(lang, "\nHint: " + m.en, "\n提示：" + m.zh)
    if "codes" in msg:
        return msg + L(lang, "\nHint: the 16 NF4 levels are not evenly spaced; pick the nearest one to w/absmax "
                             "(argmin of |level − w/absmax|), and divide by the absmax of the element's own block.",
                       "\n提示：NF4 的 16 个级别不是等间距的；对 w/absmax 取最近的级别（|level − w/absmax| 的 argmin），"
                       "并且用元素所在块自己的 absmax 来除。")
    return msg


def error_hint(err: str, lang: str) -> str:
    if "view" in err or "shape" in err and "invalid" in err:
        return L(lang, "Hint: numel may not be a multiple of blocksize; handle the last partial block separately "
                       "(or pad it, then cut the padding off).",
                 "提示：numel 不一定是 blocksize 的整数倍；最后不满的一块单独处理（或先补齐再截掉）。")
    return ""


# ---------------------------------------------------------------------------------------------
DQ_PARAMS = ("packed", "qabsmax", "absmax_scale", "absmax_offset", "code8", "shape", "blocksize")


def dequantize_dq(g: torch.Generator) -> list[Case]:
    cases = []
    geoms = [((randint(g, 130, 140), randint(g, 125, 131) | 1), 64, torch.float32),   # > 256 blocks: 2 groups
             ((randint(g, 3, 9) * 64 + randint(g, 1, 63),), 64, torch.float32),        # odd numel, tail block
             ((randint(g, 5, 9), randint(g, 30, 60) | 1), 32, torch.bfloat16),
             ((17, 600 + randint(g, 0, 40)), 64, torch.float32)]
    for shape, bs, dtype in geoms:
        w = randn(g, *shape, dtype=dtype)
        q = quantize_nf4(w, blocksize=bs, double_quant=True)
        exp = dequantize_nf4(q, dtype=torch.float32)
        args = [q.packed, q.qabsmax, q.absmax_scale, q.absmax_offset, dynamic_map(), tuple(shape)]
        levels = nf4_codebook()
        codes = _codes(q).long()
        n = codes.numel()
        blk = torch.arange(n) // bs
        absmax = q.block_absmax()
        swapped = torch.stack([q.packed & 0xF, q.packed >> 4], 1).reshape(-1)[:n].long()
        no_offset = (dynamic_map()[q.qabsmax.long()].view(-1) * q.absmax_scale.repeat_interleave(256)[:absmax.numel()])
        mistakes = [Mistake("element 2i is in the HIGH nibble (byte >> 4), element 2i+1 in the low nibble (byte & 0xF).",
                            "第 2i 个元素在高 4 位（byte >> 4），第 2i+1 个在低 4 位（byte & 0xF）。",
                            (levels[swapped] * absmax[blk]).reshape(shape)),
                    Mistake("the dequantized absmax needs the offset added back: absmax = code8[q]·scale[g] + offset.",
                            "反量化的 absmax 要加回 offset：absmax = code8[q]·scale[g] + offset。",
                            (levels[codes] * no_offset[blk]).reshape(shape))]
        cases.append(Case(f"{dtype_name(dtype)} weight{tuple(shape)} blocksize={bs} ({absmax.numel()} blocks, "
                          f"{q.absmax_scale.numel()} groups of 256)", "dequantize_nf4_dq", args, exp, DQ_PARAMS,
                          kwargs={"blocksize": bs}, mistakes=mistakes, tol=(1e-6, 1e-6)))
    return cases
