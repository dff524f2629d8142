"""Quantization probe, for any model: quantize a set of linears to 4 bits, measure what that costs, put them back.

    mods = {name: nn.Linear}                       whichever linears the caller picks (Llama decoder, BERT encoder)
    deq, summary = quantize_layers(mods, "nf4", 64, True)     Ŵ per layer; errors and bytes from the real buffers
    with swapped(mods, deq):                       the model now computes with Ŵ …
        quality = evaluate(model)
                                                   … and with W again here
    double_quant_bits(mods, 64)                    NF4 storage without / with double quantization, measured
                                                   and by formula: 4 + 32/B  vs  4 + 8/B + 32/(256·B)
    bnb_parity(mods, 64, True)                     our codes, scales and Ŵ vs bitsandbytes' (bit for bit)

Both NF4 labs (the bundled Llama and all-MiniLM-L6-v2) use it; neither knows the other. Formats, block sizes
and the 256-constant second-level block come from the kernels layer (peftlab_kernels).
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import torch

from peftlab_kernels.blockwise8 import DQ_BLOCKSIZE
from peftlab_kernels.codebooks import CODEBOOKS
from peftlab_kernels.nf4 import dequantize_4bit, quantize_4bit

FORMATS = tuple(CODEBOOKS)            # ("nf4", "fp4", "int4")


def bits_formula(blocksize: int, double_quant: bool) -> float:
    """Bits per weight by formula: 4-bit codes + one fp32 absmax per block, or with double quantization one
    8-bit absmax per block + one fp32 scale per DQ_BLOCKSIZE (256) absmaxes."""
    return 4 + (8 / blocksize + 32 / (DQ_BLOCKSIZE * blocksize) if double_quant else 32 / blocksize)


def layer_error(w: torch.Tensor, wq: torch.Tensor, blocksize: int) -> dict:
    """Errors of one reconstruction; blocks are `blocksize` consecutive elements of the flattened weight."""
    w, wq = w.float().reshape(-1), wq.float().reshape(-1)                 # (n,)
    err = (w - wq) ** 2
    full = w.numel() - w.numel() % blocksize
    blocks = err[:full].view(-1, blocksize)                                # (B, bs)
    wb, qb = w[:full].view(-1, blocksize), wq[:full].view(-1, blocksize)
    arg = wb.abs().argmax(1, keepdim=True)                                 # (B, 1) the block's max-|w| element
    exact = (wb.gather(1, arg) == qb.gather(1, arg)).float().mean().item() if full else float("nan")
    return {"mse": err.mean().item(), "rel_err": (err.sum().sqrt() / w.norm()).item(),
            "worst_block_mse": blocks.mean(1).max().item() if full else err.mean().item(),
            "max_exact": exact, "numel": w.numel()}


def quantize_layers(mods: dict, fmt: str, blocksize: int, double_quant: bool) -> tuple[dict, dict]:
    """{name: Ŵ} and a summary: per-layer errors, total bytes and bits/param from the real buffers."""
    deq, layers, nbytes, numel, sq_err, sq_w = {}, [], 0, 0, 0.0, 0.0
    for name, m in mods.items():
        w = m.weight.detach()
        q = quantize_4bit(w, fmt, blocksize, double_quant)
        deq[name] = dequantize_4bit(q)
        e = layer_error(w, deq[name], blocksize)
        layers.append({"name": name, **e, "bits_per_param": q.bits_per_param()})
        nbytes, numel = nbytes + q.nbytes(), numel + q.numel()
        sq_err += e["mse"] * e["numel"]
        sq_w += w.float().pow(2).sum().item()
    summary = {"bytes": nbytes, "fp32_bytes": 4 * numel, "bits_per_param": 8 * nbytes / numel,
               "mse": sq_err / numel, "rel_err": math.sqrt(sq_err / sq_w), "layers": layers}
    return deq, summary


@contextmanager
@torch.no_grad()
def swapped(mods: dict, weights: dict):
    """Inside the block the modules compute with `weights`; their own weights are back afterwards, even on error."""
    saved = {n: m.weight.detach().clone() for n, m in mods.items()}
    for n, m in mods.items():
        m.weight.copy_(weights[n].to(m.weight.dtype))
    try:
        yield mods
    finally:
        for n, m in mods.items():
            m.weight.copy_(saved[n])


def double_quant_bits(mods: dict, blocksize: int) -> dict:
    """NF4 storage of these weights, from the real buffers, without and with double quantization."""
    out = {}
    for dq in (False, True):
        qs = [quantize_4bit(m.weight.detach(), "nf4", blocksize, dq) for m in mods.values()]
        nbytes, numel = sum(q.nbytes() for q in qs), sum(q.numel() for q in qs)
        out["dq" if dq else "plain"] = {"bytes": nbytes, "bits_per_param": 8 * nbytes / numel}
        out["weights"] = numel
    out.update(bits_plain=out["plain"]["bits_per_param"], bits_dq=out["dq"]["bits_per_param"],
               bits_formula_plain=bits_formula(blocksize, False), bits_formula_dq=bits_formula(blocksize, True),
               saved_bytes=out["plain"]["bytes"] - out["dq"]["bytes"])
    return out


def roundtrip(w: torch.Tensor, fmt: str, blocksize: int, double_quant: bool) -> dict:
    """Re-quantize the dequantized weight: without double quant the codes are a fixed point (FP4 may swap
    −0 for +0, the same value); with it the 8-bit scales are re-derived, so values move by that rounding."""
    q1 = quantize_4bit(w, fmt, blocksize, double_quant)
    d1 = dequantize_4bit(q1)
    q2 = quantize_4bit(d1, fmt, blocksize, double_quant)
    d2 = dequantize_4bit(q2)
    c1, c2 = (torch.stack([q.packed >> 4, q.packed & 0xF], 1).reshape(-1)[:w.numel()] for q in (q1, q2))
    return {"codes_equal": bool(torch.equal(c1, c2)), "codes_differing": int((c1 != c2).sum()),
            "dequantized_equal": bool(torch.equal(d1, d2)), "max_abs_change": (d1 - d2).abs().max().item()}


def weight_stats(w: torch.Tensor, bins: int = 61, span: float = 6.0) -> dict:
    """Excess kurtosis, 3σ tail share and a histogram of (w − μ)/σ on [−span, span] with the N(0,1) density."""
    x = w.detach().double().reshape(-1)
    mu, sigma = x.mean(), x.std()
    z = (x - mu) / sigma
    kurt = z.pow(4).mean().item() - 3.0
    gauss_tail = math.erfc(3 / math.sqrt(2))                                   # P(|z| > 3) = 0.27%
    edges = torch.linspace(-span, span, bins + 1, dtype=torch.float64)
    counts = torch.histc(z.clamp(-span, span), bins=bins, min=-span, max=span)
    width = (edges[1] - edges[0]).item()
    centers = (edges[:-1] + edges[1:]) / 2
    return {"kurtosis": kurt, "std": sigma.item(), "mean": mu.item(), "absmax_sigmas": z.abs().max().item(),
            "tail_3sigma": (z.abs() > 3).double().mean().item(), "gauss_tail_3sigma": gauss_tail,
            "centers": centers.tolist(), "density": (counts / (x.numel() * width)).tolist(),
            "gauss_density": (torch.exp(-centers ** 2 / 2) / math.sqrt(2 * math.pi)).tolist()}


def bnb_parity(mods: dict, blocksize: int, double_quant: bool) -> dict:
    """Our packed codes, scales and dequantized weights vs bitsandbytes' on the same tensors (NF4, FP4)."""
    try:
        from labs.hf import import_bitsandbytes

        bnb = import_bitsandbytes()
        F = bnb.functional
    except Exception as err:  # ImportError, or a CUDA build that fails to load
        return {"available": False, "reason": f"bitsandbytes unavailable: {type(err).__name__}: {err}"}
    rows = []
    for fmt in ("nf4", "fp4"):
        for name, m in mods.items():
            w = m.weight.detach()
            ours = quantize_4bit(w, fmt, blocksize, double_quant)
            packed, state = F.quantize_4bit(w, blocksize=blocksize, quant_type=fmt, compress_statistics=double_quant)
            theirs = F.dequantize_4bit(packed, state)
            absmax_ok = (torch.equal(ours.qabsmax, state.absmax) and torch.equal(ours.absmax_scale, state.state2.absmax)
                         if double_quant else torch.equal(ours.absmax, state.absmax))
            rows.append({"format": fmt, "name": name, "numel": w.numel(),
                         "packed_equal": bool(torch.equal(ours.packed, packed.reshape(-1))),
                         "bytes_differing": int((ours.packed != packed.reshape(-1)).sum()),
                         "absmax_equal": bool(absmax_ok),
                         "dequantized_equal": bool(torch.equal(dequantize_4bit(ours), theirs))})
    return {"available": True, "version": bnb.__version__, "rows": rows,
            "all_equal": all(r["packed_equal"] and r["absmax_equal"] and r["dequantized_equal"] for r in rows)}
