"""Prompt tuning, prefix tuning and P-tuning v2 against peft: same weights, fp32, logits within 1e-5."""
from __future__ import annotations

import pytest
import torch
from peft import PrefixTuningConfig, PromptTuningConfig, get_peft_model

from labs.methods import apply_method, io, trainable_report
from labs.methods.prompts import apply_prefix_tuning, apply_prompt_tuning
from tests.methods.helpers import batch, max_diff, randomize_, twins

TOL = 1e-5
N = 5


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_prompt_tuning_parity(arch):
    ours, theirs = twins(arch)
    ids, mask = batch()
    pm = get_peft_model(theirs, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=N)).eval()
    ours = apply_prompt_tuning(ours, num_virtual_tokens=N).eval()
    with torch.no_grad():
        ours.embedding.weight.copy_(pm.prompt_encoder["default"].embedding.weight)
    assert trainable_report(ours)["trainable"] == pm.get_nb_trainable_parameters()[0] == N * 64
    assert trainable_report(ours)["total"] == pm.get_nb_trainable_parameters()[1]
    got = ours(input_ids=ids, attention_mask=mask, labels=ids)
    want = pm(input_ids=ids, attention_mask=mask, labels=ids)
    assert got.logits.shape == (*ids.shape, 128)
    assert max_diff(got.logits, want.logits[:, N:]) <= TOL
    assert abs(got.loss.item() - want.loss.item()) <= TOL
    base = ours.base_model(input_ids=ids, attention_mask=mask).logits
    assert max_diff(got.logits, base) > 1e-3


@pytest.mark.parametrize("arch,projection", [("llama", False), ("llama", True), ("mistral", False),
                                             ("qwen2", True)])
def test_prefix_tuning_parity(arch, projection):
    ours, theirs = twins(arch)
    ids, mask = batch()
    pm = get_peft_model(theirs, PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=N,
                                                   prefix_projection=projection, encoder_hidden_size=24)).eval()
    ours = apply_prefix_tuning(ours, num_virtual_tokens=N, prefix_projection=projection,
                               encoder_hidden_size=24).eval()
    randomize_([p for _, p in pm.prompt_encoder.named_parameters()], std=0.5)
    ours.prompt_encoder.load_state_dict(pm.prompt_encoder["default"].state_dict())
    assert trainable_report(ours)["trainable"] == pm.get_nb_trainable_parameters()[0]
    assert trainable_report(ours)["total"] == pm.get_nb_trainable_parameters()[1]
    got = ours(input_ids=ids, attention_mask=mask, labels=ids)
    want = pm(input_ids=ids, attention_mask=mask, labels=ids)
    assert max_diff(got.logits, want.logits) <= TOL
    assert abs(got.loss.item() - want.loss.item()) <= TOL
    assert max_diff(got.logits, ours.base_model(input_ids=ids, attention_mask=mask).logits) > 1e-3


def test_prefix_gets_gradients_and_base_does_not():
    m, _ = twins()
    ids, mask = batch()
    m = apply_method(m, "ptuning-v2", num_virtual_tokens=3)
    m(input_ids=ids, attention_mask=mask, labels=ids).loss.backward()
    grads = {n: p.grad for n, p in m.named_parameters() if p.requires_grad}
    assert set(grads) == {"prompt_encoder.embedding.weight", "prompt_encoder.transform.0.weight",
                          "prompt_encoder.transform.0.bias", "prompt_encoder.transform.2.weight",
                          "prompt_encoder.transform.2.bias"}
    assert all(g is not None and g.abs().max() > 0 for g in grads.values())


def test_prompt_inits():
    m, _ = twins()
    word = m.get_input_embeddings().weight
    w = apply_prompt_tuning(m, num_virtual_tokens=4, init="vocab", seed=0).embedding.weight
    assert all(any(torch.equal(row, v) for v in word) for row in w)

    class Tok:
        def __call__(self, text):
            return {"input_ids": [ord(c) % 128 for c in text]}

    m2, _ = twins()
    w2 = apply_prompt_tuning(m2, num_virtual_tokens=5, init="text", init_text="ab", tokenizer=Tok()).embedding.weight
    ids = [97, 98, 97, 98, 97]
    assert torch.equal(w2, m2.get_input_embeddings().weight[ids])
    with pytest.raises(ValueError, match="init='text' needs"):
        apply_prompt_tuning(twins()[0], init="text")
    with pytest.raises(ValueError, match="num_virtual_tokens=0"):
        apply_prompt_tuning(twins()[0], num_virtual_tokens=0)


@pytest.mark.parametrize("name", ["prompt", "prefix", "ptuning-v2"])
def test_save_load_round_trip(tmp_path, name):
    m, fresh = twins()
    ids, mask = batch()
    m = apply_method(m, name, num_virtual_tokens=4).eval()
    randomize_([p for p in m.parameters() if p.requires_grad], std=0.3)
    io.save(m, tmp_path)
    loaded = io.load(fresh, tmp_path).eval()
    assert type(loaded) is type(m)
    assert max_diff(loaded(input_ids=ids, attention_mask=mask).logits,
                    m(input_ids=ids, attention_mask=mask).logits) <= TOL
