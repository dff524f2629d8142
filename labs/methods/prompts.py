"""Soft prompts: prompt tuning, prefix tuning and P-tuning v2.

Prompt tuning (Lester et al. 2021, arXiv:2104.08691): n trainable vectors P (n, d) are prepended to the
INPUT EMBEDDINGS only; every layer of the frozen model sees them as ordinary tokens.

    [P_1 … P_n | e(x_1) … e(x_T)]  ──►  frozen decoder  ──►  logits for x_1 … x_T

Prefix tuning (Li & Liang 2021, arXiv:2101.00190): per layer l, trainable keys and values
K_l, V_l (n, kv_heads · head_dim) are placed in front of the attention's own keys/values, through the
model's KV cache (transformers `DynamicCache`): the prompt reaches every layer directly.

    attention_l(Q, [K_l ; K], [V_l ; V])      with K_l, V_l = split(P_θ) ,  P_θ (n, L · 2 · kv_dim)

P-tuning v2 (Liu et al. 2022, arXiv:2110.07602) = deep prefixes; the reparametrization option produces them
from a small MLP, P_θ = MLP(E) with E (n, kv_dim): Linear(kv_dim, h) → tanh → Linear(h, L · 2 · kv_dim)
(PEFT's `prefix_projection=True`), which the papers report stabilises training.

Both methods wrap the model (`SoftPromptModel`): forward(input_ids, attention_mask, labels) takes the same
arguments as the base and returns logits for the REAL tokens only (T positions, aligned with input_ids;
PEFT's prompt-tuning model also returns the n virtual positions). The loss is the base's own loss with -100
on the virtual positions, exactly as PEFT computes it. With GQA the prefixes have kv_heads heads (PEFT #1901).
"""
from __future__ import annotations

import inspect
import math

import torch
from torch import nn

from labs.methods import inject

PROMPT_INITS = ("random", "vocab", "text")
SOFT_PROMPTS = ("prompt", "prefix", "ptuning-v2")     # the registry names of the methods in this module


def _check_n(num_virtual_tokens) -> int:
    if not isinstance(num_virtual_tokens, int) or isinstance(num_virtual_tokens, bool) or num_virtual_tokens < 1:
        raise ValueError(f"num_virtual_tokens={num_virtual_tokens!r}: allowed an integer >= 1")
    return num_virtual_tokens


class SoftPromptModel(nn.Module):
    """Base model + a prompt module; attribute access falls through to the base (config, device, …)."""

    is_soft_prompt_model = True

    def __init__(self, base_model: nn.Module, num_virtual_tokens: int):
        super().__init__()
        self.base_model = base_model
        self.num_virtual_tokens = num_virtual_tokens

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["base_model"], name)

    def _extend(self, batch: int, attention_mask, labels, device):
        n = self.num_virtual_tokens
        if attention_mask is not None:
            ones = torch.ones(batch, n, dtype=attention_mask.dtype, device=device)
            attention_mask = torch.cat([ones, attention_mask], dim=1)                 # (B, n + T)
        if labels is not None:
            ignore = torch.full((batch, n), -100, dtype=labels.dtype, device=device)
            labels = torch.cat([ignore, labels], dim=1)                               # (B, n + T)
        return attention_mask, labels

    def generate(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__}.generate is not supported; score with forward() "
                                  "(the labs evaluate by logits)")


