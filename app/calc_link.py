"""Calculator settings in the URL: ``/calculator?model=llama-65b&method=qlora&rank=64&offload=1``.

    parse(query)  -> (values, errors)   every known field validated; a bad one is dropped and named in errors
    url(inputs)   -> "calculator?..."   the link another page (the notes errata) uses; raises on a bad input

The field names are labs.budget.estimate's keyword arguments, so a link says exactly what the calculator
computes. Unknown keys (``lang``, ``run``) are left to their owners.
"""
from __future__ import annotations

from urllib.parse import urlencode

from labs.budget import GPUS, METHODS, OPTIMIZERS, PRECISIONS, PRESETS
from labs.budget.params import LINEAR_NAMES

PAGE = "calculator"
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
# field -> ("choice", options) | ("int", lo, hi) | ("float", lo, hi) | ("bool",) | ("targets",)
FIELDS: dict[str, tuple] = {
    "model": ("choice", tuple(PRESETS)),
    "method": ("choice", tuple(METHODS)),
    "rank": ("int", 1, 4096),
    "targets": ("targets",),
    "n_tokens": ("int", 1, 4096),
    "adapter_size": ("int", 1, 4096),
    "precision": ("choice", tuple(PRECISIONS)),
    "optimizer": ("choice", tuple(OPTIMIZERS)),
    "checkpointing": ("choice", ("full", "none")),
    "flash": ("bool",),
    "batch": ("int", 1, 4096),
    "seq": ("int", 1, 1 << 20),
    "gpus": ("int", 1, 4096),
    "zero": ("int", 0, 3),
    "offload": ("bool",),
    "nf4_blocksize": ("choice", (32, 64, 128, 256)),
    "double_quant": ("bool",),
    "mode": ("choice", ("train", "inference")),
    "gpu": ("choice", tuple(GPUS)),
    "mfu": ("float", 0.05, 0.8),
}


def _allowed(spec: tuple) -> str:
    kind = spec[0]
    if kind == "choice":
        return "one of " + ", ".join(map(str, spec[1]))
    if kind in ("int", "float"):
        return f"{'an integer' if kind == 'int' else 'a number'} {spec[1]}..{spec[2]}"
    if kind == "bool":
        return "1/0 (true/false)"
    return "all-linear or a comma list of " + ", ".join(LINEAR_NAMES)


def parse_field(name: str, raw: str):
    """One URL value -> the typed value; ValueError naming the field, the value and what is allowed."""
    spec = FIELDS[name]
    kind, text = spec[0], str(raw).strip()
    try:
        if kind == "choice":
            opts = spec[1]
            value = int(text) if isinstance(opts[0], int) else text
            ok = value in opts
        elif kind == "int":
            value = int(text)
            ok = spec[1] <= value <= spec[2]
        elif kind == "float":
            value = float(text)
            ok = spec[1] <= value <= spec[2]
        elif kind == "bool":
            ok = text.lower() in TRUE + FALSE
            value = text.lower() in TRUE
        else:
            parts = [p.strip() for p in text.split(",") if p.strip()]
            value = "all-linear" if text == "all-linear" else ",".join(parts)
            ok = text == "all-linear" or (bool(parts) and all(p in LINEAR_NAMES for p in parts))
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{name} = {raw!r} is not allowed: allowed {_allowed(spec)}")
    return value


def parse(query) -> tuple[dict, list[str]]:
    """Query parameters (any mapping of str -> str) -> (valid values by field, one message per bad field)."""
    values, errors = {}, []
    for name in FIELDS:
        if name in query:
            try:
                values[name] = parse_field(name, query[name])
            except ValueError as err:
                errors.append(str(err))
    return values, errors


def _text(v) -> str:
    return ("1" if v else "0") if isinstance(v, bool) else str(v)


def url(inputs: dict, **extra: str) -> str:
    """A relative link that opens the calculator with ``inputs`` filled in (validated here first)."""
    unknown = sorted(set(inputs) - set(FIELDS))
    if unknown:
        raise ValueError(f"calculator link: unknown field(s) {unknown}: allowed {', '.join(FIELDS)}")
    query = {k: _text(v) for k, v in inputs.items()}
    for k, v in query.items():
        parse_field(k, v)
    return f"{PAGE}?{urlencode({**query, **extra})}"
