"""Model presets for the budget calculator: one line per model, the real Hugging Face configs.

gpt-fast style: a small dataclass with derived fields in ``__post_init__`` and a table
``PRESETS`` whose every line is a published ``config.json`` reduced to the fields that decide
parameter count and memory. Any other decoder-only Llama-family ``config.json`` (Llama, Mistral,
Qwen2, ...) goes through ``load_config`` with the same validation.

    field            meaning                                   Llama-2-7B   Llama-3-8B (GQA)
    vocab_size       V, rows of embed_tokens / lm_head         32000        128256
    hidden_size      h                                         4096         4096
    intermediate     I, SwiGLU width (gate/up: h->I, down I->h) 11008        14336
    n_layers         L                                         32           32
    n_heads          a, query heads                            32           32
    n_kv_heads       k, key/value heads (GQA when k < a)       32           8
    head_dim         d = h / a unless the config says so       128          128
    tied             lm_head shares embed_tokens' matrix       False        False
    qkv_bias         q/k/v projections carry a bias (Qwen2)    False        False
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

from labs.params import ParamError

MAX_CONFIG_BYTES = 256 * 1024   # a real config.json is 1-5 KB; anything this large is not one
MAX_DIM = 1 << 20               # bounds that keep the arithmetic meaningful (no real model is near)
MAX_LAYERS = 4096


class BudgetError(ParamError):
    """Bad calculator input. ``.field`` names the input; the message says value and what is allowed."""


@dataclass(frozen=True)
class ArchConfig:
    name: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    n_layers: int
    n_heads: int
    n_kv_heads: int = -1             # -1: same as n_heads (multi-head attention)
    head_dim: int = -1               # -1: hidden_size // n_heads
    tied: bool = False
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    max_position: int = 4096
    family: str = "llama"
    hf: dict = field(default_factory=dict, compare=False, repr=False)  # the config.json fields, for transformers

    def __post_init__(self):
        if self.n_kv_heads == -1:
            object.__setattr__(self, "n_kv_heads", self.n_heads)
        if self.head_dim == -1:
            object.__setattr__(self, "head_dim", self.hidden_size // max(self.n_heads, 1))
        _validate(self)

    @property
    def q_dim(self) -> int:          # a * d, width of q_proj's output
        return self.n_heads * self.head_dim

    @property
    def kv_dim(self) -> int:         # k * d, width of k_proj / v_proj's output
        return self.n_kv_heads * self.head_dim

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "hf"}


HF_NAMES = {"n_layers": "num_hidden_layers", "n_heads": "num_attention_heads", "n_kv_heads": "num_key_value_heads",
            "max_position": "max_position_embeddings"}


def _validate(c: ArchConfig) -> None:
    for name, hi in (("vocab_size", MAX_DIM * 4), ("hidden_size", MAX_DIM), ("intermediate_size", MAX_DIM * 4),
                     ("n_layers", MAX_LAYERS), ("n_heads", MAX_DIM), ("n_kv_heads", MAX_DIM),
                     ("head_dim", MAX_DIM), ("max_position", 1 << 24)):
        v = getattr(c, name)
        hf = HF_NAMES.get(name, name)
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi:
            raise BudgetError(hf, f"config {hf} = {v!r} is not allowed: allowed an integer 1..{hi}")
    if c.n_heads % c.n_kv_heads:
        raise BudgetError("num_key_value_heads", f"config num_key_value_heads = {c.n_kv_heads} must divide "
                                        f"num_attention_heads = {c.n_heads}")


# name: (family, V, h, I, L, a, k, tied, qkv_bias, max_position) — from each model's config.json on the Hub
_TABLE = {
    "llama-2-7b":   ("llama",  32000,  4096, 11008, 32, 32, 32, False, False, 4096),
    "llama-2-13b":  ("llama",  32000,  5120, 13824, 40, 40, 40, False, False, 4096),
    "llama-2-70b":  ("llama",  32000,  8192, 28672, 80, 64,  8, False, False, 4096),
    "llama-65b":    ("llama",  32000,  8192, 22016, 80, 64, 64, False, False, 2048),
    "llama-3-8b":   ("llama", 128256,  4096, 14336, 32, 32,  8, False, False, 8192),
    "llama-3-70b":  ("llama", 128256,  8192, 28672, 80, 64,  8, False, False, 8192),
    "mistral-7b":   ("mistral", 32000, 4096, 14336, 32, 32,  8, False, False, 32768),
    "qwen2.5-7b":   ("qwen2", 152064,  3584, 18944, 28, 28,  4, False, True, 32768),
    "qwen2.5-72b":  ("qwen2", 152064,  8192, 29568, 80, 64,  8, False, True, 32768),
    # small tied-embedding models, to show that lm_head then costs nothing extra
    "qwen2.5-0.5b": ("qwen2", 151936,   896,  4864, 24, 14,  2, True, True, 32768),
    "llama-3.2-1b": ("llama", 128256,  2048,  8192, 16, 32,  8, True, False, 131072),
}
HUB_IDS = {
    "llama-2-7b": "meta-llama/Llama-2-7b-hf", "llama-2-13b": "meta-llama/Llama-2-13b-hf",
    "llama-2-70b": "meta-llama/Llama-2-70b-hf", "llama-65b": "huggyllama/llama-65b",
    "llama-3-8b": "meta-llama/Meta-Llama-3-8B", "llama-3-70b": "meta-llama/Meta-Llama-3-70B",
    "mistral-7b": "mistralai/Mistral-7B-v0.1", "qwen2.5-7b": "Qwen/Qwen2.5-7B",
    "qwen2.5-72b": "Qwen/Qwen2.5-72B", "qwen2.5-0.5b": "Qwen/Qwen2.5-0.5B",
    "llama-3.2-1b": "meta-llama/Llama-3.2-1B",
}
_MODEL_TYPE = {"llama": "llama", "mistral": "mistral", "qwen2": "qwen2"}


def _preset(name: str) -> ArchConfig:
    fam, V, h, I, L, a, k, tied, qkv_bias, maxpos = _TABLE[name]
    hf = {"model_type": _MODEL_TYPE[fam], "vocab_size": V, "hidden_size": h, "intermediate_size": I,
          "num_hidden_layers": L, "num_attention_heads": a, "num_key_value_heads": k,
          "tie_word_embeddings": tied, "max_position_embeddings": maxpos}
    return ArchConfig(name, V, h, I, L, a, k, tied=tied, qkv_bias=qkv_bias, max_position=maxpos,
                      family=fam, hf=hf)


PRESETS: dict[str, ArchConfig] = {n: _preset(n) for n in _TABLE}
MAIN_PRESETS = tuple(n for n in _TABLE if n not in ("qwen2.5-0.5b", "llama-3.2-1b"))

_SUPPORTED_TYPES = ("llama", "mistral", "qwen2")
_REQUIRED = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")


def from_hf_dict(cfg: dict, name: str = "custom") -> ArchConfig:
    """A validated ArchConfig from a parsed config.json (Llama-family decoder-only models)."""
    if not isinstance(cfg, dict):
        raise BudgetError("config", f"config.json must hold a JSON object, got {type(cfg).__name__}")
    mtype = cfg.get("model_type", "llama")
    if mtype not in _SUPPORTED_TYPES:
        raise BudgetError("model_type", f"config model_type = {mtype!r} is not supported: allowed llama, "
                                        "mistral, qwen2 (Llama-family decoder-only models)")
    missing = [k for k in _REQUIRED if k not in cfg]
    if missing:
        raise BudgetError(missing[0], f"config.json is missing field {missing[0]!r}: required "
                                      f"{', '.join(_REQUIRED)}")
    if cfg.get("num_local_experts") or cfg.get("num_experts"):
        raise BudgetError("num_local_experts", "mixture-of-experts configs are not supported: allowed dense models")
    a = cfg["num_attention_heads"]
    head_dim = cfg.get("head_dim") or -1
    qkv_bias = bool(cfg.get("attention_bias", False)) or mtype == "qwen2"
    try:
        return ArchConfig(
            name=name, vocab_size=cfg["vocab_size"], hidden_size=cfg["hidden_size"],
            intermediate_size=cfg["intermediate_size"], n_layers=cfg["num_hidden_layers"], n_heads=a,
            n_kv_heads=cfg.get("num_key_value_heads") or a, head_dim=head_dim,
            tied=bool(cfg.get("tie_word_embeddings", False)),
            qkv_bias=qkv_bias, o_bias=bool(cfg.get("attention_bias", False)) and mtype != "qwen2",
            mlp_bias=bool(cfg.get("mlp_bias", False)),
            max_position=cfg.get("max_position_embeddings") or 4096, family=mtype,
            hf={k: v for k, v in cfg.items() if not k.startswith("_")})
    except TypeError as e:  # e.g. a list where a number belongs
        raise BudgetError("config", f"config.json has a field of the wrong type: {e}") from None


def parse_config_bytes(data: bytes, name: str = "custom") -> ArchConfig:
    """Parse an uploaded config.json: size cap, JSON check, then ``from_hf_dict``."""
    if len(data) > MAX_CONFIG_BYTES:
        raise BudgetError("config", f"config.json is {len(data)} bytes: allowed at most {MAX_CONFIG_BYTES} bytes")
    try:
        cfg = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BudgetError("config", f"config.json is not valid JSON ({e}): upload a Hugging Face config.json") \
            from None
    return from_hf_dict(cfg, name)


def get_arch(model: str | dict | ArchConfig) -> ArchConfig:
    """A preset name, a path to a config.json, a parsed dict, or an ArchConfig → ArchConfig."""
    if isinstance(model, ArchConfig):
        return model
    if isinstance(model, dict):
        return from_hf_dict(model)
    if not isinstance(model, str) or not model:
        raise BudgetError("model", f"model = {model!r} is not allowed: allowed a preset "
                                   f"({', '.join(PRESETS)}) or a path to config.json")
    if model in PRESETS:
        return PRESETS[model]
    path = Path(model)
    if model.endswith(".json") or path.is_file():
        if not path.is_file():
            raise BudgetError("model", f"model = {model!r}: no such config.json file")
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise BudgetError("config", f"config.json is {path.stat().st_size} bytes: allowed at most "
                                        f"{MAX_CONFIG_BYTES} bytes")
        return parse_config_bytes(path.read_bytes(), name=path.parent.name or path.stem)
    raise BudgetError("model", f"model = {model!r} is not a known preset: allowed {', '.join(PRESETS)} "
                               "or a path to config.json")