class PromptTuningModel(SoftPromptModel):
    def __init__(self, base_model: nn.Module, num_virtual_tokens: int, init: str = "random",
                 init_text: str | None = None, tokenizer=None, seed: int | None = None):
        super().__init__(base_model, num_virtual_tokens)
        word = base_model.get_input_embeddings()
        vocab, d = word.weight.shape
        # PEFT's name: prompt_encoder.embedding (n, d); default init N(0, 1) like nn.Embedding
        self.embedding = nn.Embedding(num_virtual_tokens, d, device=word.weight.device, dtype=word.weight.dtype)
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        if init == "vocab":
            ids = torch.randint(0, vocab, (num_virtual_tokens,), generator=g)
        elif init == "text":
            if not init_text or tokenizer is None:
                raise ValueError("init='text' needs init_text (a non-empty string) and tokenizer")
            ids = list(tokenizer(init_text)["input_ids"])
            ids = (ids * math.ceil(num_virtual_tokens / len(ids)))[:num_virtual_tokens]   # repeat/trim like PEFT
            ids = torch.tensor(ids)
        elif init == "random":
            ids = None
        else:
            raise ValueError(f"init={init!r}: allowed one of {PROMPT_INITS}")
        if ids is not None:
            with torch.no_grad():
                self.embedding.weight.copy_(word.weight[ids.to(word.weight.device)])

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, labels=None, **kwargs):
        if inputs_embeds is None:
            inputs_embeds = self.base_model.get_input_embeddings()(input_ids)          # (B, T, d)
        b = inputs_embeds.shape[0]
        prompts = self.embedding.weight.to(inputs_embeds.dtype).unsqueeze(0).expand(b, -1, -1)   # (B, n, d)
        attention_mask, labels = self._extend(b, attention_mask, labels, inputs_embeds.device)
        out = self.base_model(inputs_embeds=torch.cat([prompts, inputs_embeds], dim=1),   # (B, n + T, d)
                              attention_mask=attention_mask, labels=labels, **kwargs)
        out.logits = out.logits[:, self.num_virtual_tokens:]                           # (B, T, V)
        return out


def kv_geometry(config) -> tuple[int, int, int]:
    """(num_layers, kv_heads, head_dim) of a decoder config; GQA models cache kv_heads < heads."""
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return config.num_hidden_layers, kv_heads, head_dim


class PrefixEncoder(nn.Module):
    """PEFT-compatible parameter layout: `embedding` (+ `transform` MLP when prefix_projection)."""

    def __init__(self, num_virtual_tokens: int, num_layers: int, kv_dim: int, prefix_projection: bool,
                 encoder_hidden_size: int):
        super().__init__()
        self.prefix_projection = prefix_projection
        out = num_layers * 2 * kv_dim
        if prefix_projection:
            self.embedding = nn.Embedding(num_virtual_tokens, kv_dim)
            self.transform = nn.Sequential(nn.Linear(kv_dim, encoder_hidden_size), nn.Tanh(),
                                           nn.Linear(encoder_hidden_size, out))
        else:
            self.embedding = nn.Embedding(num_virtual_tokens, out)

    def forward(self) -> torch.Tensor:
        e = self.embedding.weight                                                      # (n, kv_dim | out)
        return self.transform(e) if self.prefix_projection else e                      # (n, L·2·kv_dim)


class PrefixTuningModel(SoftPromptModel):
    def __init__(self, base_model: nn.Module, num_virtual_tokens: int, prefix_projection: bool = False,
                 encoder_hidden_size: int | None = None):
        super().__init__(base_model, num_virtual_tokens)
        self.num_layers, self.kv_heads, self.head_dim = kv_geometry(base_model.config)
        kv_dim = self.kv_heads * self.head_dim
        hidden = encoder_hidden_size or kv_dim
        if not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"encoder_hidden_size={encoder_hidden_size!r}: allowed an integer >= 1")
        ref = base_model.get_input_embeddings().weight
        self.prompt_encoder = PrefixEncoder(num_virtual_tokens, self.num_layers, kv_dim, prefix_projection,
                                            hidden).to(device=ref.device, dtype=ref.dtype)
        params = inspect.signature(base_model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"   # transformers >= 5.2x renamed it

    def prefix_cache(self, batch: int):
        from transformers import DynamicCache

        n, L = self.num_virtual_tokens, self.num_layers
        p = self.prompt_encoder()                                                      # (n, L·2·kv_dim)
        p = p.view(n, 2 * L, self.kv_heads, self.head_dim).permute(1, 2, 0, 3)          # (2L, kvh, n, hd)
        p = p.unsqueeze(1).expand(2 * L, batch, self.kv_heads, n, self.head_dim)        # (2L, B, kvh, n, hd)
        return DynamicCache(tuple((p[2 * i], p[2 * i + 1]) for i in range(L)))      # layer i: (K_i, V_i)

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, labels=None, **kwargs):
        ref = input_ids if input_ids is not None else inputs_embeds
        b = ref.shape[0]
        if attention_mask is not None:
            attention_mask, _ = self._extend(b, attention_mask, None, ref.device)    # (B, n + T)
        kwargs[self._cache_kw] = self.prefix_cache(b)
        return self.base_model(input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                               labels=labels, **kwargs)


