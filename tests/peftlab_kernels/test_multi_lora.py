"""peftlab_kernels.multi_lora: BGMV / SGMV against the per-request loop, on the PyTorch path and (in a subprocess,
TRITON_INTERPRET=1, PEFTLAB_FORCE_TRITON=1) on the Triton twins."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from peftlab_kernels import multi_lora_native
from peftlab_kernels.multi_lora import (bgmv, bgmv_grouped_loop, bgmv_reference, bgmv_torch, segments_to_rows, sgmv,
                                stack_adapters)

ROOT = Path(__file__).resolve().parents[2]
# (T rows, K adapters, r, d_in, d_out): decode-like, more adapters than rows, odd sizes, r not a power of 2
SHAPES = [(64, 16, 16, 96, 80), (5, 9, 4, 33, 17), (1, 1, 8, 16, 16), (40, 3, 7, 50, 130)]


def _problem(T, K, r, d_in, d_out, seed=0, dtype=torch.float32, with_none=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, d_in, generator=g, dtype=dtype)
    A = torch.randn(K, r, d_in, generator=g, dtype=dtype) / d_in ** 0.5
    B = torch.randn(K, d_out, r, generator=g, dtype=dtype)          # B ≠ 0: the delta is not trivially zero
    s = torch.rand(K, generator=g, dtype=dtype) + 0.5
    idx = torch.randint(-1 if with_none else 0, K, (T,), generator=g)
    idx[0] = K - 1                                                   # at least one row has an adapter
    return x, A, B, idx, s


@pytest.mark.parametrize("shape", SHAPES)
def test_bgmv_matches_per_request_loop(shape):
    x, A, B, idx, s = _problem(*shape)
    want = bgmv_reference(x, A, B, idx, s)
    assert want.abs().max() > 0.1
    for got in (bgmv(x, A, B, idx, s), bgmv_torch(x, A, B, idx, s), bgmv_grouped_loop(x, A, B, idx, s)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


needs_native = pytest.mark.skipif(not multi_lora_native.available(), reason="no C compiler: PyTorch path")


@needs_native
@pytest.mark.parametrize("shape", SHAPES + [(64, 16, 16, 1024, 1024), (9, 64, 40, 17, 33), (33, 2, 32, 300, 20)])
@pytest.mark.parametrize("simd_loop", [True, False], ids=["simd", "scalar"])
def test_native_kernel_matches_per_request_loop(shape, simd_loop):
    """The C kernel: masked tails (d_in, d_out, r not multiples of 16), r > 16 (two tiles), groups of
    more than 8 rows (several row blocks), several thread counts; the SIMD and the plain C loop."""
    x, A, B, idx, s = _problem(*shape, seed=sum(shape))
    want = bgmv_reference(x, A, B, idx, s)
    tol = 1e-5 * float(want.abs().max())          # fp32 sums of up to 1024 terms, in another order
    for threads in (1, 2, 5):
        got = multi_lora_native.bgmv_native(x, A, B, idx, s, threads=threads, _simd=simd_loop)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=tol)


@needs_native
def test_bgmv_dispatches_to_the_c_kernel_and_back(monkeypatch):
    x, A, B, idx, s = _problem(*SHAPES[0])
    calls = []
    real = multi_lora_native.bgmv_native
    monkeypatch.setattr(multi_lora_native, "bgmv_native", lambda *a, **k: calls.append(1) or real(*a, **k))
    bgmv(x, A, B, idx, s)
    assert calls == [1]
    bgmv(x.double(), A.double(), B.double(), idx, s.double())        # fp64: the PyTorch path
    monkeypatch.setenv("PEFTLAB_NO_NATIVE", "1")
    torch.testing.assert_close(bgmv(x, A, B, idx, s), bgmv_reference(x, A, B, idx, s), rtol=1e-5, atol=1e-5)
    assert calls == [1]


def test_bgmv_none_rows_are_zero_and_others_untouched():
    x, A, B, _, s = _problem(12, 4, 8, 32, 24)
    idx = torch.tensor([-1, 0, -1, 3, 3, -1, 1, 2, -1, 0, 0, -1])
    y = bgmv(x, A, B, idx, s)
    assert torch.equal(y[idx == -1], torch.zeros_like(y[idx == -1]))
    assert (y[idx >= 0].abs().sum(1) > 0).all()
    all_none = bgmv(x, A, B, torch.full((12,), -1), s)
    assert torch.equal(all_none, torch.zeros_like(all_none))


def test_bgmv_each_row_uses_its_own_adapter():
    """Changing adapter 2 changes exactly the rows that name adapter 2."""
    x, A, B, idx, s = _problem(30, 5, 4, 20, 20, with_none=False)
    before = bgmv(x, A, B, idx, s)
    B2 = B.clone()
    B2[2] += 1.0
    after = bgmv(x, A, B2, idx, s)
    changed = (after - before).abs().amax(1) > 1e-6
    assert torch.equal(changed, idx == 2)


def test_sgmv_matches_bgmv_on_the_same_rows():
    x, A, B, _, s = _problem(50, 6, 8, 40, 36)
    starts = torch.tensor([0, 7, 7, 20, 33, 45])                     # one empty segment; rows 45.. uncovered
    adapters = torch.tensor([3, 0, -1, 5, 1])
    got = sgmv(x, A, B, starts, adapters, s)
    idx = segments_to_rows(starts, adapters, 50)
    assert idx[45:].eq(-1).all() and idx[7:20].eq(-1).all()
    torch.testing.assert_close(got, bgmv_reference(x, A, B, idx, s), rtol=1e-5, atol=1e-5)


def test_mixed_ranks_padding_is_exact():
    g = torch.Generator().manual_seed(3)
    ranks, d_in, d_out = [2, 8, 4], 24, 20
    As = [torch.randn(r, d_in, generator=g) for r in ranks]
    Bs = [torch.randn(d_out, r, generator=g) for r in ranks]
    A, B, s = stack_adapters(As, Bs, [2.0, 0.5, 1.0])
    assert A.shape == (3, 8, d_in) and B.shape == (3, d_out, 8)
    x = torch.randn(9, d_in, generator=g)
    idx = torch.tensor([0, 1, 2, 2, 1, 0, 0, 1, 2])
    want = torch.stack([float(s[a]) * (Bs[a] @ (As[a] @ x[t])) for t, a in enumerate(idx.tolist())])
    torch.testing.assert_close(bgmv(x, A, B, idx, s), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
def test_dtypes(dtype):
    x, A, B, idx, s = _problem(16, 4, 8, 32, 24, dtype=dtype)
    want = bgmv_reference(x.double(), A.double(), B.double(), idx, s.double())
    tol = 1e-12 if dtype == torch.float64 else 0.1
    got = bgmv_torch(x, A, B, idx, s)
    assert got.dtype == dtype
    torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol)


def test_bad_inputs_name_the_field():
    x, A, B, idx, s = _problem(8, 4, 8, 32, 24)
    with pytest.raises(ValueError, match="idx values .* allowed -1"):
        bgmv(x, A, B, torch.full((8,), 4), s)
    with pytest.raises(ValueError, match="idx must be an int64"):
        bgmv(x, A, B, idx.int(), s)
    with pytest.raises(ValueError, match="scaling.shape"):
        bgmv(x, A, B, idx, s[:3])
    with pytest.raises(ValueError, match="B.shape"):
        bgmv(x, A, B[:, :, :4], idx, s)
    with pytest.raises(ValueError, match="seg_starts"):
        sgmv(x, A, B, torch.tensor([0, 5, 3]), torch.tensor([0, 1]), s)
    with pytest.raises(ValueError, match="r_max"):
        stack_adapters([A[0]], [B[0]], [1.0], r_max=2)


TRITON_SCRIPT = r"""
import json, sys, torch
sys.path.insert(0, sys.argv[1])
from peftlab_kernels._dispatch import use_triton
from peftlab_kernels.multi_lora import bgmv, sgmv, bgmv_reference, segments_to_rows
assert use_triton(torch.zeros(1))
out = {}
g = torch.Generator().manual_seed(0)
for T, K, r, d_in, d_out in [(9, 4, 16, 40, 24), (3, 7, 4, 17, 33), (20, 2, 8, 64, 16)]:
    x = torch.randn(T, d_in, generator=g); A = torch.randn(K, r, d_in, generator=g)
    B = torch.randn(K, d_out, r, generator=g); s = torch.rand(K, generator=g) + 0.5
    idx = torch.randint(-1, K, (T,), generator=g)
    want = bgmv_reference(x, A, B, idx, s)
    out[f"bgmv {T}x{K}x{r}x{d_in}x{d_out}"] = (bgmv(x, A, B, idx, s) - want).abs().max().item() / want.abs().max().item()
    cut = sorted(torch.randint(0, T + 1, (3,), generator=g).tolist())
    starts = torch.tensor([0, *cut, T]); adapters = torch.randint(-1, K, (4,), generator=g)
    want = bgmv_reference(x, A, B, segments_to_rows(starts, adapters, T), s)
    got = sgmv(x, A, B, starts, adapters, s)
    out[f"sgmv {T}x{K}x{r}x{d_in}x{d_out}"] = (got - want).abs().max().item() / max(want.abs().max().item(), 1e-9)
print(json.dumps(out))
"""


def test_triton_twins_interpreted():
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="1", PEFTLAB_FORCE_TRITON="1")
    proc = subprocess.run([sys.executable, "-c", TRITON_SCRIPT, str(ROOT)], env=env, capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"interpreter run failed (rc={proc.returncode}):\n{proc.stderr[-3000:]}"
    rel_err = json.loads(lines[-1])
    assert len(rel_err) == 6
    for case, err in rel_err.items():
        assert err < 1e-5, f"{case}: relative error {err}"
