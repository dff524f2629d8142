"""PEFT methods, our own implementations, injected into Hugging Face causal LMs.

One `MethodSpec` per method in `labs.methods.registry` (re-exported here: `SPECS`, `spec`, `METHODS`).
Every `apply` freezes the base, adds the method's parameters and sets `model.peft_lab_config`
({"method": name, ...arguments}) so `labs.methods.io.save` / `load` can round-trip it.
Training loops call `on_step_end(model, global_step)` after `optimizer.step()` (AdaLoRA prunes there;
a no-op for every other method), or pass `labs.train.Hooks(**hooks_for(model))`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from labs.methods.registry import METHODS, SPECS, MethodSpec, spec  # noqa: F401  (the registry, re-exported)

if TYPE_CHECKING:
    from torch import nn


def get_method(name: str) -> Callable[..., nn.Module]:
    """The `apply(model, **cfg)` function of method `name` (with its fixed switches bound)."""
    if name not in METHODS:
        raise ValueError(f"method={name!r}: allowed one of {METHODS}")
    s = SPECS[name]
    apply, fixed = s.function("apply"), s.fixed

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
