"""Triton twins vs the PyTorch reference, run on CPU by Triton's interpreter.

Not collected by pytest (leading underscore): `test_triton_twins.py` runs this file in a subprocess
with TRITON_INTERPRET=1 and PEFTLAB_FORCE_TRITON=1 set before anything imports triton, then checks
one JSON line per case. Run by hand: `TRITON_INTERPRET=1 PEFTLAB_FORCE_TRITON=1 python <this file>`.
"""
import json
import os
import sys
import traceback

assert os.environ.get("TRITON_INTERPRET") == "1" and os.environ.get("PEFTLAB_FORCE_TRITON") == "1"
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

import torch  # noqa: E402

from peftlab_kernels._dispatch import use_triton  # noqa: E402
from peftlab_kernels.linear4bit import linear_4bit  # noqa: E402
from peftlab_kernels.lora import lora_linear, lora_linear_reference  # noqa: E402
from peftlab_kernels.nf4 import dequantize_4bit, quantize_4bit  # noqa: E402
from peftlab_kernels.quant4_torch import dequantize_4bit_reference, quantize_4bit_reference  # noqa: E402

DTYPES = (torch.float32, torch.bfloat16, torch.float16)
SHAPES = (((8, 64), 64), ((3, 50), 32), ((7,), 32), ((5, 33), 128))   # partial block, odd numel


def _weight(shape, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g) * 0.1
    w.view(-1)[:32] = 0.0                                                  # an all-zero block (bs 32)
    return w.to(dtype)


def case_dispatch_is_forced():
    assert use_triton(torch.zeros(1)), "PEFTLAB_FORCE_TRITON=1 must route CPU tensors to Triton"


def _quant_case(quant_type):
    for i, (shape, bs) in enumerate(SHAPES):
        for dtype in DTYPES:
            w = _weight(shape, dtype, i)
            q = quantize_4bit(w, quant_type, bs, double_quant=False)        # Triton (forced)
            packed, absmax = quantize_4bit_reference(w, bs, quant_type)
            assert torch.equal(q.packed, packed), f"packed differs {shape} {bs} {dtype}"
            assert torch.equal(q.absmax, absmax), f"absmax differs {shape} {bs} {dtype}"
            got = dequantize_4bit(q)                                        # Triton (forced)
            want = dequantize_4bit_reference(packed, absmax, w.shape, dtype, bs, quant_type)
            bits = torch.int32 if dtype == torch.float32 else torch.int16
            assert torch.equal(got.view(bits), want.view(bits)), f"dequant differs {shape} {bs} {dtype}"


def case_quantize_dequantize_nf4():
    _quant_case("nf4")


def case_quantize_dequantize_fp4():
    _quant_case("fp4")


def case_quantize_dequantize_int4():
    _quant_case("int4")


def case_ties_on_midpoints():
    from peftlab_kernels.codebooks import nf4_codebook

    code = nf4_codebook()
    mids = (code[:-1] + code[1:]) / 2
    w = torch.nn.functional.pad(torch.cat([torch.tensor([1.0]), mids]), (0, 16))   # (32,), absmax 1
    q = quantize_4bit(w, "nf4", 32, double_quant=False)
    assert torch.equal(q.packed, quantize_4bit_reference(w, 32, "nf4")[0])


def case_fused_matmul_4bit():
    g = torch.Generator().manual_seed(0)
    for (n_out, k, bs, bias) in ((24, 64, 64, True), (40, 96, 32, False), (17, 62, 32, True), (8, 63, 64, False)):
        w = torch.randn(n_out, k, generator=g) * 0.1
        q = quantize_4bit(w, "nf4", bs, double_quant=True)
        b = torch.randn(n_out, generator=g) if bias else None
        x = torch.randn(2, 5, k, generator=g, requires_grad=True)
        y = linear_4bit(x, q, b)                                            # fused kernel (forced)
        w_hat = dequantize_4bit_reference(q.packed, q.block_absmax(), q.shape, torch.float32, bs, "nf4")
        x_ref = x.detach().clone().requires_grad_(True)
        y_ref = torch.nn.functional.linear(x_ref, w_hat, b)
        torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
        gy = torch.randn_like(y)
        torch.testing.assert_close(torch.autograd.grad(y, x, gy)[0], torch.autograd.grad(y_ref, x_ref, gy)[0],
                                   rtol=1e-5, atol=1e-5)


def case_fused_lora_forward_backward():
    g = torch.Generator().manual_seed(1)
    for (n, d_in, d_out, r, bias) in ((7, 40, 24, 4, True), (33, 64, 48, 16, False), (5, 16, 20, 20, True)):
        x = torch.randn(n, d_in, generator=g, requires_grad=True)
        W = torch.randn(d_out, d_in, generator=g)
        b = torch.randn(d_out, generator=g) if bias else None
        A = torch.randn(r, d_in, generator=g, requires_grad=True)
        B = torch.randn(d_out, r, generator=g, requires_grad=True)
        y = lora_linear(x, W, b, A, B, 0.5)                                 # Triton (forced)
        gy = torch.randn_like(y)
        grads = torch.autograd.grad(y, (x, A, B), gy)
        xr, Ar, Br = (t.detach().clone().requires_grad_(True) for t in (x, A, B))
        yr = lora_linear_reference(xr, W, b, Ar, Br, 0.5)
        grads_ref = torch.autograd.grad(yr, (xr, Ar, Br), gy)
        torch.testing.assert_close(y, yr, rtol=1e-5, atol=1e-4)
        for got, want in zip(grads, grads_ref):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


CASES = {name[5:]: fn for name, fn in sorted(globals().items()) if name.startswith("case_")}

if __name__ == "__main__":
    only = sys.argv[1:] or list(CASES)
    for name in only:
        try:
            CASES[name]()
            print(json.dumps({"case": name, "ok": True, "msg": ""}), flush=True)
        except Exception as e:  # report and continue with the next case
            msg = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}"
            print(json.dumps({"case": name, "ok": False, "msg": msg}), flush=True)
