"""Every registered method: applies to a tiny model, only its own tensors train, training changes the output, and it
round-trips on disk."""
from __future__ import annotations

import pytest
import torch

from labs.methods import METHODS, apply_method, get_method, hooks_for, io, on_step_end, trainable_report
from tests.methods.helpers import batch, max_diff, twins

CFG = {
    "lora": dict(r=2, lora_alpha=4), "rslora": dict(r=4, lora_alpha=4), "dora": dict(r=2, lora_alpha=4),
    "qlora": dict(r=2, lora_alpha=4, target_modules=["q_proj"]),
    "adalora": dict(total_step=4, init_r=3, target_r=1, target_modules=["q_proj", "v_proj"]),
    "prompt": dict(num_virtual_tokens=3), "prefix": dict(num_virtual_tokens=3),
    "ptuning-v2": dict(num_virtual_tokens=3, encoder_hidden_size=16), "houlsby": dict(bottleneck=4),
    "llama-adapter": dict(adapter_len=3),
    "ia3": dict(target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"]),
    "vera": dict(r=4, target_modules=["q_proj", "v_proj"]),
    "pissa": dict(r=2, lora_alpha=4), "loftq": dict(r=2, lora_alpha=4, target_modules=["q_proj"], loftq_iter=2),
}


def test_every_method_is_configured_here():
    assert set(CFG) == set(METHODS)


@pytest.mark.parametrize("name", METHODS)
def test_method_trains_only_its_parameters_and_round_trips(name, tmp_path):
    m, fresh = twins()
    ids, mask = batch()
    m = apply_method(m, name, **CFG[name])
    rep = trainable_report(m)
    assert 0 < rep["trainable"] < rep["total"] and 0 < rep["percent"] < 100
    m.eval()
    with torch.no_grad():
        start = m(input_ids=ids, attention_mask=mask).logits                     # as applied, before training
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.5)
    m.train()
    for step in (1, 2):
        loss = m(input_ids=ids, attention_mask=mask, labels=ids).loss
        loss.backward()
        assert all(p.grad is None for p in m.parameters() if not p.requires_grad)
        opt.step()
        on_step_end(m, step)
        opt.zero_grad()
    m.eval()
    out = m(input_ids=ids, attention_mask=mask).logits
    assert max_diff(out, start) > 1e-6, f"{name}: two SGD steps left the output unchanged"    # AdaLoRA: Λ starts at 0
    io.save(m, tmp_path)
    loaded = io.load(fresh, tmp_path).eval()
    assert max_diff(loaded(input_ids=ids, attention_mask=mask).logits, out) <= 1e-5


def test_unknown_method_and_clashing_switch():
    with pytest.raises(ValueError, match="method='bitfit'"):
        get_method("bitfit")
    with pytest.raises(ValueError, match="fixes"):
        apply_method(twins()[0], "dora", use_dora=False)


def test_hooks_for_adalora_and_others():
    assert hooks_for(apply_method(twins()[0], "lora")) == {}
    m = apply_method(twins()[0], "adalora", total_step=3, init_r=2, target_r=1, target_modules=["q_proj"])
    hooks = hooks_for(m)
    assert set(hooks) == {"extra_loss", "after_step"}
    assert hooks["extra_loss"](m).item() > 0
    ids, mask = batch()
    m(input_ids=ids, labels=ids).loss.backward()
    record = hooks["after_step"](3)
    assert record["budget"] == 2 and sum(record["ranks"].values()) == 2
