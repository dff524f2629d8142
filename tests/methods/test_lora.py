"""LoRA / rsLoRA / DoRA against peft (the oracle): same weights, fp32, logits within 1e-5."""
from __future__ import annotations

import math

import pytest
import torch
from peft import LoraConfig as PeftLoraConfig, PeftModel, get_peft_model

from labs.methods import io, lora, trainable_report
from labs.methods.io import AdapterFileError
from tests.methods.helpers import batch, max_diff, randomize_, twins

TOL = 1e-5

CASES = [  # (id, arch, config)
    ("lora-all-linear", "llama", dict(r=4, lora_alpha=8, target_modules="all-linear")),
    ("lora-list", "llama", dict(r=3, lora_alpha=5, target_modules=["q_proj", "v_proj"])),
    ("lora-regex", "llama", dict(r=4, lora_alpha=8, target_modules=r".*layers\.1\.mlp\.(up|down)_proj")),
    ("rslora", "llama", dict(r=16, lora_alpha=8, target_modules="all-linear", use_rslora=True)),
    ("dora", "llama", dict(r=4, lora_alpha=8, target_modules="all-linear", use_dora=True)),
    ("lora-qwen2-bias", "qwen2", dict(r=4, lora_alpha=8, target_modules="all-linear")),
    ("dora-qwen2-bias", "qwen2", dict(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "o_proj"], use_dora=True)),
    ("lora-mistral", "mistral", dict(r=2, lora_alpha=4, target_modules="all-linear")),
]


def _copy_peft_to_ours(peft_model, ours):
    """Copy peft's adapter weights into ours by module name."""
    with torch.no_grad():
        for name, m in lora.lora_layers(ours).items():
            pm = peft_model.base_model.model.get_submodule(name)
            m.lora_A.weight.copy_(pm.lora_A["default"].weight)
            m.lora_B.weight.copy_(pm.lora_B["default"].weight)
            if m.use_dora:
                m.lora_magnitude_vector.copy_(pm.lora_magnitude_vector["default"].weight)


def _peft_adapter_params(peft_model):
    return [p for n, p in peft_model.named_parameters() if "lora_" in n]


@pytest.mark.parametrize("case_id,arch,cfg", CASES, ids=[c[0] for c in CASES])
def test_parity_with_peft(case_id, arch, cfg):
    ours, theirs = twins(arch)
    ids, mask = batch()
    base_logits = ours(input_ids=ids, attention_mask=mask).logits
    pm = get_peft_model(theirs, PeftLoraConfig(**cfg)).eval()
    randomize_(_peft_adapter_params(pm))
    if cfg.get("use_dora"):   # magnitudes near ||W0|| but not equal to it, so m is really used
        for p in (p for n, p in pm.named_parameters() if "magnitude" in n):
            p.data.add_(0.5)
    ours = lora.apply(ours, **cfg).eval()
    _copy_peft_to_ours(pm, ours)

    assert trainable_report(ours)["trainable"] == pm.get_nb_trainable_parameters()[0]
    assert trainable_report(ours)["total"] == pm.get_nb_trainable_parameters()[1]
    got = ours(input_ids=ids, attention_mask=mask).logits
    want = pm(input_ids=ids, attention_mask=mask).logits
    assert max_diff(got, base_logits) > 1e-3, "adapter had no effect: the test could not fail"
    assert max_diff(got, want) <= TOL


def test_scaling_and_rslora():
    m, _ = twins()
    lora.apply(m, r=16, lora_alpha=8, target_modules=["q_proj"], use_rslora=True)
    layer = next(iter(lora.lora_layers(m).values()))
    assert layer.scaling == pytest.approx(8 / math.sqrt(16))
    m2, _ = twins()
    lora.apply(m2, r=16, lora_alpha=8, target_modules=["q_proj"])
    assert next(iter(lora.lora_layers(m2).values())).scaling == pytest.approx(8 / 16)


def test_trainable_is_adapter_only_and_lm_head_excluded():
    m, _ = twins()
    lora.apply(m, r=4, lora_alpha=8)
    names = [n for n, p in m.named_parameters() if p.requires_grad]
    assert names and all(".lora_" in n for n in names)
    assert not isinstance(m.lm_head, lora.LoraLinear)


