"""Save and load adapters: safetensors + JSON, never pickle.

PEFT format for LoRA / rsLoRA / DoRA, readable by `peft.PeftModel.from_pretrained(base, dir)`:

    dir/adapter_config.json         {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": [...], ...}
    dir/adapter_model.safetensors   base_model.model.<module>.lora_A.weight            (r, in)
                                    base_model.model.<module>.lora_B.weight            (out, r)
                                    base_model.model.<module>.lora_magnitude_vector    (out,)   DoRA only

(PEFT stores `lora_A.default.weight` in memory and drops the adapter name ".default" when saving.)

PEFT format for IA³ and VeRA too (peft_type "IA3" / "VERA"): the method module (labs.methods.ia3 / vera) says
which tensors and config keys; `base_model.model.<module>.ia3_l`, `.vera_lambda_b`, `.vera_lambda_d`, and
VeRA's shared projections `base_model.vera_A` / `base_model.vera_B`.

Every other method: dir/peft_lab_config.json ({"method": name, ...the apply() arguments}) and
dir/adapter_model.safetensors holding the trainable tensors under the model's own parameter names.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from safetensors.torch import load_file, save_file

PEFT_PREFIX = "base_model.model."
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
LAB_CONFIG = "peft_lab_config.json"
LORA_METHODS = ("lora", "rslora", "dora")
PEFT_FORMAT_MODULES = {"ia3": "labs.methods.ia3", "vera": "labs.methods.vera"}   # method: module (peft_type)


class AdapterFileError(ValueError):
    """A malformed or mismatched adapter directory; the message names the file and the keys."""


def _check_keys(where: Path, expected: dict, found: dict) -> None:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing or unexpected:
        raise AdapterFileError(f"{where}: missing keys {missing[:8]}{' …' if len(missing) > 8 else ''} "
                               f"({len(missing)} total); unexpected keys {unexpected[:8]}"
                               f"{' …' if len(unexpected) > 8 else ''} ({len(unexpected)} total)")
    bad = [(k, tuple(found[k].shape), tuple(expected[k].shape)) for k in expected
           if tuple(found[k].shape) != tuple(expected[k].shape)]
    if bad:
        k, got, want = bad[0]
        raise AdapterFileError(f"{where}: key {k!r} has shape {got}, the model expects {want} "
                               f"({len(bad)} mismatched); was it saved with another r or base model?")


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise AdapterFileError(f"{path}: file not found")
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise AdapterFileError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(cfg, dict):
        raise AdapterFileError(f"{path}: expected a JSON object, got {type(cfg).__name__}")
    return cfg


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise AdapterFileError(f"{path}: file not found")
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own SafetensorError on a corrupt header
        raise AdapterFileError(f"{path}: not a readable safetensors file ({err})") from err


def _copy_into(params: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for k, p in params.items():
            p.copy_(tensors[k].to(device=p.device, dtype=p.dtype))


# ---------------------------------------------------------------------------------------------------
# PEFT format: LoRA, rsLoRA, DoRA
# ---------------------------------------------------------------------------------------------------
def lora_peft_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Our LoRA tensors under PEFT's saved key names (live parameters, not copies)."""
    from labs.methods.lora import lora_layers

    sd = {}
    for name, m in lora_layers(model).items():
        sd[f"{PEFT_PREFIX}{name}.lora_A.weight"] = m.lora_A.weight
        sd[f"{PEFT_PREFIX}{name}.lora_B.weight"] = m.lora_B.weight
        if m.use_dora:
            sd[f"{PEFT_PREFIX}{name}.lora_magnitude_vector"] = m.lora_magnitude_vector
    return sd


