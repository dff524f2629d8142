"""PiSSA and LoftQ inits (labs.methods.lora_init). Oracles: the base model's logits, peft's own PiSSA init,
and plain QLoRA init's reconstruction error."""
from __future__ import annotations

import copy

import pytest
import torch

from labs.methods import io, lora, lora_init, qlora
from tests.methods.helpers import batch, max_diff, randomize_, twins


def _logits(model, ids, mask):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits


@pytest.mark.parametrize("use_rslora", [False, True])
def test_pissa_starts_at_the_base_with_nonzero_adapter(use_rslora):
    base, model = twins()
    ids, mask = batch()
    lora.apply(model, r=4, lora_alpha=16, use_rslora=use_rslora, init="pissa")
    assert max_diff(_logits(model, ids, mask), _logits(base, ids, mask)) <= 1e-4
    for name, m in lora.lora_layers(model).items():
        w = base.get_submodule(name).weight
        assert m.lora_B.weight.abs().max() > 0 and m.lora_A.weight.abs().max() > 0
        # s·B·A is W's top-4 SVD part: the residual keeps only the smaller singular values
        s_res = torch.linalg.svdvals(m.base_layer.weight)
        s_w = torch.linalg.svdvals(w)
        assert s_res[0] == pytest.approx(s_w[4].item(), rel=1e-4)
        assert torch.allclose(m.base_layer.weight + m.delta_weight(), w, atol=1e-5)


def test_pissa_matches_peft_init_and_peft_loads_our_trained_adapter(tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model

    ours, theirs = twins()
    original = copy.deepcopy(ours)
    ids, mask = batch()
    cfg = dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"])
    pm = get_peft_model(theirs, LoraConfig(init_lora_weights="pissa", **cfg))
    lora.apply(ours, init="pissa", **cfg)
    for name, m in lora.lora_layers(ours).items():
        pmod = pm.base_model.model.get_submodule(name)
        assert max_diff(m.lora_A.weight, pmod.lora_A["default"].weight) <= 1e-6
        assert max_diff(m.lora_B.weight, pmod.lora_B["default"].weight) <= 1e-6
        assert max_diff(m.base_layer.weight, pmod.base_layer.weight) <= 1e-6
    # "trained": A, B moved away from the init; peft rebuilds the residual from the ORIGINAL base, then loads A, B
    randomize_([p for n, p in ours.named_parameters() if p.requires_grad])
    io.save(ours, tmp_path / "pissa")
    assert io.read_json(tmp_path / "pissa" / io.ADAPTER_CONFIG)["init_lora_weights"] == "pissa"
    loaded = PeftModel.from_pretrained(copy.deepcopy(original), tmp_path / "pissa").eval()
    reloaded = io.load(copy.deepcopy(original), tmp_path / "pissa").eval()
    want = _logits(ours.eval(), ids, mask)
    assert max_diff(_logits(original, ids, mask), want) > 1e-2                 # the adapter does something
    assert max_diff(_logits(loaded, ids, mask), want) <= 1e-5
    assert max_diff(_logits(reloaded, ids, mask), want) <= 1e-5


def test_loftq_lowers_reconstruction_error_on_every_target():
    original, _ = twins()
    plain, loft, loft3 = (copy.deepcopy(original) for _ in range(3))
    qlora.apply(plain, r=4, lora_alpha=8)
    qlora.apply(loft, r=4, lora_alpha=8, init="loftq")
    qlora.apply(loft3, r=4, lora_alpha=8, init="loftq", loftq_iter=3)
    layers = lora.lora_layers(loft)
    assert layers and all(isinstance(m.base_layer, qlora.Linear4bit) for m in layers.values())
    for name, m in layers.items():
        w = original.get_submodule(name).weight
        e_plain = lora_init.reconstruction_error(w, lora.lora_layers(plain)[name])["fro"]
        e_loftq = lora_init.reconstruction_error(w, m)["fro"]
        e_loftq3 = lora_init.reconstruction_error(w, lora.lora_layers(loft3)[name])["fro"]
        assert e_loftq < 0.99 * e_plain, name
        assert e_loftq3 < e_plain, name
        assert m.loftq_errors[-1] == pytest.approx(e_loftq, rel=1e-4)
    assert qlora.base_bits(loft)["bits_per_param"] < 4.2                   # the base really is 4-bit


def test_loftq_only_on_targets_and_round_trips(tmp_path):
    model, base = twins()
    ids, mask = batch()
    qlora.apply(model, r=2, lora_alpha=4, target_modules=["q_proj"], init="loftq", loftq_iter=2)
    assert all(isinstance(m, qlora.Linear4bit) for n, m in model.named_modules()
               if n.endswith(("k_proj", "gate_proj")))
    randomize_([p for p in model.parameters() if p.requires_grad], std=0.05)
    io.save(model, tmp_path / "loftq")
    back = io.load(base, tmp_path / "loftq").eval()
    assert max_diff(_logits(back, ids, mask), _logits(model.eval(), ids, mask)) <= 1e-5
    with pytest.raises(io.AdapterFileError, match="loftq"):
        io.save_lora_peft(model, tmp_path / "peft")


def test_bad_inits_name_the_field():
    model, _ = twins()
    with pytest.raises(ValueError, match=r"loftq_iter=0.*1\.\.20"):
        lora.apply(model, init="loftq", loftq_iter=0)
    q, _ = twins()
    qlora.quantize_model(q)
    with pytest.raises(TypeError, match="full-precision"):
        lora.apply(q, init="loftq", linear_types=(qlora.Linear4bit,))
