"""Houlsby adapters (identity at init, gradient check) and LLaMA-Adapter (parity with peft's adaption prompt)."""
from __future__ import annotations

import pytest
import torch
from peft import AdaptionPromptConfig, get_peft_model

from labs.methods import apply_method, io, trainable_report
from labs.methods.adapters import AdaptedAttention, BottleneckAdapter, apply_houlsby, apply_llama_adapter
from tests.methods.helpers import batch, max_diff, twins

TOL = 1e-5


@pytest.mark.parametrize("arch", ["llama", "mistral"])
def test_llama_adapter_parity_with_peft(arch):
    ours, theirs = twins(arch, num_hidden_layers=3)
    ids, mask = batch()
    base = ours(input_ids=ids, attention_mask=mask).logits
    pm = get_peft_model(theirs, AdaptionPromptConfig(task_type="CAUSAL_LM", adapter_len=4, adapter_layers=2)).eval()
    ours = apply_llama_adapter(ours, adapter_len=4, adapter_layers=2).eval()
    with torch.no_grad():
        for i in (1, 2):
            theirs_attn = pm.base_model.model.model.layers[i].self_attn
            theirs_attn.adaption_gate.fill_(0.5 + i)               # non-zero gate: the prompts really act
            ours.model.layers[i].self_attn.adaption_prompt.copy_(theirs_attn.adaption_prompt)
            ours.model.layers[i].self_attn.adaption_gate.copy_(theirs_attn.adaption_gate)
    assert not isinstance(ours.model.layers[0].self_attn, AdaptedAttention)
    assert trainable_report(ours)["trainable"] == pm.get_nb_trainable_parameters()[0] == 2 * (4 * 64 + 1)
    got = ours(input_ids=ids, attention_mask=mask).logits
    want = pm(input_ids=ids, attention_mask=mask).logits
    assert max_diff(got, base) > 1e-3
    assert max_diff(got, want) <= TOL


def test_llama_adapter_zero_gate_is_identity_and_gate_learns():
    m, ref = twins()
    ids, mask = batch()
    apply_llama_adapter(m, adapter_len=3, adapter_layers=1)
    out = m(input_ids=ids, attention_mask=mask, labels=ids)
    assert max_diff(out.logits, ref(input_ids=ids, attention_mask=mask).logits) <= TOL
    out.loss.backward()
    attn = m.model.layers[-1].self_attn
    assert attn.adaption_gate.grad.abs().item() > 0             # the gate gets a gradient at g = 0
    assert attn.adaption_prompt.grad.abs().max().item() == 0    # the prompts wait until the gate opens
    with pytest.raises(ValueError, match="adapter_layers=5"):
        apply_llama_adapter(twins()[0], adapter_layers=5)


def test_houlsby_near_identity_at_init_and_exact_with_zero_std():
    m, ref = twins()
    ids, mask = batch()
    base = ref(input_ids=ids, attention_mask=mask).logits
    apply_houlsby(m, bottleneck=8)
    near = max_diff(m(input_ids=ids, attention_mask=mask).logits, base)
    m0, _ = twins()
    apply_houlsby(m0, bottleneck=8, init_std=0.0)
    assert max_diff(m0(input_ids=ids, attention_mask=mask).logits, base) == 0.0
    m1, _ = twins()
    apply_houlsby(m1, bottleneck=8, init_std=1.0)
    far = max_diff(m1(input_ids=ids, attention_mask=mask).logits, base)
    assert 0 < near < 1e-2 < far


def test_houlsby_gradcheck_and_trainable_params():
    torch.manual_seed(0)
    ad = BottleneckAdapter(6, 3, "gelu", init_std=0.5).double()
    h = torch.randn(2, 4, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(ad, (h,))
    m, _ = twins()
    apply_houlsby(m, bottleneck=8, train_layernorm=False)
    d, layers = 64, 2
    assert trainable_report(m)["trainable"] == layers * 2 * (d * 8 + 8 + 8 * d + d)
    ids, mask = batch()
    m(input_ids=ids, attention_mask=mask, labels=ids).loss.backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)
    assert all(p.grad is None for p in m.parameters() if not p.requires_grad)
    m2, _ = twins()
    apply_houlsby(m2, bottleneck=8, train_layernorm=True)
    norms = 2 * layers * d + d - d   # input/post-attention norms per layer (final norm is outside the layers)
    assert trainable_report(m2)["trainable"] == trainable_report(m)["trainable"] + norms


@pytest.mark.parametrize("name,cfg", [("houlsby", dict(bottleneck=4)), ("llama-adapter", dict(adapter_len=3))])
def test_adapter_save_load(tmp_path, name, cfg):
    m, fresh = twins()
    ids, mask = batch()
    m = apply_method(m, name, **cfg).eval()
    with torch.no_grad():
        for p in m.parameters():
            if p.requires_grad:
                p.add_(0.3)
    io.save(m, tmp_path)
    loaded = io.load(fresh, tmp_path).eval()
    assert max_diff(loaded(input_ids=ids, attention_mask=mask).logits,
                    m(input_ids=ids, attention_mask=mask).logits) <= TOL