def peft_adapter_config(model: nn.Module) -> dict:
    cfg = getattr(model, "peft_lab_config", None)
    if cfg and cfg.get("init") == "loftq":
        raise AdapterFileError("save_peft: init='loftq' rewrote the base into our 4-bit Q_T, which peft cannot rebuild; "
                               "use labs.methods.io.save (it re-runs LoftQ on load)")
    if not cfg or cfg.get("method") not in LORA_METHODS:
        raise AdapterFileError(f"save_peft: the model carries no LoRA adapter (method="
                               f"{(cfg or {}).get('method')!r}); allowed {LORA_METHODS}; call lora.apply first")
    return {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "inference_mode": True,
        "base_model_name_or_path": getattr(getattr(model, "config", None), "_name_or_path", None) or None,
        "r": cfg["r"], "lora_alpha": cfg["lora_alpha"], "lora_dropout": cfg["lora_dropout"],
        "target_modules": cfg["target_modules"], "use_rslora": cfg["use_rslora"], "use_dora": cfg["use_dora"],
        "bias": "none", "fan_in_fan_out": False, "modules_to_save": None,
        # PiSSA: peft re-runs the same full-SVD init on the original base (base ← residual), then loads A, B
        "init_lora_weights": "pissa" if cfg.get("init") == "pissa" else True,
        "rank_pattern": {}, "alpha_pattern": {}, "layers_to_transform": None, "layers_pattern": None,
    }


def write_adapter(path: Path, tensors: dict[str, torch.Tensor], config: dict | None = None) -> Path:
    """adapter_model.safetensors (contiguous CPU copies) and, with `config`, adapter_config.json, into `path`."""
    path.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path / ADAPTER_WEIGHTS),
              metadata={"format": "pt"})
    if config is not None:
        (path / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True))
    return path


def save_lora_peft(model: nn.Module, path) -> Path:
    """Write adapter_config.json + adapter_model.safetensors that peft loads as-is."""
    cfg = peft_adapter_config(model)
    return write_adapter(Path(path), lora_peft_state_dict(model), cfg)


def load_lora_peft(base_model: nn.Module, path) -> nn.Module:
    """Apply the LoRA described by `path/adapter_config.json` (ours or PEFT's) to `base_model`, load weights."""
    from labs.methods import lora

    path = Path(path)
    cfg = read_json(path / ADAPTER_CONFIG)
    if cfg.get("peft_type") != "LORA":
        raise AdapterFileError(f"{path / ADAPTER_CONFIG}: peft_type={cfg.get('peft_type')!r}; allowed 'LORA' "
                               f"(other methods load with labs.methods.io.load)")
    for key, ok in (("rank_pattern", {}), ("alpha_pattern", {}), ("modules_to_save", None), ("bias", "none"),
                    ("fan_in_fan_out", False), ("layers_to_transform", None)):
        if cfg.get(key) not in (None, ok):
            raise AdapterFileError(f"{path / ADAPTER_CONFIG}: {key}={cfg[key]!r} is not supported; allowed {ok!r}")
    missing = [k for k in ("r", "lora_alpha", "target_modules") if k not in cfg]
    if missing:
        raise AdapterFileError(f"{path / ADAPTER_CONFIG}: missing keys {missing}")
    model = lora.apply(base_model, r=int(cfg["r"]), lora_alpha=cfg["lora_alpha"],
                       target_modules=cfg["target_modules"], lora_dropout=float(cfg.get("lora_dropout") or 0.0),
                       use_rslora=bool(cfg.get("use_rslora", False)), use_dora=bool(cfg.get("use_dora", False)),
                       init="pissa" if cfg.get("init_lora_weights") == "pissa" else "standard")
    tensors = read_tensors(path / ADAPTER_WEIGHTS)
    expected = lora_peft_state_dict(model)
    _check_keys(path / ADAPTER_WEIGHTS, expected, tensors)
    _copy_into(expected, tensors)
    return model


# ---------------------------------------------------------------------------------------------------
# PEFT format: IA³, VeRA (the method module names its tensors and config keys)
# ---------------------------------------------------------------------------------------------------
def _format_module(method: str):
    import importlib

    return importlib.import_module(PEFT_FORMAT_MODULES[method])


def _peft_tensors(model: nn.Module, mod) -> dict[str, torch.Tensor]:
    sd = {PEFT_PREFIX + k: v for k, v in mod.peft_state_dict(model).items()}
    shared = getattr(mod, "shared_state_dict", None)
    return {**sd, **(shared(model) if shared else {})}


def save_peft_format(model: nn.Module, path) -> Path:
    """IA³ / VeRA: adapter_config.json + adapter_model.safetensors that peft loads as-is."""
    path = Path(path)
    cfg = getattr(model, "peft_lab_config", None) or {}
    if cfg.get("method") not in PEFT_FORMAT_MODULES:
        raise AdapterFileError(f"save_peft_format: method={cfg.get('method')!r}; allowed {tuple(PEFT_FORMAT_MODULES)}")
    mod = _format_module(cfg["method"])
    peft_cfg = {"task_type": "CAUSAL_LM", "inference_mode": True, "revision": None,
                "base_model_name_or_path": getattr(getattr(model, "config", None), "_name_or_path", None) or None,
                **mod.peft_config(cfg)}
    return write_adapter(path, _peft_tensors(model, mod), peft_cfg)


