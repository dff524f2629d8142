"""Adapters: Houlsby bottleneck adapters and LLaMA-Adapter.

Houlsby et al. 2019 (arXiv:1902.00751), Fig. 2: after the attention sub-layer and after the MLP,

    h ──► down (d → m) ──► σ ──► up (m → d) ──► (+) ──► h'        h' = h + W_up σ(W_down h + b_down) + b_up
    └───────────────────────────────────────────┘

m ≪ d is the bottleneck. "Near-identity initialisation" (§3.1): weights ~ N(0, 10⁻²) truncated at two
standard deviations, biases 0, so h' ≈ h and the frozen model is unchanged at step 0. The adapter sits in
series on the residual stream, so it cannot be merged away: it adds latency at inference (unlike LoRA).
The paper also trains the layer norms (`train_layernorm=True`).

LLaMA-Adapter (Zhang et al. 2023, arXiv:2303.16199), in the top L layers: learnable adaption prompts
P (n, d) are projected by the layer's own frozen k_proj / v_proj, attended to by the same queries, with a
separate softmax, and scaled by a gate g initialised to 0 ("zero-init attention", §3.2):

    out = Attn(x) + o_proj( g · softmax(Q_rope K_Pᵀ / √d_h) V_P )      g = 0 at init → out = Attn(x)

Matches PEFT's `AdaptionPromptConfig` (peft/tuners/adaption_prompt/layer.py, `AdaptedAttention`): keys of
the prompt carry no rotary embedding; queries do.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from labs.methods import inject

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The transformer blocks (modules that own both `self_attn` and `mlp`), in order."""
    layers = [m for m in model.modules() if hasattr(m, "self_attn") and hasattr(m, "mlp")]
    if not layers:
        raise ValueError(f"{type(model).__name__}: found no decoder layer with .self_attn and .mlp "
                         "(Llama/Qwen2/Mistral-style models are supported)")
    return layers


