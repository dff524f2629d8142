"""Injection: which linears get an adapter, swapping them in place, freezing the rest.

    model.layers.0.self_attn.q_proj : nn.Linear          model.layers.0.self_attn.q_proj : LoraLinear
    model.layers.0.self_attn.k_proj : nn.Linear   ──►    model.layers.0.self_attn.k_proj : LoraLinear
    lm_head                         : nn.Linear          lm_head                         : nn.Linear (kept)

`target_modules` follows PEFT's rules (peft/tuners/tuners_utils.py `check_target_module_exists`):

    "all-linear"        every nn.Linear except the output head (the layer `get_output_embeddings()` returns)
    "q_proj|v_proj"     any other string is a regex, matched with `re.fullmatch` against the full module name
    ["q_proj", "v_proj"] a list: a name matches when it equals an entry or ends with "." + entry

The labs offer a few named sets (`TARGET_PRESETS`, one spelling everywhere: "q,v", "q,k,v,o", "mlp",
"all-linear"); `preset(name)` gives the `target_modules` value. `module_type` / `layer_index` read a module name.

The base is frozen first (every parameter `requires_grad=False`); the adapter modules then create their
own trainable parameters, so "trainable" means "adapter" and nothing else.
"""
from __future__ import annotations

import re
from typing import Callable, Iterable, Union

from torch import nn

TargetSpec = Union[str, Iterable[str]]
ALL_LINEAR = "all-linear"
# the labs' named target sets (a lab offers the keys it needs as a `target_modules` choice), Llama module names
TARGET_PRESETS = {
    "q,v": ["q_proj", "v_proj"],                                  # the LoRA paper's choice
    "q,k,v,o": ["q_proj", "k_proj", "v_proj", "o_proj"],          # all of attention
    "mlp": ["gate_proj", "up_proj", "down_proj"],
    ALL_LINEAR: ALL_LINEAR,
}


def preset(name: str) -> TargetSpec:
    """The `target_modules` value of a named set."""
    if name not in TARGET_PRESETS:
        raise ValueError(f"target_modules = {name!r} is not a preset: allowed {', '.join(TARGET_PRESETS)}")
    return TARGET_PRESETS[name]


def module_type(name: str) -> str:
    """model.layers.3.self_attn.q_proj → q_proj."""
    return name.rsplit(".", 1)[-1]


def layer_index(name: str) -> int:
    """model.layers.3.self_attn.q_proj → 3 (−1 outside the decoder layers)."""
    parts = name.split(".")
    return int(parts[parts.index("layers") + 1]) if "layers" in parts else -1


def _is_adapter(module: nn.Module) -> bool:
    """Our adapter wrappers set `is_adapter_layer = True`; their inner linears are not targets again."""
    return bool(getattr(module, "is_adapter_layer", False))


def _output_head_name(model: nn.Module) -> str | None:
    get = getattr(model, "get_output_embeddings", None)
    head = get() if callable(get) else None
    if head is None:
        return None
    for name, module in model.named_modules():
        if module is head:
            return name
    return None


def linear_names(model: nn.Module, linear_types: tuple[type, ...] = (nn.Linear,)) -> list[str]:
    """Full names of every linear layer that is not already inside one of our adapter wrappers."""
    inside: list[str] = [n for n, m in model.named_modules() if _is_adapter(m)]
    out = []
    for name, module in model.named_modules():
        if not isinstance(module, linear_types) or _is_adapter(module):
            continue
        if any(name.startswith(p + ".") for p in inside):
            continue
        out.append(name)
    return out


