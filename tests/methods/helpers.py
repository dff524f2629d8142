"""Tiny random causal LMs (no file I/O) and peft-side helpers shared by the methods tests."""
from __future__ import annotations

import copy

import torch
from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM

SMALL = dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=False)

ARCHS = {
    "llama": (LlamaConfig, LlamaForCausalLM),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM),
    "mistral": (MistralConfig, MistralForCausalLM),
}


def tiny_model(arch: str = "llama", seed: int = 0, **overrides):
    cfg_cls, model_cls = ARCHS[arch]
    torch.manual_seed(seed)
    cfg = cfg_cls(**{**SMALL, **overrides})
    cfg._attn_implementation = "eager"
    return model_cls(cfg).eval()


def twins(arch: str = "llama", seed: int = 0, **overrides):
    """Two identical copies: one for us, one for peft."""
    m = tiny_model(arch, seed, **overrides)
    return m, copy.deepcopy(m)


def batch(seed: int = 1, b: int = 2, t: int = 7, vocab: int = SMALL["vocab_size"]):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (b, t), generator=g)
    mask = torch.ones_like(ids)
    mask[0, :2] = 0                       # left padding on the first row: masks must be handled the same way
    return ids, mask


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def randomize_(params, seed: int = 3, std: float = 0.1):
    """Non-trivial adapter weights (B != 0), so a parity test can fail."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in params:
            p.copy_(torch.randn(p.shape, generator=g) * std)