@pytest.mark.parametrize("use_dora", [False, True])
def test_standard_init_starts_at_base_and_merge_round_trip(use_dora):
    m, _ = twins()
    ids, mask = batch()
    base = m(input_ids=ids, attention_mask=mask).logits
    w0 = m.model.layers[0].self_attn.q_proj.weight.detach().clone()
    lora.apply(m, r=4, lora_alpha=8, use_dora=use_dora)
    assert max_diff(m(input_ids=ids, attention_mask=mask).logits, base) <= TOL   # B = 0 -> exactly the base
    randomize_([p for n, p in m.named_parameters() if "lora_B" in n])
    adapted = m(input_ids=ids, attention_mask=mask).logits
    lora.merge(m)
    assert max_diff(m(input_ids=ids, attention_mask=mask).logits, adapted) <= 1e-4
    assert max_diff(m.model.layers[0].self_attn.q_proj.base_layer.weight, w0) > 1e-4   # really merged
    lora.unmerge(m)
    assert max_diff(m.model.layers[0].self_attn.q_proj.base_layer.weight, w0) <= 1e-5
    assert max_diff(m(input_ids=ids, attention_mask=mask).logits, adapted) <= TOL


def test_dropout_only_in_training_and_fused_equals_plain_formula():
    m, _ = twins()
    lora.apply(m, r=4, lora_alpha=8, target_modules=["q_proj"], lora_dropout=0.5)
    layer = m.model.layers[0].self_attn.q_proj
    randomize_([layer.lora_B.weight])
    x = torch.randn(3, 5, layer.in_features)
    plain = layer.base_layer(x) + layer.lora_B(layer.lora_A(x)) * layer.scaling
    layer.eval()
    assert max_diff(layer(x), plain) <= TOL                      # eval: the fused kernel, no dropout
    layer.train()
    torch.manual_seed(0)
    assert max_diff(layer(x), plain) > 1e-3                      # training: dropout on the LoRA branch


@pytest.mark.parametrize("init,starts_at_base,learns_A,learns_B", [
    ("standard", True, False, True),
    ("gaussian", True, False, True),
    ("a_zero_b_random", True, True, False),
    ("both_zero", True, False, False),
    ("both_random", False, True, True),
])
def test_init_schemes(init, starts_at_base, learns_A, learns_B):
    m, _ = twins()
    ids, mask = batch()
    base = m(input_ids=ids, attention_mask=mask).logits
    lora.apply(m, r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init=init)
    out = m(input_ids=ids, attention_mask=mask, labels=ids)
    assert (max_diff(out.logits, base) <= TOL) == starts_at_base
    out.loss.backward()
    layer = m.model.layers[1].self_attn.v_proj
    assert (layer.lora_A.weight.grad.abs().max().item() > 0) == learns_A
    assert (layer.lora_B.weight.grad.abs().max().item() > 0) == learns_B