def match_targets(model: nn.Module, target_modules: TargetSpec,
                  linear_types: tuple[type, ...] = (nn.Linear,)) -> list[str]:
    """Resolve `target_modules` to the sorted full names of the linears to adapt; raise if none match."""
    names = linear_names(model, linear_types)
    if isinstance(target_modules, str) and target_modules == ALL_LINEAR:
        head = _output_head_name(model)
        chosen = [n for n in names if n != head]
    elif isinstance(target_modules, str):
        try:
            pattern = re.compile(target_modules)
        except re.error as err:
            raise ValueError(f"target_modules={target_modules!r} is not a valid regex ({err}); "
                             f"use a list of names or {ALL_LINEAR!r}") from err
        chosen = [n for n in names if pattern.fullmatch(n)]
    else:
        wanted = list(target_modules)
        if not wanted or not all(isinstance(t, str) for t in wanted):
            raise ValueError(f"target_modules={target_modules!r}: allowed a non-empty list of module names, "
                             f"a regex string or {ALL_LINEAR!r}")
        chosen = [n for n in names if any(n == t or n.endswith("." + t) for t in wanted)]
    if not chosen:
        suffixes = sorted({n.rsplit(".", 1)[-1] for n in names})
        raise ValueError(f"target_modules={target_modules!r} matched no linear layer; "
                         f"linear names end in {suffixes}")
    return chosen


def get_submodule_parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    return parent, child


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, child = get_submodule_parent(model, name)
    setattr(parent, child, new)


def freeze(model: nn.Module) -> nn.Module:
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def inject(model: nn.Module, target_modules: TargetSpec, make: Callable[[str, nn.Module], nn.Module],
           linear_types: tuple[type, ...] = (nn.Linear,)) -> list[str]:
    """Freeze the model, then replace each targeted linear `m` (full name `n`) by `make(n, m)`."""
    names = match_targets(model, target_modules, linear_types)
    freeze(model)
    for name in names:
        replace_module(model, name, make(name, model.get_submodule(name)))
    return names


def compact_targets(all_linears: list[str], names: list[str]) -> list[str]:
    """The shortest PEFT `target_modules` list selecting exactly `names` out of `all_linears` (names before
    injection): a suffix when every linear with that suffix is chosen (what peft writes, e.g. ["q_proj"]),
    the full names otherwise (peft matches a full name by equality)."""
    chosen = set(names)
    out: list[str] = []
    for suffix in sorted({n.rsplit(".", 1)[-1] for n in names}):
        same = {n for n in all_linears if n == suffix or n.endswith("." + suffix)}
        if same <= chosen:
            out.append(suffix)
        else:
            out.extend(sorted(n for n in names if n.rsplit(".", 1)[-1] == suffix))
    return out


def trainable_report(model: nn.Module) -> dict:
    """{"trainable": int, "total": int, "percent": float}: same counting as peft's `get_nb_trainable_parameters`
    (every parameter once; the total includes the adapter; a 4-bit weight counts its out·in logical weights,
    as peft counts bitsandbytes' Params4bit)."""
    trainable = total = 0
    for p in model.parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    total += sum(int(getattr(m, "logical_numel", 0)) for m in model.modules())   # packed weights held as buffers
    return {"trainable": trainable, "total": total, "percent": 100.0 * trainable / max(total, 1)}


# ------------------------------------------------------------------ merging, for every adapter that wraps a linear
# An adapter layer keeps the linear it wraps as `base_layer` and folds itself into it with `merge()` (`unmerge()`
# takes it out again). `layers(model)` finds a method's adapter layers, e.g. lora.lora_layers.
def merge_layers(model: nn.Module, layers: Callable[[nn.Module], dict]) -> nn.Module:
    """Fold every adapter into its base weight; the forward then computes the base alone."""
    for m in layers(model).values():
        m.merge()
    return model


def unmerge_layers(model: nn.Module, layers: Callable[[nn.Module], dict]) -> nn.Module:
    for m in layers(model).values():
        m.unmerge()
    return model


def unload_layers(model: nn.Module, layers: Callable[[nn.Module], dict]) -> nn.Module:
    """Merge, then put the plain base linears back: a standard transformers model with no adapter code."""
    for name, m in layers(model).items():
        m.merge()
        replace_module(model, name, m.base_layer)
    model.__dict__.pop("peft_lab_config", None)
    return model
