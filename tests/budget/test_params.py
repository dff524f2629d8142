"""Parameter counts equal the real models' published counts, and transformers' own count on meta."""
import json

import pytest

from labs.budget.params import count_params, meta_count
from labs.budget.presets import MAX_CONFIG_BYTES, PRESETS, BudgetError, get_arch, parse_config_bytes

# the real models' parameter counts (sum of numel of the published checkpoints)
REAL = {
    "llama-2-7b": 6_738_415_616, "llama-2-13b": 13_015_864_320, "llama-2-70b": 68_976_648_192,
    "llama-65b": 65_285_660_672, "llama-3-8b": 8_030_261_248, "llama-3-70b": 70_553_706_496,
    "mistral-7b": 7_241_732_096, "qwen2.5-7b": 7_615_616_512, "qwen2.5-72b": 72_706_203_648,
    "qwen2.5-0.5b": 494_032_768, "llama-3.2-1b": 1_235_814_400,
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_preset_counts_equal_real_models(name):
    assert count_params(PRESETS[name])["total"] == REAL[name]


@pytest.mark.parametrize("name", ["llama-3-8b", "qwen2.5-7b", "qwen2.5-0.5b", "llama-65b"])
def test_counts_equal_transformers_on_meta_device(name):
    assert meta_count(PRESETS[name]) == count_params(PRESETS[name])["total"]


def test_gqa_and_tied_embeddings_matter():
    c = PRESETS["llama-3-8b"]
    naive = 2 * c.vocab_size * c.hidden_size + c.n_layers * (4 * c.hidden_size ** 2 + 3 * c.hidden_size
                                                               * c.intermediate_size)
    assert naive - count_params(c)["total"] > 5e8          # 4*h^2 attention overcounts GQA by > 0.5B
    assert count_params(PRESETS["qwen2.5-0.5b"])["lm_head"] == 0
    assert count_params(PRESETS["qwen2.5-7b"])["lm_head"] == 152064 * 3584


def test_config_json_roundtrip(tmp_path):
    c = PRESETS["mistral-7b"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(c.hf | {"architectures": ["MistralForCausalLM"]}))
    assert count_params(get_arch(str(path)))["total"] == REAL["mistral-7b"]
    qwen = dict(PRESETS["qwen2.5-7b"].hf)
    assert count_params(parse_config_bytes(json.dumps(qwen).encode()))["total"] == REAL["qwen2.5-7b"]


@pytest.mark.parametrize("data,field", [
    (b"{not json", "config"),
    (b"x" * (MAX_CONFIG_BYTES + 1), "config"),
    (json.dumps({"model_type": "llama", "hidden_size": 64}).encode(), "vocab_size"),
    (json.dumps({"model_type": "llama", "vocab_size": 10, "hidden_size": -4, "intermediate_size": 8,
                 "num_hidden_layers": 2, "num_attention_heads": 2}).encode(), "hidden_size"),
    (json.dumps({"model_type": "llama", "vocab_size": 10, "hidden_size": 64, "intermediate_size": 8,
                 "num_hidden_layers": 0, "num_attention_heads": 2}).encode(), "num_hidden_layers"),
    (json.dumps({"model_type": "llama", "vocab_size": 10, "hidden_size": 64, "intermediate_size": 8,
                 "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 3}).encode(),
     "num_key_value_heads"),
    (json.dumps({"model_type": "bert", "vocab_size": 10}).encode(), "model_type"),
    (json.dumps([1, 2]).encode(), "config"),
])
def test_bad_config_names_the_field(data, field):
    with pytest.raises(BudgetError) as e:
        parse_config_bytes(data)
    assert e.value.field == field
    assert isinstance(e.value, ValueError)


def test_unknown_preset():
    with pytest.raises(BudgetError) as e:
        get_arch("llama-9-1b")
    assert e.value.field == "model" and "llama-2-7b" in str(e.value)
