"""PEFT methods, our own implementations, injected into Hugging Face causal LMs.

    name            module                    what trains
    lora            labs.methods.lora         A (r, in), B (out, r) beside each targeted linear
    rslora          labs.methods.lora         same, scaling lora_alpha / sqrt(r)
    dora            labs.methods.lora/dora    A, B and a magnitude per output row
    qlora           labs.methods.qlora        LoRA on an NF4 4-bit frozen base
    adalora         labs.methods.adalora      P (out, r), Λ (r,), Q (r, in); the rank is pruned while training
    prompt          labs.methods.prompts      virtual-token embeddings before the input
    prefix          labs.methods.prompts      per-layer key/value prefixes
    ptuning-v2      labs.methods.prompts      prefixes produced by an MLP (reparametrization)
    houlsby         labs.methods.adapters     bottleneck adapters after attention and after the MLP
    llama-adapter   labs.methods.adapters     gated adaption prompts in the top L layers
    ia3             labs.methods.ia3          l (out,) rescaling k/v outputs, l (in,) rescaling the FFN input
    vera            labs.methods.vera         λ_b (out,), λ_d (r,) per layer; A, B shared, frozen, from a seed

Every `apply` freezes the base, adds the method's parameters and sets `model.peft_lab_config`
({"method": name, ...arguments}) so `labs.methods.io.save` / `load` can round-trip it.
Training loops call `on_step_end(model, global_step)` after `optimizer.step()` (AdaLoRA prunes there;
a no-op for every other method), or pass `labs.train.Hooks(**hooks_for(model))`.
"""
from __future__ import annotations

import importlib
from typing import Callable

from torch import nn

_REGISTRY: dict[str, tuple[str, str, dict]] = {
    # name: (module, apply function, fixed keyword arguments)
    "lora": ("labs.methods.lora", "apply", {}),
    "rslora": ("labs.methods.lora", "apply", {"use_rslora": True}),
    "dora": ("labs.methods.lora", "apply", {"use_dora": True}),
    "qlora": ("labs.methods.qlora", "apply", {}),
    "adalora": ("labs.methods.adalora", "apply", {}),
    "prompt": ("labs.methods.prompts", "apply_prompt_tuning", {}),
    "prefix": ("labs.methods.prompts", "apply_prefix_tuning", {"prefix_projection": False}),
    "ptuning-v2": ("labs.methods.prompts", "apply_prefix_tuning", {"prefix_projection": True}),
    "houlsby": ("labs.methods.adapters", "apply_houlsby", {}),
    "llama-adapter": ("labs.methods.adapters", "apply_llama_adapter", {}),
    "ia3": ("labs.methods.ia3", "apply", {}),
    "vera": ("labs.methods.vera", "apply", {}),
}
METHODS = tuple(_REGISTRY)


def get_method(name: str) -> Callable[..., nn.Module]:
    """The `apply(model, **cfg)` function of method `name` (with its fixed switches bound)."""
    if name not in _REGISTRY:
        raise ValueError(f"method={name!r}: allowed one of {METHODS}")
    module, fn, fixed = _REGISTRY[name]
    apply = getattr(importlib.import_module(module), fn)

    def bound(model: nn.Module, **cfg) -> nn.Module:
        clash = {k: cfg[k] for k in fixed if k in cfg and cfg[k] != fixed[k]}
        if clash:
            raise ValueError(f"method={name!r} fixes {fixed}; got {clash}: pick the method that matches")
        return apply(model, **{**cfg, **fixed})

    bound.__name__ = f"apply_{name.replace('-', '_')}"
    bound.__doc__ = apply.__doc__
    return bound


def apply_method(model: nn.Module, name: str, _loading: bool = False, **cfg) -> nn.Module:
    """`get_method(name)(model, **cfg)`. With `_loading=True` (io.load) inits that need extra inputs are skipped."""
    if _loading:
        cfg = {k: v for k, v in cfg.items() if k not in ("init_text", "tokenizer")}
        if name == "prompt":
            cfg["init"] = "random"
    return get_method(name)(model, **cfg)


def on_step_end(model: nn.Module, global_step: int) -> dict | None:
    """Call after `optimizer.step()` and before `zero_grad()`. AdaLoRA updates importance and masks ranks;
    returns its {"budget", "ranks"} then, None for every other method."""
    controller = getattr(model, "adalora_controller", None)
    return controller.step(model, global_step) if controller is not None else None


def hooks_for(model: nn.Module) -> dict:
    """Keyword arguments for `labs.train.Hooks`: what a method needs from the training loop.
    AdaLoRA: `extra_loss` (orth_reg_weight · R, eq. 4) and `after_step` (importance update + rank masking,
    returns {"budget", "ranks"} for the step event). Every other method needs nothing: {}."""
    controller = getattr(model, "adalora_controller", None)
    if controller is None:
        return {}
    from labs.methods.adalora import orth_regularizer

    weight = controller.cfg.orth_reg_weight
    return {"extra_loss": lambda m: weight * orth_regularizer(controller.layers),
            "after_step": lambda step: controller.step(model, step)}


def trainable_report(model: nn.Module) -> dict:
    from labs.methods.inject import trainable_report as _report

    return _report(model)
