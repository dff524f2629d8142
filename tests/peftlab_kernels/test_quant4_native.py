"""The fused C dequantize loop (peftlab_kernels/csrc/quant4_cpu.c): bit-exact with the PyTorch reference.

bitsandbytes parity of the public `dequantize_4bit` (which dispatches here on CPU) is in
test_nf4.py; these tests pin the C loop itself: every dtype and code, the SIMD and scalar loops,
thread splits, subnormal and overflowing products, double-quant decoding, bad arguments, and the
fallback when there is no compiler.
"""
import shutil

import pytest
import torch

from peftlab_kernels import _native
from peftlab_kernels._dispatch import use_native
from peftlab_kernels.blockwise8 import double_dequantize, double_quantize
from peftlab_kernels.nf4 import dequantize_4bit, quantize_4bit
from peftlab_kernels.quant4_native import available, dequantize_4bit_native, simd
from peftlab_kernels.quant4_torch import dequantize_4bit_reference, quantize_4bit_fast

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
HAS_CC = any(shutil.which(c) for c in ("cc", "gcc", "clang"))
needs_native = pytest.mark.skipif(not available(), reason="no C compiler: the PyTorch path is used")


def _bits(t):
    return t.view({4: torch.int32, 2: torch.int16}[t.element_size()])


def test_native_builds_where_a_compiler_exists():
    """CI has gcc: a C source that stops compiling must fail here, not silently fall back."""
    if HAS_CC:
        assert available(), _native.status()
        assert _native.status()["quant4_cpu"] == "loaded"


def _check(w, bs, quant_type, **kw):
    pf, af = quantize_4bit_fast(w, bs, quant_type)
    for dtype in DTYPES:
        ref = dequantize_4bit_reference(pf, af, w.shape, dtype, bs, quant_type)
        got = dequantize_4bit_native(pf, w.shape, dtype, bs, quant_type, absmax=af, **kw)
        assert got.shape == w.shape and got.dtype == dtype
        assert torch.equal(_bits(got), _bits(ref)), (tuple(w.shape), bs, quant_type, dtype, kw)
        qa, sc, off = double_quantize(af)
        ref = dequantize_4bit_reference(pf, double_dequantize(qa, sc, off), w.shape, dtype, bs, quant_type)
        got = dequantize_4bit_native(pf, w.shape, dtype, bs, quant_type, dq_state=(qa, sc, off), **kw)
        assert torch.equal(_bits(got), _bits(ref)), ("dq", tuple(w.shape), bs, quant_type, dtype, kw)


@needs_native
@pytest.mark.parametrize("quant_type", ["nf4", "fp4", "int4"])
@pytest.mark.parametrize("simd_loop", [True, False], ids=["simd", "scalar"])
def test_equals_reference_every_shape_and_blocksize(quant_type, simd_loop):
    g = torch.Generator().manual_seed(11)
    # whole blocks, partial last block, odd numel, fewer than 32 elements, a block larger than the tensor
    for shape, bs in [((64, 64), 64), ((33, 65), 32), ((7,), 64), ((31,), 32), ((2, 300), 256),
                      ((1, 4099), 4096), ((96, 128), 128), ((5, 1001), 1024), ((3, 2048), 2048)]:
        w = torch.randn(shape, generator=g) * 0.1
        _check(w, bs, quant_type, _simd=simd_loop)


@needs_native
@pytest.mark.parametrize("threads", [1, 2, 3, 7])
def test_thread_splits_write_every_element_once(threads):
    n = 3 * (1 << 18) + 77                                  # several slices of ≥ 2^18, a ragged end
    w = torch.randn(n, generator=torch.Generator().manual_seed(threads))
    _check(w, 64, "nf4", threads=threads)


@needs_native
def test_subnormal_and_overflowing_products():
    """bf16 keeps subnormals (vcvtneps2bf16 would flush them); fp16 underflows to subnormals
    and overflows to inf exactly as torch's casts do."""
    g = torch.Generator().manual_seed(5)
    for scale in (1e-39, 3e-42, 1e-30, 1e-6, 7e4, 1e5, 1e37):   # finite: quantize rejects inf/NaN
        w = torch.randn(4, 96, generator=g) * scale
        _check(w, 32, "nf4")
        _check(w, 32, "nf4", _simd=False)


@needs_native
def test_public_dequantize_dispatches_here_and_matches_torch_path(monkeypatch):
    w = torch.randn(40, 72, generator=torch.Generator().manual_seed(2)).to(torch.bfloat16)
    q = quantize_4bit(w, "nf4", 64, True)
    assert use_native(q.packed)
    native = dequantize_4bit(q)
    monkeypatch.setenv("PEFTLAB_NO_NATIVE", "1")
    assert not use_native(q.packed)
    assert torch.equal(_bits(dequantize_4bit(q)), _bits(native))


