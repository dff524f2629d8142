"""Trainable counts agree with peft on a tiny GQA Llama (peft is the oracle), and bad ranks are refused."""
import pytest
import torch

from labs.budget.methods import trainable_params
from labs.budget.params import hf_config
from labs.budget.presets import ArchConfig, BudgetError

peft = pytest.importorskip("peft")
# GQA (4 query heads, 2 KV heads), a non-square MLP and untied embeddings
TINY = ArchConfig("tiny", 128, 64, 96, 3, 4, 2)


def _model():
    from transformers import AutoModelForCausalLM
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(hf_config(TINY))


def _peft_trainable(cfg):
    m = peft.get_peft_model(_model(), cfg)
    return sum(p.numel() for p in m.parameters() if p.requires_grad)


@pytest.mark.parametrize("method,rank,targets,kw", [
    ("lora", 8, "all-linear", {}),
    ("lora", 4, "q_proj,v_proj", {}),
    ("lora", 16, "k_proj,down_proj", {}),
    ("dora", 8, "all-linear", {"use_dora": True}),
    ("qlora", 8, "all-linear", {}),
])
def test_lora_family_matches_peft(method, rank, targets, kw):
    t = "all-linear" if targets == "all-linear" else targets.split(",")
    cfg = peft.LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=t, task_type="CAUSAL_LM", **kw)
    assert trainable_params(TINY, method, rank=rank, targets=targets)["trainable"] == _peft_trainable(cfg)


def test_adalora_matches_peft():
    cfg = peft.AdaLoraConfig(init_r=6, target_r=4, target_modules=["q_proj", "v_proj"], total_step=10,
                             task_type="CAUSAL_LM")
    assert trainable_params(TINY, "adalora", rank=6, targets="q_proj,v_proj")["trainable"] == _peft_trainable(cfg)


def test_prompt_tuning_matches_peft():
    cfg = peft.PromptTuningConfig(num_virtual_tokens=7, task_type="CAUSAL_LM")
    assert trainable_params(TINY, "prompt", n_tokens=7)["trainable"] == _peft_trainable(cfg)


@pytest.mark.parametrize("projection", [False, True])
def test_prefix_matches_peft_with_gqa(projection):
    cfg = peft.PrefixTuningConfig(num_virtual_tokens=5, prefix_projection=projection, task_type="CAUSAL_LM")
    ours = trainable_params(TINY, "prefix", n_tokens=5, prefix_projection=projection)["trainable"]
    assert ours == _peft_trainable(cfg)
    if not projection:   # per KV head: k*d = 2*16, not h = 64
        assert ours == 5 * TINY.n_layers * 2 * TINY.kv_dim < 5 * TINY.n_layers * 2 * TINY.hidden_size


def test_llama_adapter_matches_peft():
    cfg = peft.AdaptionPromptConfig(adapter_len=6, adapter_layers=2, task_type="CAUSAL_LM")
    ours = trainable_params(TINY, "llama-adapter", adapter_len=6, adapter_layers=2)["trainable"]
    assert ours == _peft_trainable(cfg)


def test_houlsby_formula():
    h, m, L = TINY.hidden_size, 8, TINY.n_layers
    assert trainable_params(TINY, "houlsby", adapter_size=m)["trainable"] == L * 2 * (2 * h * m + h + m)


def test_rank_larger_than_layer_is_refused():
    with pytest.raises(BudgetError) as e:
        trainable_params(TINY, "lora", rank=33, targets="k_proj")   # k_proj is 32 x 64
    assert e.value.field == "rank" and "1..32" in str(e.value)
    assert trainable_params(TINY, "lora", rank=33, targets="q_proj")["trainable"] > 0


@pytest.mark.parametrize("targets", ["", "lm_head", "q_proj,foo"])
def test_bad_targets(targets):
    with pytest.raises(BudgetError) as e:
        trainable_params(TINY, "lora", rank=4, targets=targets)
    assert e.value.field == "targets"
