"""IA³ and VeRA against peft (the oracle): same weights, fp32, logits within 1e-5; PEFT-format files both ways."""
from __future__ import annotations

import pytest
import torch
from peft import IA3Config, PeftModel, VeraConfig, get_peft_model

from labs.methods import apply_method, ia3, io, trainable_report, vera
from tests.methods.helpers import batch, max_diff, randomize_, tiny_model, twins

TOL = 1e-5

CASES = [  # (id, arch, method, our kwargs, peft config)
    ("ia3-llama", "llama", "ia3", dict(target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"]),
     IA3Config(target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"])),
    ("ia3-qwen2-bias-regex", "qwen2", "ia3",
     dict(target_modules=r".*\.(q_proj|up_proj)", feedforward_modules=r".*\.up_proj"),
     IA3Config(target_modules=r".*\.(q_proj|up_proj)", feedforward_modules=r".*\.up_proj")),
    ("vera-qv", "llama", "vera", dict(r=8, target_modules=["q_proj", "v_proj"], projection_prng_key=7),
     VeraConfig(r=8, target_modules=["q_proj", "v_proj"], projection_prng_key=7)),
    ("vera-all-linear-mixed-shapes", "mistral", "vera", dict(r=4, target_modules="all-linear"),
     VeraConfig(r=4, target_modules="all-linear")),
]


def _adapter_params(pm):
    return [p for n, p in pm.named_parameters() if "ia3_l" in n or "vera_lambda" in n]


def _copy_peft_to_ours(pm, ours):
    with torch.no_grad():
        for name, m in {**ia3.ia3_layers(ours), **vera.vera_layers(ours)}.items():
            pmod = pm.base_model.model.get_submodule(name)
            for key in m.adapter_names:
                getattr(m, key).copy_(getattr(pmod, key)["default"])


@pytest.mark.parametrize("case_id,arch,method,kwargs,peft_cfg", CASES, ids=[c[0] for c in CASES])
def test_parity_with_peft_and_peft_loads_our_files(case_id, arch, method, kwargs, peft_cfg, tmp_path):
    ours, theirs = twins(arch)
    ids, mask = batch()
    base_logits = ours(input_ids=ids, attention_mask=mask).logits
    pm = get_peft_model(theirs, peft_cfg).eval()
    ours = apply_method(ours, method, **kwargs).eval()
    assert max_diff(ours(input_ids=ids, attention_mask=mask).logits, base_logits) <= TOL   # starts at the base
    if method == "vera":     # the same seed draws the same shared projections as peft
        assert torch.equal(ours.vera_projections.vera_A, pm.base_model.vera_A["default"])
        assert torch.equal(ours.vera_projections.vera_B, pm.base_model.vera_B["default"])
    randomize_(_adapter_params(pm), std=0.5)
    _copy_peft_to_ours(pm, ours)
    assert trainable_report(ours)["trainable"] == pm.get_nb_trainable_parameters()[0]
    assert trainable_report(ours)["total"] == pm.get_nb_trainable_parameters()[1]
    got = ours(input_ids=ids, attention_mask=mask).logits
    assert max_diff(got, base_logits) > 1e-3, "adapter had no effect: the test could not fail"
    assert max_diff(got, pm(input_ids=ids, attention_mask=mask).logits) <= TOL

    io.save(ours, tmp_path / "ours")                                  # ours -> peft
    loaded = PeftModel.from_pretrained(tiny_model(arch), str(tmp_path / "ours")).eval()
    assert max_diff(loaded(input_ids=ids, attention_mask=mask).logits, got) <= TOL
    pm.save_pretrained(str(tmp_path / "peft"))                        # peft -> ours
    back = io.load(tiny_model(arch), tmp_path / "peft").eval()
    assert max_diff(back(input_ids=ids, attention_mask=mask).logits, got) <= TOL


def test_ia3_merge_is_exact_and_feedforward_must_be_subset():
    m, _ = twins("qwen2")
    ids, mask = batch()
    ia3.apply(m, target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"]).eval()
    randomize_([p for p in m.parameters() if p.requires_grad], std=0.5)
    before = m(input_ids=ids, attention_mask=mask).logits
    ia3.merge_and_unload(m)
    assert not ia3.ia3_layers(m)
    assert max_diff(m(input_ids=ids, attention_mask=mask).logits, before) <= TOL
    with pytest.raises(ValueError, match="subset"):
        ia3.apply(twins()[0], target_modules=["k_proj"], feedforward_modules=["down_proj"])
    with pytest.raises(ValueError, match="subset"):
        ia3.apply(twins()[0], target_modules=r".*k_proj", feedforward_modules=r".*down_proj")


def test_vera_shares_one_frozen_pair_and_merges():
    m, _ = twins()
    ids, mask = batch()
    vera.apply(m, r=6, target_modules="all-linear").eval()
    layers = list(vera.vera_layers(m).values())
    assert all(layer.projections is m.vera_projections for layer in layers)
    assert [n for n, p in m.named_parameters() if p.requires_grad] and all(
        "vera_lambda" in n for n, p in m.named_parameters() if p.requires_grad)
    rep = trainable_report(m)
    assert rep["trainable"] == sum(layer.out_features + 6 for layer in layers)   # out + r per layer
    randomize_([p for p in m.parameters() if p.requires_grad], std=0.5)
    before = m(input_ids=ids, attention_mask=mask).logits
    vera.merge_and_unload(m)
    assert not hasattr(m, "vera_projections")
    assert max_diff(m(input_ids=ids, attention_mask=mask).logits, before) <= 1e-4
    with pytest.raises(ValueError, match="projection_prng_key"):
        vera.apply(twins()[0], r=2, projection_prng_key=-1)


def test_vera_file_without_projections_loads_from_the_seed(tmp_path):
    """peft with save_projection=False writes only the vectors; the seed regenerates A and B on our side."""
    _, theirs = twins()
    ids, mask = batch()
    pm = get_peft_model(theirs, VeraConfig(r=4, target_modules=["q_proj", "v_proj"], projection_prng_key=11,
                                           save_projection=False)).eval()
    randomize_(_adapter_params(pm), std=0.5)
    want = pm(input_ids=ids, attention_mask=mask).logits
    pm.save_pretrained(str(tmp_path))
    back = io.load(tiny_model(), tmp_path).eval()
    assert max_diff(back(input_ids=ids, attention_mask=mask).logits, want) <= TOL
