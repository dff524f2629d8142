"""The base model every lab fine-tunes or quantizes.

``load_base()`` returns the bundled pretrained Llama (labs/base_model/, trained by
``python -m labs pretrain``; see its README). ``PEFTLAB_MODEL`` or ``path`` points at any other
local Hugging Face causal-LM folder instead (a real Llama/Qwen2/Mistral checkpoint on a GPU box).
``tiny_llama()`` builds a small random Llama in memory for unit tests.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

BASE_DIR = Path(__file__).resolve().parent / "base_model"


def model_dir(path: str | os.PathLike | None = None) -> Path:
    """Resolve which folder to load: explicit path → $PEFTLAB_MODEL → the bundled model."""
    chosen = Path(path or os.environ.get("PEFTLAB_MODEL") or BASE_DIR).expanduser()
    if not (chosen / "config.json").is_file():
        raise FileNotFoundError(
            f"model path {str(chosen)!r} has no config.json: point PEFTLAB_MODEL (or path=) at a local "
            "Hugging Face causal-LM folder, or unset it to use the bundled model")
    return chosen


def models_root() -> Path | None:
    """The folder learners may pick models from in the app (``PEFTLAB_MODELS_DIR``), if configured."""
    root = os.environ.get("PEFTLAB_MODELS_DIR")
    return Path(root).expanduser().resolve() if root else None


def user_model_dir(name: str) -> Path:
    """A model folder chosen by a learner (a page widget, a query string): confined to PEFTLAB_MODELS_DIR.

    ``name`` is a sub-folder name. Absolute paths, ``..`` and symlinks that lead outside the root
    are refused, so a page can never be used to read an arbitrary folder of the server.
    """
    root = models_root()
    if root is None:
        raise PermissionError("model path: choosing a model folder is disabled; set PEFTLAB_MODELS_DIR on the "
                              "server to a folder of Hugging Face models to enable it")
    if not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise PermissionError(f"model path = {name!r} is not allowed: give a folder name inside "
                              f"PEFTLAB_MODELS_DIR ({root}), without '..' or a leading '/'")
    candidate = root / name
    if any(p.is_symlink() for p in [candidate, *candidate.parents] if root in p.parents or p == candidate):
        target = candidate.resolve()
        if root != target and root not in target.parents:
            raise PermissionError(f"model path = {name!r} is a link leading outside PEFTLAB_MODELS_DIR: refused")
    resolved = candidate.resolve()
    if resolved != root and root not in resolved.parents:
        raise PermissionError(f"model path = {name!r} resolves outside PEFTLAB_MODELS_DIR: refused")
    return model_dir(resolved)


def load_base(path: str | os.PathLike | None = None, dtype: torch.dtype = torch.float32,
              device: str | torch.device | None = None):
    """(model, tokenizer) in eval mode; fp32 unless ``dtype`` says otherwise. Never touches a hub and never
    kernelizes from one (labs.hf)."""
    from transformers import AutoModelForCausalLM

    from labs.hf import load_pretrained, load_tokenizer

    folder = model_dir(path)
    tok = load_tokenizer(folder)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    model = load_pretrained(AutoModelForCausalLM, folder, dtype=dtype)
    model.eval()
    if device is not None:
        model.to(device)
    return model, tok


def tiny_llama(seed: int = 0, **overrides):
    """A small random Llama (GQA, untied head) for unit tests: no file I/O, a few ms to build."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
               tie_word_embeddings=False, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    cfg.update(overrides)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**cfg))
    model.eval()
    return model


def param_count(model) -> tuple[int, int]:
    """(trainable, total) parameters."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total