def test_fused_gradients_match_peft():
    ours, theirs = twins()
    ids, mask = batch()
    pm = get_peft_model(theirs, PeftLoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    randomize_(_peft_adapter_params(pm))
    lora.apply(ours, r=4, lora_alpha=8)
    _copy_peft_to_ours(pm, ours)
    ours(input_ids=ids, attention_mask=mask, labels=ids).loss.backward()
    pm(input_ids=ids, attention_mask=mask, labels=ids).loss.backward()
    ga = ours.model.layers[0].mlp.down_proj.lora_A.weight.grad
    gb = pm.base_model.model.model.layers[0].mlp.down_proj.lora_A["default"].weight.grad
    assert max_diff(ga, gb) <= 1e-6 and ga.abs().max() > 0


def test_loraplus_groups():
    m, _ = twins()
    lora.apply(m, r=4, lora_alpha=8)
    groups = lora.loraplus_param_groups(m, lr=1e-3)
    assert groups[1]["lr"] / groups[0]["lr"] == pytest.approx(16)
    n_b = sum(1 for n, _ in m.named_parameters() if n.endswith("lora_B.weight"))
    assert len(groups[1]["params"]) == n_b and len(groups[0]["params"]) == n_b
    with pytest.raises(ValueError, match="ratio"):
        lora.loraplus_param_groups(m, lr=1e-3, ratio=0)


@pytest.mark.parametrize("bad,match", [
    (dict(r=0), "r=0"), (dict(lora_alpha=-1), "lora_alpha"), (dict(init="zeros"), "init='zeros'"),
    (dict(target_modules=["nope"]), "matched no linear"), (dict(lora_dropout=1.0), "lora_dropout"),
])
def test_config_errors_name_the_field(bad, match):
    m, _ = twins()
    with pytest.raises(ValueError, match=match):
        lora.apply(m, **bad)


@pytest.mark.parametrize("cfg", [dict(r=4, lora_alpha=8), dict(r=8, lora_alpha=4, use_rslora=True),
                                 dict(r=4, lora_alpha=8, use_dora=True, target_modules=["q_proj", "down_proj"])])
def test_save_ours_load_in_peft(tmp_path, cfg):
    ours, theirs = twins()
    ids, mask = batch()
    lora.apply(ours, **cfg).eval()
    randomize_([p for n, p in ours.named_parameters() if p.requires_grad], std=0.2)
    io.save_lora_peft(ours, tmp_path)
    pm = PeftModel.from_pretrained(theirs, str(tmp_path)).eval()
    assert max_diff(ours(input_ids=ids, attention_mask=mask).logits,
                    pm(input_ids=ids, attention_mask=mask).logits) <= TOL


@pytest.mark.parametrize("cfg", [dict(r=4, lora_alpha=8, target_modules="all-linear"),
                                 dict(r=4, lora_alpha=8, target_modules=["k_proj", "up_proj"], use_dora=True)])
def test_save_peft_load_ours(tmp_path, cfg):
    ours, theirs = twins()
    ids, mask = batch()
    pm = get_peft_model(theirs, PeftLoraConfig(**cfg)).eval()
    randomize_(_peft_adapter_params(pm))
    pm.save_pretrained(str(tmp_path))
    ours = io.load_lora_peft(ours, tmp_path).eval()
    assert max_diff(ours(input_ids=ids, attention_mask=mask).logits,
                    pm(input_ids=ids, attention_mask=mask).logits) <= TOL


def test_mismatched_adapter_file_names_keys(tmp_path):
    src, _ = twins()
    lora.apply(src, r=4, lora_alpha=8, target_modules=["q_proj"])
    io.save_lora_peft(src, tmp_path)
    import json
    cfg = json.loads((tmp_path / "adapter_config.json").read_text())
    cfg["target_modules"] = ["q_proj", "v_proj"]
    (tmp_path / "adapter_config.json").write_text(json.dumps(cfg))
    other, _ = twins()
    with pytest.raises(AdapterFileError, match=r"missing keys \['base_model.model.model.layers.0.self_attn.v_proj"):
        io.load_lora_peft(other, tmp_path)
    (tmp_path / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(AdapterFileError, match="safetensors"):
        io.load_lora_peft(twins()[0], tmp_path)


@pytest.mark.parametrize("method", ["lora", "dora", "adalora"])
def test_bf16_autocast_like_the_gpu_training_loop(method):
    """labs.train runs under bf16 autocast on CUDA: the attention output arrives in bf16, weights are fp32."""
    from labs.methods import apply_method

    m, _ = twins()
    ids, mask = batch()
    cfg = dict(total_step=4, init_r=2, target_r=1) if method == "adalora" else dict(r=4, lora_alpha=8)
    m = apply_method(m, method, **cfg)
    randomize_([p for n, p in m.named_parameters() if "lora_B" in n or "lora_E" in n])
    full = m(input_ids=ids, attention_mask=mask).logits
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(input_ids=ids, attention_mask=mask, labels=ids)
    out.loss.backward()
    assert max_diff(out.logits.float(), full) < 0.1                      # bf16 rounding, not a different model
    grads = [p.grad for p in m.parameters() if p.requires_grad]
    assert grads and all(g is not None and g.dtype == torch.float32 for g in grads)


def test_dora_magnitude_direction_for_the_delta_m_delta_d_plot():
    from labs.methods.dora import decompose, delta_m_delta_d, snapshot

    m, ref = twins()
    lora.apply(m, r=4, lora_alpha=8, target_modules=["q_proj"], use_dora=True)
    before = snapshot(m)
    w0 = ref.model.layers[0].self_attn.q_proj.weight
    m0, d0 = before["model.layers.0.self_attn.q_proj"]
    assert max_diff(m0, torch.linalg.vector_norm(w0, dim=1)) <= 1e-6          # PEFT: m = ||W0|| per output row
    assert max_diff(d0 * m0.unsqueeze(1), w0) <= 1e-6
    randomize_([p for n, p in m.named_parameters() if "lora_B" in n])
    with torch.no_grad():
        m.model.layers[0].self_attn.q_proj.lora_magnitude_vector.mul_(1.1)
    m1, d1 = snapshot(m)["model.layers.0.self_attn.q_proj"]
    dm, dd = delta_m_delta_d(m0, d0, m1, d1)
    assert dm == pytest.approx((0.1 * m0).abs().mean().item(), rel=1e-5) and dd > 0
    assert torch.allclose(torch.linalg.vector_norm(d1, dim=1), torch.ones(d1.shape[0]), atol=1e-5)
    assert delta_m_delta_d(*decompose(w0), *decompose(w0)) == (0.0, pytest.approx(0.0, abs=1e-6))
