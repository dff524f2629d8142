"""linear_4bit: same output as bitsandbytes' Linear4bit on CPU; gradient to x only; frozen weight."""
import pytest
import torch

from peftlab_kernels.linear4bit import linear_4bit
from peftlab_kernels.nf4 import dequantize_nf4, quantize_4bit, quantize_nf4

bnb = pytest.importorskip("bitsandbytes")


def _bnb_layer(w, bias, quant_type, double_quant, compute_dtype):
    out_f, in_f = w.shape
    layer = bnb.nn.Linear4bit(in_f, out_f, bias=bias is not None, compute_dtype=compute_dtype,
                              quant_type=quant_type, compress_statistics=double_quant)
    layer.weight = bnb.nn.Params4bit(w.clone(), requires_grad=False, quant_type=quant_type,
                                     compress_statistics=double_quant, blocksize=64)
    if bias is not None:
        layer.bias = torch.nn.Parameter(bias.clone(), requires_grad=False)
    layer = layer.to("cpu")
    layer.train()   # eval mode on AVX512-BF16 CPUs repacks the weight for a bf16 gemv kernel
    return layer


@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
@pytest.mark.parametrize("double_quant", [True, False], ids=["dq", "plain"])
@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "nobias"])
def test_matches_bitsandbytes_linear4bit(quant_type, double_quant, use_bias):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(48, 128, generator=g) * 0.1
    bias = torch.randn(48, generator=g) if use_bias else None
    x = torch.randn(3, 5, 128, generator=g)
    want = _bnb_layer(w, bias, quant_type, double_quant, torch.float32)(x)
    got = linear_4bit(x, quantize_4bit(w, quant_type, 64, double_quant), bias)
    assert torch.equal(got, want.detach())


def test_bf16_input_computes_in_fp32_on_cpu_like_bnb():
    g = torch.Generator().manual_seed(1)
    w = (torch.randn(32, 64, generator=g) * 0.1).to(torch.bfloat16)
    x = torch.randn(4, 64, generator=g).to(torch.bfloat16)
    want = _bnb_layer(w, None, "nf4", True, torch.float32)(x)
    got = linear_4bit(x, quantize_nf4(w))
    assert got.dtype == torch.bfloat16 and torch.equal(got, want.detach())


def test_backward_gives_grad_to_x_only_and_matches_dense():
    g = torch.Generator().manual_seed(2)
    q = quantize_nf4(torch.randn(24, 64, generator=g))
    w_hat = dequantize_nf4(q)
    bias = torch.randn(24, generator=g)
    x = torch.randn(2, 7, 64, generator=g, requires_grad=True)
    y = linear_4bit(x, q, bias)
    gy = torch.randn_like(y)
    (dx,) = torch.autograd.grad(y, x, gy)
    x_ref = x.detach().clone().requires_grad_(True)
    y_ref = torch.nn.functional.linear(x_ref, w_hat, bias)
    (dx_ref,) = torch.autograd.grad(y_ref, x_ref, gy)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(dx, dx_ref)


def test_gradcheck_float64_through_frozen_weight():
    q = quantize_nf4(torch.randn(6, 64))
    x = torch.randn(3, 64, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: linear_4bit(x, q, compute_dtype=torch.float64), (x,))


def test_lora_trains_on_top_of_it():
    """QLoRA in miniature: loss goes down with only A, B trainable over a frozen 4-bit base."""
    g = torch.Generator().manual_seed(3)
    q = quantize_nf4(torch.randn(16, 64, generator=g))
    A = (torch.randn(4, 64, generator=g) * 0.01).requires_grad_(True)
    B = torch.zeros(16, 4, requires_grad=True)
    x, target = torch.randn(32, 64, generator=g), torch.randn(32, 16, generator=g)
    opt = torch.optim.SGD([A, B], lr=0.05)
    losses = []
    for _ in range(30):
        y = linear_4bit(x, q) + (x @ A.t()) @ B.t()
        loss = ((y - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]


@pytest.mark.parametrize(
    "call, err, match",
    [
        (lambda q: linear_4bit(torch.randn(2, 63), q), ValueError, "in_features=64"),
        (lambda q: linear_4bit(torch.arange(64), q), TypeError, "torch.int64"),
        (lambda q: linear_4bit(torch.randn(0, 64), q), ValueError, "empty"),
        (lambda q: linear_4bit(torch.randn(2, 64), torch.randn(8, 64)), TypeError, "NF4Tensor"),
        (lambda q: linear_4bit(torch.randn(2, 64), q, torch.zeros(7)), ValueError, "bias.shape"),
        (lambda q: linear_4bit(torch.randn(2, 64), q, torch.zeros(8, requires_grad=True)), ValueError, "frozen"),
        (lambda q: linear_4bit(torch.randn(2, 64), quantize_nf4(torch.randn(512))), ValueError, "2-D"),
    ],
)
def test_bad_input(call, err, match):
    q = quantize_nf4(torch.randn(8, 64))
    with pytest.raises(err, match=match):
        call(q)
