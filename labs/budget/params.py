"""Exact parameter counts of a Llama-family decoder, to the parameter.

    embed_tokens   V*h
    per layer      q_proj  h*(a*d) [+ a*d bias]      k_proj, v_proj  h*(k*d) [+ k*d bias]   (GQA: k < a)
                   o_proj  (a*d)*h [+ h bias]        gate_proj, up_proj  h*I    down_proj  I*h  [+ biases]
                   input_layernorm, post_attention_layernorm  h each (RMSNorm: a weight, no bias)
    norm           h
    lm_head        V*h, or 0 when tied to embed_tokens

Llama-2-7B: 2*32000*4096 + 32*(4*4096^2 + 3*4096*11008 + 2*4096) + 4096 = 6,738,415,616.
A calculator that writes 4*h^2 for attention overcounts every GQA model (Llama-3-8B would come out
at 8.6e9 instead of 8.03e9): k_proj and v_proj are h x (k*d), not h x h.
"""
from __future__ import annotations

import functools

from labs.budget.presets import ArchConfig

LINEAR_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ATTN_NAMES = LINEAR_NAMES[:4]
MLP_NAMES = LINEAR_NAMES[4:]


def linear_shapes(c: ArchConfig) -> dict[str, tuple[int, int]]:
    """(out_features, in_features) of every linear layer inside one decoder layer."""
    h, I = c.hidden_size, c.intermediate_size
    return {"q_proj": (c.q_dim, h), "k_proj": (c.kv_dim, h), "v_proj": (c.kv_dim, h), "o_proj": (h, c.q_dim),
            "gate_proj": (I, h), "up_proj": (I, h), "down_proj": (h, I)}


def linear_bias(c: ArchConfig) -> dict[str, bool]:
    return {"q_proj": c.qkv_bias, "k_proj": c.qkv_bias, "v_proj": c.qkv_bias, "o_proj": c.o_bias,
            "gate_proj": c.mlp_bias, "up_proj": c.mlp_bias, "down_proj": c.mlp_bias}


def layer_linear_weights(c: ArchConfig) -> int:
    """Weight elements of the 7 linear layers of one decoder layer (what QLoRA quantizes)."""
    return sum(o * i for o, i in linear_shapes(c).values())


def layer_params(c: ArchConfig) -> int:
    """All parameters of one decoder layer: linear weights + biases + two RMSNorm weights."""
    bias = sum(o for n, (o, _) in linear_shapes(c).items() if linear_bias(c)[n])
    return layer_linear_weights(c) + bias + 2 * c.hidden_size


def count_params(c: ArchConfig) -> dict[str, int]:
    """Breakdown and ``total``. ``linear`` = all decoder-layer linear weights (the NF4 part in QLoRA)."""
    return dict(_count_params(c))


@functools.lru_cache(maxsize=256)
def _count_params(c: ArchConfig) -> dict[str, int]:
    embed = c.vocab_size * c.hidden_size
    lm_head = 0 if c.tied else embed
    layers = c.n_layers * layer_params(c)
    out = {"embed_tokens": embed, "layers": layers, "norm": c.hidden_size, "lm_head": lm_head,
           "per_layer": layer_params(c), "linear": c.n_layers * layer_linear_weights(c)}
    out["total"] = embed + layers + c.hidden_size + lm_head
    return out


def total_params(c: ArchConfig) -> int:
    return count_params(c)["total"]


def meta_count(c: ArchConfig) -> int:
    """Cross-check: build the architecture with transformers on the meta device and sum numel.

    No weights are read or allocated (``torch.device("meta")``); the config is the preset's.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    hf = hf_config(c)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(hf)
    return sum(p.numel() for p in model.parameters())


def hf_config(c: ArchConfig, **overrides):
    """A transformers config object for ``c`` (built locally from fields; never from the Hub)."""
    from transformers import AutoConfig

    fields = {"vocab_size": c.vocab_size, "hidden_size": c.hidden_size, "intermediate_size": c.intermediate_size,
              "num_hidden_layers": c.n_layers, "num_attention_heads": c.n_heads,
              "num_key_value_heads": c.n_kv_heads, "head_dim": c.head_dim, "tie_word_embeddings": c.tied,
              "max_position_embeddings": c.max_position}
    if c.family in ("llama",):
        fields["attention_bias"] = c.qkv_bias
        fields["mlp_bias"] = c.mlp_bias
    fields.update(overrides)
    model_type = {"llama": "llama", "mistral": "mistral", "qwen2": "qwen2"}[c.family]
    return AutoConfig.for_model(model_type, **fields)
