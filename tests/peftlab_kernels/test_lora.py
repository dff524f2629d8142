"""Fused LoRA linear: gradcheck in float64, parity with the unfused formula and with peft's layer."""
import pytest
import torch

from peftlab_kernels.lora import lora_linear, lora_linear_reference


def _inputs(N=6, d_in=5, d_out=7, r=3, dtype=torch.float64, bias=True, seed=0, lead=()):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*lead, N, d_in, generator=g, dtype=dtype, requires_grad=True)
    W = torch.randn(d_out, d_in, generator=g, dtype=dtype)
    b = torch.randn(d_out, generator=g, dtype=dtype) if bias else None
    A = torch.randn(r, d_in, generator=g, dtype=dtype, requires_grad=True)
    B = torch.randn(d_out, r, generator=g, dtype=dtype, requires_grad=True)  # B != 0: a real test
    return x, W, b, A, B


@pytest.mark.parametrize("bias", [True, False])
def test_gradcheck_float64(bias):
    x, W, b, A, B = _inputs(bias=bias)
    f = lambda x, A, B: lora_linear(x, W, b, A, B, 0.75)  # noqa: E731
    assert torch.autograd.gradcheck(f, (x, A, B), eps=1e-6, atol=1e-8)


@pytest.mark.parametrize("lead", [(), (2,), (2, 3)])
def test_matches_unfused_formula(lead):
    x, W, b, A, B = _inputs(dtype=torch.float32, lead=lead, N=4, d_in=16, d_out=12, r=4, seed=1)
    y = lora_linear(x, W, b, A, B, 2.0)
    g = torch.randn_like(y)
    grads = torch.autograd.grad(y, (x, A, B), g)
    x2, A2, B2 = (t.detach().clone().requires_grad_(True) for t in (x, A, B))
    y_ref = lora_linear_reference(x2, W, b, A2, B2, 2.0)
    grads_ref = torch.autograd.grad(y_ref, (x2, A2, B2), g)
    torch.testing.assert_close(y, y_ref)
    for got, want in zip(grads, grads_ref):
        torch.testing.assert_close(got, want)


def test_frozen_x_gives_no_x_grad():
    x, W, b, A, B = _inputs(dtype=torch.float32)
    x = x.detach()
    y = lora_linear(x, W, b, A, B, 1.0)
    y.sum().backward()
    assert x.grad is None and A.grad is not None and B.grad is not None


def test_matches_peft_lora_layer():
    peft = pytest.importorskip("peft")
    from peft import LoraConfig
    from peft.tuners.lora import Linear as PeftLoraLinear

    torch.manual_seed(0)
    base = torch.nn.Linear(16, 12, bias=True)
    cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0)
    layer = PeftLoraLinear(base, "default", config=cfg, r=4, lora_alpha=8)
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_()  # peft inits B = 0; make the branch non-trivial
    x = torch.randn(3, 5, 16)
    want = layer(x)
    got = lora_linear(x, base.weight.detach(), base.bias.detach(), layer.lora_A["default"].weight.detach(),
                      layer.lora_B["default"].weight.detach(), layer.scaling["default"])
    assert layer.scaling["default"] == 2.0
    torch.testing.assert_close(got, want.detach())


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda a: a.update(x=a["x"].long()), "x.dtype"),
        (lambda a: a.update(A=a["A"].float()), "lora_A.dtype"),
        (lambda a: a.update(B=a["B"][:, :2]), "lora_B.shape"),
        (lambda a: a.update(x=a["x"][..., :3]), "in_features"),
        (lambda a: a.update(W=a["W"].clone().requires_grad_(True)), "frozen"),
        (lambda a: a.update(s="2"), "scaling"),
        (lambda a: a.update(x=a["x"][:0]), "empty"),
    ],
)
def test_bad_inputs_name_the_field(mutate, match):
    x, W, b, A, B = _inputs()
    args = dict(x=x, W=W, b=b, A=A, B=B, s=1.0)
    mutate(args)
    with pytest.raises((TypeError, ValueError), match=match):
        lora_linear(args["x"], args["W"], args["b"], args["A"], args["B"], args["s"])