def load_peft_format(base_model: nn.Module, path) -> nn.Module:
    """Apply the IA³ / VeRA adapter in `path/adapter_config.json` (ours or peft's) to `base_model`, load weights."""
    from labs.methods import apply_method

    path = Path(path)
    cfg = read_json(path / ADAPTER_CONFIG)
    by_type = {_format_module(m).PEFT_TYPE: m for m in PEFT_FORMAT_MODULES}
    method = by_type.get(cfg.get("peft_type"))
    if method is None:
        raise AdapterFileError(f"{path / ADAPTER_CONFIG}: peft_type={cfg.get('peft_type')!r}; allowed "
                               f"{sorted(by_type) + ['LORA']}")
    mod = _format_module(method)
    try:
        kwargs = mod.apply_kwargs_from_peft(cfg)
    except (KeyError, ValueError) as err:
        raise AdapterFileError(f"{path / ADAPTER_CONFIG}: {err}") from err
    model = apply_method(base_model, method, **kwargs)
    tensors = read_tensors(path / ADAPTER_WEIGHTS)
    expected = _peft_tensors(model, mod)
    shared = set(expected) - {PEFT_PREFIX + k for k in mod.peft_state_dict(model)}
    # VeRA saved with save_projection=False: the seed already regenerated A and B, nothing to load for them
    present = {k: v for k, v in expected.items() if k not in shared or k in tensors}
    _check_keys(path / ADAPTER_WEIGHTS, present, tensors)
    _copy_into(present, tensors)
    return model


def load_any_peft(base_model: nn.Module, path) -> nn.Module:
    """A directory holding only PEFT's adapter_config.json: LoRA, IA³ or VeRA by its peft_type."""
    if read_json(Path(path) / ADAPTER_CONFIG).get("peft_type") == "LORA":
        return load_lora_peft(base_model, path)
    return load_peft_format(base_model, path)


# ---------------------------------------------------------------------------------------------------
# Every method: safetensors + our JSON config
# ---------------------------------------------------------------------------------------------------
def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def save(model: nn.Module, path) -> Path:
    """Any method: peft_lab_config.json + adapter_model.safetensors (trainable tensors by parameter name).
    LoRA-family, IA³ and VeRA adapters are written in PEFT's format (adapter_config.json) so peft loads them."""
    path = Path(path)
    cfg = getattr(model, "peft_lab_config", None)
    if not cfg or "method" not in cfg:
        raise AdapterFileError("save: the model carries no adapter config; apply a method from labs.methods first")
    path.mkdir(parents=True, exist_ok=True)
    if cfg["method"] in LORA_METHODS and cfg.get("init") != "loftq":
        save_lora_peft(model, path)
    elif cfg["method"] in PEFT_FORMAT_MODULES:
        save_peft_format(model, path)
    else:
        write_adapter(path, trainable_state_dict(model))
    (path / LAB_CONFIG).write_text(json.dumps(cfg, indent=2, sort_keys=True, default=str))
    return path


def load(base_model: nn.Module, path, tokenizer=None) -> nn.Module:
    """Inverse of `save`: re-apply the method with the saved arguments, then load its tensors strictly."""
    from labs.methods import apply_method

    path = Path(path)
    if not (path / LAB_CONFIG).is_file() and (path / ADAPTER_CONFIG).is_file():
        return load_any_peft(base_model, path)             # an adapter saved by peft itself
    cfg = dict(read_json(path / LAB_CONFIG))
    method = cfg.pop("method", None)
    if method in LORA_METHODS and cfg.get("init") != "loftq":
        return load_lora_peft(base_model, path)
    if method in PEFT_FORMAT_MODULES:
        return load_peft_format(base_model, path)
    cfg.pop("targets", None)
    model = apply_method(base_model, method, **cfg, _loading=True)
    tensors = read_tensors(path / ADAPTER_WEIGHTS)
    expected = trainable_state_dict(model)
    _check_keys(path / ADAPTER_WEIGHTS, expected, tensors)
    _copy_into(expected, tensors)
    return model