# ----------------------------------------------------------------------------------------------------
# Houlsby
# ----------------------------------------------------------------------------------------------------
class BottleneckAdapter(nn.Module):
    def __init__(self, d: int, bottleneck: int, activation: str = "gelu", init_std: float = 1e-2):
        super().__init__()
        self.down = nn.Linear(d, bottleneck)                 # (m, d)
        self.act = ACTIVATIONS[activation]()
        self.up = nn.Linear(bottleneck, d)                   # (d, m)
        for lin in (self.down, self.up):
            if init_std > 0:
                nn.init.trunc_normal_(lin.weight, std=init_std, a=-2 * init_std, b=2 * init_std)
            else:
                nn.init.zeros_(lin.weight)                   # exact identity, but only b_up gets a gradient
            nn.init.zeros_(lin.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.up(self.act(self.down(h)))          # (…, d)


class AdaptedSublayer(nn.Module):
    """sublayer(…) followed by an adapter on its main output (attention returns a tuple, the MLP a tensor)."""

    is_adapter_layer = True

    def __init__(self, sublayer: nn.Module, adapter: BottleneckAdapter):
        super().__init__()
        self.sublayer = sublayer
        self.adapter = adapter

    def forward(self, *args, **kwargs):
        out = self.sublayer(*args, **kwargs)
        if isinstance(out, tuple):
            return (self.adapter(out[0]), *out[1:])
        return self.adapter(out)


def apply_houlsby(model: nn.Module, bottleneck: int = 16, activation: str = "gelu", init_std: float = 1e-2,
                  train_layernorm: bool = True) -> nn.Module:
    """Insert two bottleneck adapters per decoder layer (after attention, after the MLP), in place."""
    if not isinstance(bottleneck, int) or isinstance(bottleneck, bool) or bottleneck < 1:
        raise ValueError(f"bottleneck={bottleneck!r}: allowed an integer >= 1")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation={activation!r}: allowed one of {tuple(ACTIVATIONS)}")
    if not init_std >= 0:
        raise ValueError(f"init_std={init_std!r}: allowed a number >= 0 (the paper uses 1e-2)")
    layers = decoder_layers(model)
    inject.freeze(model)
    d = model.config.hidden_size
    ref = model.get_input_embeddings().weight
    for layer in layers:
        for name in ("self_attn", "mlp"):
            adapter = BottleneckAdapter(d, bottleneck, activation, init_std).to(ref.device, ref.dtype)
            setattr(layer, name, AdaptedSublayer(getattr(layer, name), adapter))
        if train_layernorm:
            for n, p in layer.named_parameters():
                if "norm" in n.rsplit(".", 2)[-2]:
                    p.requires_grad_(True)
    model.peft_lab_config = {"method": "houlsby", "bottleneck": bottleneck, "activation": activation,
                             "init_std": init_std, "train_layernorm": train_layernorm}
    return model


# ----------------------------------------------------------------------------------------------------
# LLaMA-Adapter
# ----------------------------------------------------------------------------------------------------
def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding of x (B, H, T, hd) with the model's cos, sin (B, T, hd): x·cos + rot(x)·sin,
    rot(x) = (−x₂, x₁) for the two halves of each head (transformers' rotate_half)."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos.unsqueeze(1) + torch.cat((-x2, x1), dim=-1) * sin.unsqueeze(1)


class AdaptedAttention(nn.Module):
    """Wraps a Llama-style attention (q/k/v/o_proj, rotary `position_embeddings`). PEFT's parameter names."""

    is_adapter_layer = True

    def __init__(self, attn: nn.Module, adapter_len: int, hidden_size: int, num_heads: int):
        super().__init__()
        self.model = attn                          # PEFT's name for the wrapped attention
        self.adapter_len, self.num_heads = adapter_len, num_heads
        self.head_dim = attn.head_dim
        w = attn.q_proj.weight
        # N(0, 1) prompts like the official repo's nn.Embedding; the gate is the zero-init part
        self.adaption_prompt = nn.Parameter(torch.empty(1, adapter_len, hidden_size, device=w.device,
                                                        dtype=w.dtype).normal_())
        self.adaption_gate = nn.Parameter(torch.zeros(1, device=w.device, dtype=w.dtype))

    def forward(self, hidden_states: torch.Tensor, position_embeddings=None, **kwargs):
        out, *rest = self.model(hidden_states=hidden_states, position_embeddings=position_embeddings, **kwargs)
        a, (b, t, _) = self.model, hidden_states.shape
        n, hd = self.adapter_len, self.head_dim
        k = a.k_proj(self.adaption_prompt).view(1, n, -1, hd).transpose(1, 2)           # (1, kvh, n, hd)
        v = a.v_proj(self.adaption_prompt).view(1, n, -1, hd).transpose(1, 2)           # (1, kvh, n, hd)
        groups = self.num_heads // k.shape[1]
        k = k.repeat_interleave(groups, dim=1)                                           # (1, H, n, hd)
        v = v.repeat_interleave(groups, dim=1)                                           # (1, H, n, hd)
        q = a.q_proj(hidden_states).view(b, t, self.num_heads, hd).transpose(1, 2)      # (B, H, T, hd)
        cos, sin = position_embeddings
        q = rope(q, cos, sin)                                                            # RoPE on queries only
        scores = q @ k.transpose(2, 3) / math.sqrt(hd)                                   # (B, H, T, n)
        probs = self.adaption_gate * F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        ctx = (probs @ v).transpose(1, 2).reshape(b, t, -1)                              # (B, T, H·hd)
        return (out + a.o_proj(ctx), *rest)


def apply_llama_adapter(model: nn.Module, adapter_len: int = 10, adapter_layers: int = 1) -> nn.Module:
    """Add gated adaption prompts to the attention of the top `adapter_layers` decoder layers, in place."""
    layers = decoder_layers(model)
    if not isinstance(adapter_len, int) or adapter_len < 1:
        raise ValueError(f"adapter_len={adapter_len!r}: allowed an integer >= 1")
    if not isinstance(adapter_layers, int) or not 1 <= adapter_layers <= len(layers):
        raise ValueError(f"adapter_layers={adapter_layers!r}: allowed 1..{len(layers)} (the model's layer count)")
    inject.freeze(model)
    cfg = model.config
    for layer in layers[-adapter_layers:]:
        layer.self_attn = AdaptedAttention(layer.self_attn, adapter_len, cfg.hidden_size, cfg.num_attention_heads)
    model.peft_lab_config = {"method": "llama-adapter", "adapter_len": adapter_len, "adapter_layers": adapter_layers}
    return model


@torch.no_grad()
def gated_attention(model: nn.Module, tok, text: str, K: int, gate: float, seed: int) -> dict:
    """One query (the last token of `text`) in the top layer of a Llama-style `model`, with K random N(0, 1)
    adaption prompts gated by `gate`, as LLaMA-Adapter adds them: attention on the tokens (softmax, sums to 1),
    on the prompts (g · their own softmax, sums to g), and ‖prompt output‖ / ‖token output‖."""
    ids = tok(text, return_tensors="pt")["input_ids"]                                   # (1, T)
    attn = model.model.layers[-1].self_attn
    h = model(input_ids=ids, output_hidden_states=True).hidden_states[-2]               # input of the top layer
    x = model.model.layers[-1].input_layernorm(h)                                      # (1, T, d)
    T, hd, H = ids.shape[1], attn.head_dim, model.config.num_attention_heads
    cos, sin = model.model.rotary_emb(x, torch.arange(T).unsqueeze(0))
    q = rope(attn.q_proj(x).view(1, T, H, hd).transpose(1, 2), cos, sin)[:, :, -1:]    # (1, H, 1, hd)
    k = rope(attn.k_proj(x).view(1, T, -1, hd).transpose(1, 2), cos, sin)              # (1, kvh, T, hd)
    v = attn.v_proj(x).view(1, T, -1, hd).transpose(1, 2)
    P = torch.randn(1, K, model.config.hidden_size, generator=torch.Generator().manual_seed(seed))
    kp = attn.k_proj(P).view(1, K, -1, hd).transpose(1, 2)                              # no RoPE on prompts
    vp = attn.v_proj(P).view(1, K, -1, hd).transpose(1, 2)
    rep = H // k.shape[1]
    k, v, kp, vp = (z.repeat_interleave(rep, dim=1) for z in (k, v, kp, vp))
    px = torch.softmax(q @ k.transpose(2, 3) / math.sqrt(hd), -1)                       # (1, H, 1, T)
    pp = gate * torch.softmax(q @ kp.transpose(2, 3) / math.sqrt(hd), -1)               # (1, H, 1, K)
    out_x = attn.o_proj((px @ v).transpose(1, 2).reshape(1, 1, -1))
    out_p = attn.o_proj((pp @ vp).transpose(1, 2).reshape(1, 1, -1))
    return {"tokens": [tok.decode([i]) for i in ids[0].tolist()], "token_attention": px.mean(1)[0, 0].tolist(),
            "prompt_attention": pp.mean(1)[0, 0].tolist(), "prompt_over_token": float(out_p.norm() / out_x.norm())}
