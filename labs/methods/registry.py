"""The method registry: one `MethodSpec` per method, and nothing about a method anywhere else (peft's
`PEFT_TYPE_TO_CONFIG_MAPPING`). `labs.methods.get_method`, the trade-off table (`labs.compare`), the calculator
(`labs.budget`, `app/pages/calculator.py`) and the decision guide all read it.

    spec.apply      "module:function" that injects the method (None for "full": the baseline trains everything)
    spec.fixed      switches bound into apply ("rslora" = lora's apply with use_rslora=True)
    spec.label      {en, zh}                     spec.lr   default peak learning rate (AdamW, cosine)
    spec.merge      "module:function", model -> model with the adapter folded into plain weights; None: cannot
    spec.settings   apply's keyword arguments that a lab's shared settings supply (r, lora_alpha, …: `settings_for`)
    spec.code       our source files of the method, spec.kernels the kernels they call (line counts)
    spec.budget     the labs.budget formula that sizes it (None: the calculator does not list it), and
    spec.budget_kwargs   the compare settings -> that formula's keyword arguments (the budget formula hook)
    spec.compare    measured in the trade-off table (`python -m labs compare`)
    spec.page       the concept page (content/pages/index.yaml id) that teaches it

Functions are named by string and imported on first use, so this module (and `labs.budget`) imports no torch.
Adding a method = one entry below plus its own module.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

LORA_CODE = ("labs/methods/lora.py", "labs/methods/inject.py", "labs/methods/fused.py")
LORA_KERNELS = ("peftlab_kernels/lora.py", "peftlab_kernels/lora_triton.py")
LORA_SETTINGS = ("r", "lora_alpha", "target_modules")
NF4_KERNELS = ("peftlab_kernels/nf4.py", "peftlab_kernels/linear4bit.py", "peftlab_kernels/quant4_torch.py",
               "peftlab_kernels/codebooks.py", "peftlab_kernels/blockwise8.py", "peftlab_kernels/quant4_triton.py")


@dataclass(frozen=True)
class MethodSpec:
    name: str
    label: dict
    apply: str | None
    lr: float
    fixed: dict = field(default_factory=dict)
    settings: tuple[str, ...] = ()
    merge: str | None = None
    code: tuple[str, ...] = ()
    kernels: tuple[str, ...] = ()
    budget: str | None = None
    budget_kwargs: Callable[[object], dict] = lambda settings: {}
    compare: bool = False
    page: str | None = None

    @property
    def mergeable(self) -> bool:
        return self.merge is not None

    def function(self, which: str = "apply") -> Callable:
        """The function named by `apply` or `merge`, imported now."""
        ref = getattr(self, which)
        if ref is None:
            raise ValueError(f"method={self.name!r} has no {which} function")
        module, fn = ref.split(":")
        return getattr(importlib.import_module(module), fn)


SPECS: dict[str, MethodSpec] = {s.name: s for s in (
    MethodSpec("full", {"en": "Full FT", "zh": "全量微调"}, None, 1e-3, merge="labs.methods.registry:unchanged",
               budget="full", compare=True, page="calculator"),
    MethodSpec("lora", {"en": "LoRA", "zh": "LoRA"}, "labs.methods.lora:apply", 1e-2,
               merge="labs.methods.lora:merge_and_unload", settings=LORA_SETTINGS,
               code=LORA_CODE, kernels=LORA_KERNELS,
               budget="lora", budget_kwargs=lambda s: {"rank": s.r}, compare=True, page="lora"),
    MethodSpec("rslora", {"en": "rsLoRA", "zh": "rsLoRA"}, "labs.methods.lora:apply", 1e-2, {"use_rslora": True},
               merge="labs.methods.lora:merge_and_unload", settings=LORA_SETTINGS,
               code=LORA_CODE, kernels=LORA_KERNELS, page="lora"),
    MethodSpec("qlora", {"en": "QLoRA", "zh": "QLoRA"}, "labs.methods.qlora:apply", 1e-2,
               merge="labs.methods.qlora:merge_and_unload",
               settings=LORA_SETTINGS + ("quant_type", "blocksize", "double_quant"),
               code=("labs/methods/qlora.py", "labs/methods/lora.py", "labs/methods/inject.py"), kernels=NF4_KERNELS,
               budget="qlora", budget_kwargs=lambda s: {"rank": s.r}, compare=True, page="qlora"),
    MethodSpec("dora", {"en": "DoRA", "zh": "DoRA"}, "labs.methods.lora:apply", 1e-2, {"use_dora": True},
               merge="labs.methods.lora:merge_and_unload",
               settings=LORA_SETTINGS,
               code=("labs/methods/lora.py", "labs/methods/dora.py", "labs/methods/inject.py", "labs/methods/fused.py"),
               kernels=LORA_KERNELS, budget="dora", budget_kwargs=lambda s: {"rank": s.r}, compare=True, page="dora"),
    MethodSpec("adalora", {"en": "AdaLoRA", "zh": "AdaLoRA"}, "labs.methods.adalora:apply", 1e-2,
               merge="labs.methods.adalora:merge_and_unload",
               settings=("total_step", "init_r", "target_r", "lora_alpha", "tinit", "tfinal", "deltaT",
                         "target_modules"),
               code=("labs/methods/adalora.py", "labs/methods/inject.py", "labs/methods/fused.py"),
               kernels=LORA_KERNELS, budget="adalora", budget_kwargs=lambda s: {"rank": s.adalora_init_r},
               compare=True, page="adalora"),
    MethodSpec("prompt", {"en": "Prompt tuning", "zh": "Prompt tuning"}, "labs.methods.prompts:apply_prompt_tuning",
               3e-2, settings=("num_virtual_tokens", "init", "init_text", "tokenizer", "seed"),
               code=("labs/methods/prompts.py",),
               budget="prompt", budget_kwargs=lambda s: {"n_tokens": s.num_virtual_tokens},
               compare=True, page="soft-prompts"),
    MethodSpec("prefix", {"en": "Prefix tuning", "zh": "Prefix tuning"}, "labs.methods.prompts:apply_prefix_tuning",
               3e-2, {"prefix_projection": False}, settings=("num_virtual_tokens",),
               code=("labs/methods/prompts.py",),
               budget="prefix", budget_kwargs=lambda s: {"n_tokens": s.num_virtual_tokens, "prefix_projection": False,
                                                         "encoder_hidden": s.encoder_hidden_size},
               compare=True, page="soft-prompts"),
    MethodSpec("ptuning-v2", {"en": "P-tuning v2", "zh": "P-tuning v2"}, "labs.methods.prompts:apply_prefix_tuning",
               1e-2, {"prefix_projection": True}, settings=("num_virtual_tokens", "encoder_hidden_size"),
               code=("labs/methods/prompts.py",),
               budget="prefix", budget_kwargs=lambda s: {"n_tokens": s.num_virtual_tokens, "prefix_projection": True,
                                                         "encoder_hidden": s.encoder_hidden_size},
               compare=True, page="soft-prompts"),
    MethodSpec("houlsby", {"en": "Houlsby adapter", "zh": "Houlsby adapter"}, "labs.methods.adapters:apply_houlsby",
               1e-2, settings=("bottleneck",),
               code=("labs/methods/adapters.py",),
               budget="houlsby", budget_kwargs=lambda s: {"adapter_size": s.bottleneck, "train_layernorm": True},
               compare=True, page="adapters"),
    MethodSpec("llama-adapter", {"en": "LLaMA-Adapter", "zh": "LLaMA-Adapter"},
               "labs.methods.adapters:apply_llama_adapter", 3e-2, settings=("adapter_len", "adapter_layers"),
               code=("labs/methods/adapters.py",),
               budget="llama-adapter",
               budget_kwargs=lambda s: {"adapter_len": s.adapter_len, "adapter_layers": s.adapter_layers},
               compare=True, page="adapters"),
    MethodSpec("ia3", {"en": "(IA)³", "zh": "(IA)³"}, "labs.methods.ia3:apply", 1e-2,
               merge="labs.methods.ia3:merge_and_unload", code=("labs/methods/ia3.py", "labs/methods/inject.py"),
               budget="ia3", page="more-methods"),
    MethodSpec("vera", {"en": "VeRA", "zh": "VeRA"}, "labs.methods.vera:apply", 1e-2,
               merge="labs.methods.vera:merge_and_unload", code=("labs/methods/vera.py", "labs/methods/inject.py"),
               budget="vera", page="more-methods"),
    MethodSpec("pissa", {"en": "PiSSA", "zh": "PiSSA"}, "labs.methods.lora:apply", 3e-3, {"init": "pissa"},
               merge="labs.methods.lora:merge_and_unload", settings=LORA_SETTINGS,
               code=LORA_CODE + ("labs/methods/lora_init.py",), kernels=LORA_KERNELS, page="more-methods"),
    MethodSpec("loftq", {"en": "LoftQ", "zh": "LoftQ"}, "labs.methods.qlora:apply", 1e-2, {"init": "loftq"},
               merge="labs.methods.qlora:merge_and_unload",
               settings=LORA_SETTINGS + ("quant_type", "blocksize", "double_quant", "loftq_iter"),
               code=("labs/methods/qlora.py", "labs/methods/lora.py", "labs/methods/lora_init.py",
                     "labs/methods/inject.py"), kernels=NF4_KERNELS, page="more-methods"),
    # GaLore is an optimizer, not an adapter: every weight trains (apply None, like "full"); labs.methods.galore
    MethodSpec("galore", {"en": "GaLore", "zh": "GaLore"}, None, 1e-2, merge="labs.methods.registry:unchanged",
               code=("labs/methods/galore.py",), page="more-methods"),
)}

METHODS = tuple(n for n, s in SPECS.items() if s.apply)          # what get_method / apply_method accept
COMPARED = tuple(n for n, s in SPECS.items() if s.compare)        # the trade-off table's rows, in order
BUDGET_FORMULAS = tuple(dict.fromkeys(s.budget for s in SPECS.values() if s.budget))   # labs.budget.METHODS


def spec(name: str) -> MethodSpec:
    if name not in SPECS:
        raise ValueError(f"method={name!r}: allowed one of {tuple(SPECS)}")
    return SPECS[name]


def settings_for(name: str, values: dict) -> dict:
    """The keyword arguments of method `name`'s apply found in `values` (a lab's shared settings), by name."""
    return {k: values[k] for k in spec(name).settings if k in values}


def unchanged(model):
    """Full fine-tuning's "merge": the trained weights already are plain weights."""
    return model
