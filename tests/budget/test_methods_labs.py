"""The calculator's trainable counts agree with the project's own implementations (labs.methods)."""
import pytest

from labs import base, methods
from labs.budget.methods import trainable_params
from labs.budget.presets import from_hf_dict


def _arch(model):
    return from_hf_dict(model.config.to_dict() | {"model_type": "llama"})


def _count(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("name,cfg,ours", [
    ("lora", {"r": 4, "target_modules": "all-linear"}, {"method": "lora", "rank": 4}),
    ("lora", {"r": 8, "target_modules": ["q_proj", "v_proj"]}, {"method": "lora", "rank": 8,
                                                                "targets": "q_proj,v_proj"}),
    ("dora", {"r": 4}, {"method": "dora", "rank": 4, "targets": "all-linear"}),
    ("prompt", {"num_virtual_tokens": 6}, {"method": "prompt", "n_tokens": 6}),
    ("prefix", {"num_virtual_tokens": 6}, {"method": "prefix", "n_tokens": 6}),
    ("ptuning-v2", {"num_virtual_tokens": 6}, {"method": "prefix", "n_tokens": 6, "prefix_projection": True}),
    ("houlsby", {"bottleneck": 8, "train_layernorm": False}, {"method": "houlsby", "adapter_size": 8}),
    ("houlsby", {"bottleneck": 8, "train_layernorm": True}, {"method": "houlsby", "adapter_size": 8,
                                                             "train_layernorm": True}),
    ("llama-adapter", {"adapter_len": 5, "adapter_layers": 2}, {"method": "llama-adapter", "adapter_len": 5,
                                                                 "adapter_layers": 2}),
])
def test_counts_match_labs_methods(name, cfg, ours):
    model = base.tiny_llama()
    arch = _arch(model)
    adapted = methods.apply_method(model, name, **cfg)
    got = _count(adapted)
    kw = dict(ours)
    assert trainable_params(arch, kw.pop("method"), **kw)["trainable"] == got


def test_adalora_init_rank_matches_labs_methods():
    model = base.tiny_llama()
    arch = _arch(model)
    adapted = methods.apply_method(model, "adalora", total_step=10, init_r=6, target_r=4)
    assert trainable_params(arch, "adalora", rank=6)["trainable"] == _count(adapted)