@needs_native
def test_out_buffer_and_bad_arguments():
    pf, af = quantize_4bit_fast(torch.randn(8, 64), 64, "nf4")
    shape = torch.Size([8, 64])
    out = torch.full(shape, 7.0)
    got = dequantize_4bit_native(pf, shape, torch.float32, 64, "nf4", absmax=af, out=out)
    assert got.data_ptr() == out.data_ptr()
    assert torch.equal(got, dequantize_4bit_reference(pf, af, shape, torch.float32, 64, "nf4"))
    with pytest.raises(ValueError, match="out must be"):
        dequantize_4bit_native(pf, shape, torch.float32, 64, "nf4", absmax=af, out=torch.empty(8, 63))
    with pytest.raises(ValueError, match="exactly one"):
        dequantize_4bit_native(pf, shape, torch.float32, 64, "nf4")
    with pytest.raises(ValueError, match="packed"):
        dequantize_4bit_native(pf[:10], shape, torch.float32, 64, "nf4", absmax=af)
    with pytest.raises(ValueError, match="absmax has 2 values"):
        dequantize_4bit_native(pf, shape, torch.float32, 64, "nf4", absmax=af[:2])


def test_no_compiler_falls_back_with_a_reason(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", "false")                      # exists, always fails
    monkeypatch.setenv("PEFTLAB_NATIVE_DIR", str(tmp_path))
    monkeypatch.setattr(_native, "_compiler", lambda: shutil.which("false"))
    _native.library.cache_clear()
    try:
        assert _native.library("quant4_cpu") is None
        assert "build failed" in _native.status()["quant4_cpu"]
        assert not list(tmp_path.glob("*.so")) and not list(tmp_path.glob(".*"))   # no half-written file
    finally:
        _native.library.cache_clear()
        _native._why.clear()


def test_off_switch(monkeypatch):
    monkeypatch.setenv("PEFTLAB_NO_NATIVE", "1")
    _native.library.cache_clear()
    try:
        assert _native.library("quant4_cpu") is None
        assert "off" in _native.status()["quant4_cpu"]
    finally:
        _native.library.cache_clear()
        _native._why.clear()


@needs_native
def test_simd_flag_reports_cpu():
    with open("/proc/cpuinfo") as f:
        flags = f.read()
    has = " avx512f" in flags and " avx512bw" in flags
    assert simd() == has


@needs_native
@pytest.mark.parametrize("simd_loop", [True, False], ids=["simd", "scalar"])
def test_rounding_over_random_bit_patterns(simd_loop):
    """Scales drawn as raw fp32 bit patterns over the whole finite range (subnormals, ties at
    0x8000, values that round to inf in fp16 and bf16), codes drawn at random including the
    levels ±1 and 0: every cast decision of the C loop is compared with torch's."""
    g = torch.Generator().manual_seed(9)
    n_blocks = 1 << 12
    bits = torch.randint(0, 0x7F800000, (n_blocks,), generator=g, dtype=torch.int64)
    bits[::4] = (bits[::4] & ~0xFFFF) | 0x8000                                 # exact bf16 ties
    bits[1::8] = (bits[1::8] & ~0x1FFF) | 0x1000                               # exact fp16 ties
    absmax = bits.to(torch.int32).view(torch.float32)
    negative = torch.rand(n_blocks, generator=g) < 0.5
    absmax = torch.where(negative, -absmax, absmax)                            # flips the sign bit only
    assert torch.isfinite(absmax).all()
    packed = torch.randint(0, 256, (n_blocks * 16,), generator=g, dtype=torch.uint8)
    shape = torch.Size([n_blocks * 32])
    for quant_type in ("nf4", "fp4", "int4"):
        for dtype in DTYPES:
            ref = dequantize_4bit_reference(packed, absmax, shape, dtype, 32, quant_type)
            got = dequantize_4bit_native(packed, shape, dtype, 32, quant_type, absmax=absmax, _simd=simd_loop)
            assert torch.equal(_bits(got), _bits(ref)), (quant_type, dtype)


def test_unwritable_cache_dir_falls_back_to_temp(monkeypatch, tmp_path):
    if not HAS_CC:
        pytest.skip("no C compiler")
    blocker = tmp_path / "a-file"                       # a directory cannot be made under a file (even as root)
    blocker.write_text("x")
    monkeypatch.setenv("PEFTLAB_NATIVE_DIR", str(blocker / "native"))
    monkeypatch.setattr(_native.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    built = _native._build("quant4_cpu", _native._compiler())
    assert built.exists() and str(built).startswith(str(tmp_path / "tmp"))
