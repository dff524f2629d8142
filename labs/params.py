"""Lab parameters: one spec per field, one validator, messages that name the field and its range.

Every lab, the CLI and the app validate through here, so a bad value gets the same message
everywhere: ``lora.r = 0 is out of range: allowed 1..128 (integer)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


class ParamError(ValueError):
    """A field failed validation. ``.field`` is its name; str(err) says value and allowed range."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Param:
    name: str
    kind: str                      # "int" | "float" | "choice" | "bool" | "str"
    default: Any
    lo: float | None = None
    hi: float | None = None
    choices: tuple = ()
    help: str = ""
    log: bool = False              # hint for sliders: log scale (learning rates)
    gpu_hi: float | None = None    # a larger upper bound allowed on a GPU

    def allowed(self, on_gpu: bool = False) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(map(str, self.choices))
        if self.kind == "bool":
            return "true or false"
        if self.kind == "str":
            return "a string"
        hi = self.gpu_hi if (on_gpu and self.gpu_hi is not None) else self.hi
        word = "integer" if self.kind == "int" else "number"
        return f"{_fmt(self.lo)}..{_fmt(hi)} ({word})"

    def check(self, value: Any, on_gpu: bool = False) -> Any:
        """Coerce ``value`` (may be a string from a CLI or query string) and range-check it."""
        bad = lambda why="": ParamError(  # noqa: E731
            self.name, f"{self.name} = {value!r} {why or 'is not allowed'}: allowed {self.allowed(on_gpu)}")
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
                return value.lower() in ("true", "1", "yes")
            raise bad("is not a boolean")
        if self.kind == "str":
            if not isinstance(value, str) or not value.strip():
                raise bad("is empty")
            return value
        if self.kind == "choice":
            for c in self.choices:
                if value == c or (isinstance(value, str) and value == str(c)):
                    return c
            raise bad("is not a known choice")
        if isinstance(value, bool):
            raise bad("is a boolean, not a number")
        try:
            num = float(value)
        except (TypeError, ValueError):
            raise bad("is not a number") from None
        if not math.isfinite(num):
            raise bad("is not finite")
        if self.kind == "int":
            if num != int(num):
                raise bad("is not an integer")
            num = int(num)
        hi = self.gpu_hi if (on_gpu and self.gpu_hi is not None) else self.hi
        if (self.lo is not None and num < self.lo) or (hi is not None and num > hi):
            raise bad("is out of range")
        return num


def _fmt(x: float | None) -> str:
    if x is None:
        return "∞"
    return str(int(x)) if float(x).is_integer() and abs(x) >= 1 else f"{x:g}"


def validate(params: list[Param], values: dict | None, on_gpu: bool = False) -> dict:
    """Return a full, coerced value dict (defaults filled in). Unknown keys are an error too."""
    values = dict(values or {})
    known = {p.name for p in params}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ParamError(unknown[0], f"unknown parameter {unknown[0]!r}: allowed {', '.join(sorted(known))}")
    return {p.name: p.check(values.get(p.name, p.default), on_gpu) for p in params}


def defaults(params: list[Param]) -> dict:
    return {p.name: p.default for p in params}
