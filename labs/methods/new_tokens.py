"""New tokens (a chat template's <|user|>, <|assistant|>, <|end|>): why LoRA alone does not learn them, and the two fixes.

    tokenizer.add_special_tokens(...)  +  model.resize_token_embeddings(V + n)
        new rows of embed_tokens (V + n, h) — and of the tied lm_head — start at the mean of the old rows
        (transformers' mean_resizing: a multivariate normal with the old mean and a tiny covariance), so the
        n new tokens start almost identical to each other and to "an average token".

    LoRA targets linear layers: W0 + s·BA for q/k/v/o/gate/up/down. embed_tokens is an nn.Embedding and
    lm_head is excluded from "all-linear" (peft does the same), so the new rows get no parameter at all:
    after training they are bit-for-bit their initial values. The model can only bend its hidden states
    towards an untrained output row, and it reads every new input token as the same vector.

    fix 1  modules_to_save=["embed_tokens"]      a full trainable copy of the module (V·h parameters; peft's
           ModulesToSaveWrapper: original_module frozen, modules_to_save.default trained, saved whole).
           With tied embeddings the head reads the same copy (peft's tied_module), so the output rows train too.
    fix 2  trainable_token_indices=[ids]         only the new rows train (n·h parameters; peft's TrainableTokens):
           trainable_tokens_delta (n, h) replaces those rows in the embedding and, when tied, in the head.

Public API:
    add_tokens(model, tokenizer, tokens, seed) -> ids       apply_modules_to_save(model, ["embed_tokens"])
    apply_trainable_tokens(model, ids)                       new_rows(model, ids) -> (n, h) current rows
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from labs.methods import inject


def add_tokens(model: nn.Module, tokenizer, tokens: list[str], seed: int = 0) -> list[int]:
    """Register `tokens` as special tokens and grow the embedding (and a tied head) with transformers'
    default mean-resizing, drawn from a seeded RNG; returns the new token ids."""
    if not tokens or not all(isinstance(t, str) and t for t in tokens):
        raise ValueError(f"tokens={tokens!r}: allowed a non-empty list of non-empty strings")
    tokenizer.add_special_tokens({"additional_special_tokens": list(tokens)})
    ids = tokenizer.convert_tokens_to_ids(list(tokens))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model.resize_token_embeddings(len(tokenizer))
    return list(ids)


def _tied_head(model: nn.Module) -> tuple[str, nn.Module] | None:
    """(name, lm_head) when the output head shares its weight with the input embedding, else None."""
    head, emb = model.get_output_embeddings(), model.get_input_embeddings()
    if head is None or head.weight is not emb.weight:
        return None
    return next(n for n, m in model.named_modules() if m is head), head


def _embedding_name(model: nn.Module) -> str:
    emb = model.get_input_embeddings()
    return next(n for n, m in model.named_modules() if m is emb)


class ModulesToSaveWrapper(nn.Module):
    """peft's layout: `original_module` (frozen) and `modules_to_save.default` (a trainable copy) used in forward."""

    is_adapter_layer = True

    def __init__(self, original_module: nn.Module, copy_module: nn.Module | None = None):
        super().__init__()
        self.original_module = original_module
        trained = copy.deepcopy(original_module) if copy_module is None else copy_module
        for p in trained.parameters():
            p.requires_grad_(True)
        self.modules_to_save = nn.ModuleDict({"default": trained})

    @property
    def weight(self) -> torch.Tensor:
        return self.modules_to_save["default"].weight

    def forward(self, *args, **kwargs):
        return self.modules_to_save["default"](*args, **kwargs)


def apply_modules_to_save(model: nn.Module, modules_to_save: list[str]) -> nn.Module:
    """Wrap each named module (a suffix such as "embed_tokens", or a full name) in a ModulesToSaveWrapper.
    Call after the LoRA `apply` (which freezes the base). A head tied to a wrapped embedding reads the copy."""
    names = [n for n, _ in model.named_modules()]
    tied, emb = _tied_head(model), model.get_input_embeddings()
    for want in modules_to_save:
        hits = [n for n in names if n == want or n.endswith("." + want)]
        if not hits:
            raise ValueError(f"modules_to_save entry {want!r} matched no module; e.g. 'embed_tokens', 'lm_head'")
        for name in hits:
            original = model.get_submodule(name)
            wrapper = ModulesToSaveWrapper(original)
            inject.replace_module(model, name, wrapper)
            if tied is not None and original is emb:
                head_name, head = tied
                shared = nn.Linear(head.in_features, head.out_features, bias=False)
                shared.weight = wrapper.weight                        # the trained copy, as peft's tied_module
                inject.replace_module(model, head_name, ModulesToSaveWrapper(head, shared))
    return model


class TrainableTokensLayer(nn.Module):
    """Embedding (or tied head) whose rows `token_indices` are replaced by `trainable_tokens_delta` (n, h)."""

    is_adapter_layer = True

    def __init__(self, base_layer: nn.Module, token_indices: list[int], delta: nn.Parameter | None = None):
        super().__init__()
        self.base_layer = base_layer
        self.register_buffer("token_indices", torch.tensor(token_indices, dtype=torch.long), persistent=False)
        if delta is None:
            delta = nn.Parameter(base_layer.weight.detach()[self.token_indices].clone())   # (n, h), starts at init
        self.trainable_tokens_delta = delta

    def merged_weight(self) -> torch.Tensor:
        return self.base_layer.weight.index_copy(0, self.token_indices, self.trainable_tokens_delta)  # (V, h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.merged_weight()
        if isinstance(self.base_layer, nn.Embedding):
            return F.embedding(x, w, self.base_layer.padding_idx)       # ids (B, T) -> (B, T, h)
        return F.linear(x, w, getattr(self.base_layer, "bias", None))   # (B, T, h) -> (B, T, V)


def apply_trainable_tokens(model: nn.Module, token_indices: list[int]) -> nn.Module:
    """Train only the rows `token_indices` of the input embedding (and of a head tied to it)."""
    vocab = model.get_input_embeddings().weight.shape[0]
    bad = [i for i in token_indices if not 0 <= int(i) < vocab]
    if not token_indices or bad:
        raise ValueError(f"trainable_token_indices={token_indices!r}: allowed ids in 0..{vocab - 1}")
    tied = _tied_head(model)
    emb_name, emb = _embedding_name(model), model.get_input_embeddings()
    layer = TrainableTokensLayer(emb, list(token_indices))
    inject.replace_module(model, emb_name, layer)
    if tied is not None:
        head_name, head = tied
        inject.replace_module(model, head_name, TrainableTokensLayer(head, list(token_indices),
                                                                     layer.trainable_tokens_delta))
    return model


@torch.no_grad()
def new_rows(model: nn.Module, token_ids: list[int]) -> torch.Tensor:
    """The input-embedding rows the model computes with now for `token_ids`: (n, h)."""
    emb = model.get_input_embeddings()
    if isinstance(emb, TrainableTokensLayer):
        w = emb.merged_weight()
    else:
        w = emb.weight
    return w[torch.tensor(token_ids)].detach().clone()