def apply_prompt_tuning(model: nn.Module, num_virtual_tokens: int = 8, init: str = "random",
                        init_text: str | None = None, tokenizer=None, seed: int | None = None) -> PromptTuningModel:
    """Freeze `model`; return a wrapper whose only trainable tensor is the (n, d) prompt."""
    _check_n(num_virtual_tokens)
    inject.freeze(model)
    wrapped = PromptTuningModel(model, num_virtual_tokens, init, init_text, tokenizer, seed)
    wrapped.peft_lab_config = {"method": "prompt", "num_virtual_tokens": num_virtual_tokens, "init": init,
                               "seed": seed}
    return wrapped


def apply_prefix_tuning(model: nn.Module, num_virtual_tokens: int = 8, prefix_projection: bool = False,
                        encoder_hidden_size: int | None = None) -> PrefixTuningModel:
    """Freeze `model`; return a wrapper with per-layer K/V prefixes (prefix_projection=True: P-tuning v2's MLP)."""
    _check_n(num_virtual_tokens)
    inject.freeze(model)
    wrapped = PrefixTuningModel(model, num_virtual_tokens, prefix_projection, encoder_hidden_size)
    wrapped.peft_lab_config = {"method": "ptuning-v2" if prefix_projection else "prefix",
                               "num_virtual_tokens": num_virtual_tokens, "encoder_hidden_size": encoder_hidden_size}
    return wrapped


def prefix_cache(wrapped: PrefixTuningModel, P: torch.Tensor, batch: int):
    """The trained prefix P (n, L·2·kv_dim) as a transformers DynamicCache for `batch` requests:
    per layer K, V (batch, kv_heads, n, head_dim)."""
    from transformers import DynamicCache

    n, L, kvh, hd = wrapped.num_virtual_tokens, wrapped.num_layers, wrapped.kv_heads, wrapped.head_dim
    kv = P.view(n, 2 * L, kvh, hd).permute(1, 2, 0, 3).unsqueeze(1).expand(2 * L, batch, kvh, n, hd)
    return DynamicCache(tuple((kv[2 * i].contiguous(), kv[2 * i + 1].contiguous()) for i in range(L)))


def prefill_inputs(method: str, wrapped: SoftPromptModel, ids: torch.Tensor):
    """(base model, make_prefill) for timing decoding after soft-prompt training: what the first forward of a
    request receives. Prompt tuning: the virtual tokens' embeddings before the input's; prefix tuning and
    P-tuning v2: the prefix as a KV cache (P-tuning v2's MLP does not run after training, only P is kept)."""
    if method not in SOFT_PROMPTS:
        raise ValueError(f"method={method!r}: allowed one of {SOFT_PROMPTS}")
    base = wrapped.base_model
    if method == "prompt":
        def make():
            e = base.get_input_embeddings()(ids)                                        # (B, T, d)
            P = wrapped.embedding.weight.unsqueeze(0).expand(ids.shape[0], -1, -1)      # (B, p, d)
            return {"inputs_embeds": torch.cat([P, e], dim=1)}                         # (B, p + T, d)
        return base, make
    with torch.no_grad():
        P = wrapped.prompt_encoder().detach()                                           # (p, L·2·kv_dim)

    def make_cached():
        return {"input_ids": ids, "cache": prefix_cache(wrapped, P, ids.shape[0])}
    return base, make_cached
