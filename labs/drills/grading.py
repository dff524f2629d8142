"""Grading: cases built from our references, compared with what the sandbox returned, explained.

A drill's grader (labs/drills/graders/) returns `Case`s: the call to make (function name, arguments),
the value OUR reference computed for it (never sent to the sandbox), and the plausible wrong answers
(`Mistake`: the value a common mistake would produce, with the hint to show when the submission matches
it). `grade` compares and writes the message a learner needs: what was called, expected vs got, the
largest error and where the first mismatch is, and the hint.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from labs.drills.child import Opaque

TOL = {torch.float32: (1e-4, 1e-4), torch.float64: (1e-8, 1e-8), torch.bfloat16: (3e-2, 3e-2),
       torch.float16: (5e-3, 5e-3)}          # (atol relative to max|expected|, rtol) per dtype


@dataclass
class Mistake:
    en: str
    zh: str
    expected: Any = None                                 # what the mistaken code returns (outputs/grads)
    grads: dict | None = None                            # ... or its gradients, for detach-type mistakes


@dataclass
class Raises:
    """The reference raises for this input: the submission must raise the same exception type."""
    exc: type


@dataclass
class Case:
    name: str
    fn: str
    args: list
    expected: Any
    params: tuple = ()                                   # the function's parameter names, for messages
    kwargs: dict = field(default_factory=dict)
    grad: dict | None = None                             # {"wrt": [positions], "dy": tensor, "expected": {pos: t}}
    mistakes: list = field(default_factory=list)
    check: Callable | None = None                        # custom (got, case, lang) -> message | None
    exact: bool = False                                  # integers / codes: no tolerance
    tol: tuple | None = None
    repeat: int = 1                                      # > 1: a performance case, timed (best of)
    timer: Callable | None = None                        # our reference on the same input, for that timing

    def wire(self) -> dict:
        w = {"fn": self.fn, "args": self.args, "kwargs": self.kwargs, "repeat": self.repeat}
        if self.grad:
            w["grad"] = {"wrt": self.grad["wrt"], "dy": self.grad["dy"]}
        return w


@dataclass
class TestResult:
    name: str
    passed: bool
    message: str
    seconds: float | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "passed": self.passed, "message": self.message}


def L(lang: str, en: str, zh: str) -> str:
    return zh if lang == "zh" else en


# ---------------------------------------------------------------------------------------------
# Describing a call
# ---------------------------------------------------------------------------------------------
def _short(v) -> str:
    if isinstance(v, torch.Tensor):
        return f"{tuple(v.shape)} {str(v.dtype).replace('torch.', '')}"
    if isinstance(v, (list, tuple)) and len(v) > 6:
        return f"[{len(v)} items]"
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, dict) and len(str(v)) > 80:
        return "{" + ", ".join(f"{k}: {_short(x)}" for k, x in list(v.items())[:8]) + (", …}" if len(v) > 8 else "}")
    return repr(v)


def describe(case: Case) -> str:
    parts = []
    for i, a in enumerate(case.args):
        name = case.params[i] if i < len(case.params) else f"arg{i}"
        parts.append(f"{name}={_short(a)}")
    parts += [f"{k}={_short(v)}" for k, v in case.kwargs.items()]
    return f"{case.fn}({', '.join(parts)})"


# ---------------------------------------------------------------------------------------------
# Comparing
# ---------------------------------------------------------------------------------------------
def _index(flat: int, shape) -> tuple:
    idx = []
    for s in reversed(shape):
        idx.append(flat % s if s else 0)
        flat //= s if s else 1
    return tuple(reversed(idx))


def compare_tensor(got, exp: torch.Tensor, lang: str, tol: tuple | None = None, exact: bool = False,
                   what: str = "") -> str | None:
    """None when `got` matches `exp`; else the message (type, shape, dtype, or values)."""
    pre = f"{what}: " if what else ""
    if not isinstance(got, torch.Tensor):
        return pre + L(lang, f"expected a torch.Tensor {tuple(exp.shape)} {exp.dtype}, got {_type(got)}",
                       f"应返回 torch.Tensor {tuple(exp.shape)} {exp.dtype}，实际是 {_type(got)}")
    if tuple(got.shape) != tuple(exp.shape):
        return pre + L(lang, f"shape: expected {tuple(exp.shape)}, got {tuple(got.shape)}",
                       f"形状：应为 {tuple(exp.shape)}，实际 {tuple(got.shape)}")
    if got.dtype != exp.dtype:
        return pre + L(lang, f"dtype: expected {exp.dtype}, got {got.dtype}", f"dtype：应为 {exp.dtype}，实际 {got.dtype}")
    if exp.numel() == 0:
        return None
    g, e = got.double(), exp.double()
    bad_nan = torch.isnan(g) != torch.isnan(e)
    if exact or not exp.is_floating_point():
        bad = (g != e) | bad_nan
        atol = rtol = 0.0
    else:
        a, rtol = tol or TOL.get(exp.dtype, (1e-4, 1e-4))
        atol = a * max(1.0, float(e.abs().max()))
        diff = (g - e).abs()
        bad = (diff > atol + rtol * e.abs()) | bad_nan | (torch.isinf(g) != torch.isinf(e))
    if not bool(bad.any()):
        return None
    diff = (g - e).abs().nan_to_num(nan=float("inf"))
    first = int(bad.reshape(-1).nonzero()[0, 0])
    at = _index(first, exp.shape)
    n_bad, n = int(bad.sum()), exp.numel()
    tol_txt = "" if exact or not exp.is_floating_point() else f" (atol {atol:.1e}, rtol {rtol:.0e})"
    return pre + L(lang,
                   f"values: max abs error {float(diff.max()):.3g}; first mismatch at index {at}: expected "
                   f"{float(e.reshape(-1)[first]):.6g}, got {float(g.reshape(-1)[first]):.6g}; {n_bad}/{n} "
                   f"elements off{tol_txt}",
                   f"数值：最大绝对误差 {float(diff.max()):.3g}；第一个不一致的位置 {at}：应为 "
                   f"{float(e.reshape(-1)[first]):.6g}，实际 {float(g.reshape(-1)[first]):.6g}；{n_bad}/{n} 个元素不符"
                   f"{tol_txt}")


def _type(v) -> str:
    if isinstance(v, Opaque):
        return v.type_name
    if isinstance(v, torch.Tensor):
        return f"Tensor {tuple(v.shape)} {v.dtype}"
    return type(v).__name__ + (f" {v!r}"[:60] if isinstance(v, (int, float, str, bool)) or v is None else "")


def compare(got, exp, lang: str, tol=None, exact=False, what: str = "") -> str | None:
    """Tensors, numbers, tuples/lists, dicts, recursively."""
    if isinstance(exp, torch.Tensor):
        return compare_tensor(got, exp, lang, tol, exact, what)
    pre = f"{what}: " if what else ""
    if isinstance(exp, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(exp):
            return pre + L(lang, f"expected a tuple of {len(exp)}, got {_type(got)}"
                           + (f" of {len(got)}" if isinstance(got, (tuple, list)) else ""),
                           f"应返回 {len(exp)} 个元素的 tuple，实际是 {_type(got)}")
        for i, (g, e) in enumerate(zip(got, exp)):
            m = compare(g, e, lang, tol, exact, f"{what}[{i}]" if what else f"[{i}]")
            if m:
                return m
        return None
    if isinstance(exp, dict):
        if not isinstance(got, dict):
            return pre + L(lang, f"expected a dict, got {_type(got)}", f"应返回 dict，实际是 {_type(got)}")
        missing = [k for k in exp if k not in got]
        extra = [k for k in got if k not in exp]
        if missing or extra:
            return pre + L(lang, f"keys: missing {missing[:5]}, unexpected {extra[:5]}",
                           f"键：缺少 {missing[:5]}，多出 {extra[:5]}")
        for k in exp:
            m = compare(got[k], exp[k], lang, tol, exact, f"{what}[{k!r}]" if what else f"[{k!r}]")
            if m:
                return m
        return None
    if isinstance(exp, bool) or exp is None or isinstance(exp, str):
        return None if got == exp and type(got) is type(exp) else pre + L(
            lang, f"expected {exp!r}, got {_type(got)}", f"应为 {exp!r}，实际 {_type(got)}")
    if isinstance(exp, (int, float)):
        ok = isinstance(got, (int, float)) and not isinstance(got, bool) or (
            isinstance(got, torch.Tensor) and got.numel() == 1)
        if ok:
            g = float(got)
            if (exact and g == exp) or (not exact and math.isclose(g, exp, rel_tol=1e-9, abs_tol=1e-9)):
                return None
        return pre + L(lang, f"expected {exp!r}, got {_type(got)}" + (
            f" (off by {float(got) - exp:+g}, ratio {float(got) / exp:.4g})" if ok and exp else ""),
            f"应为 {exp!r}，实际 {_type(got)}" + (f"（差 {float(got) - exp:+g}，比值 {float(got) / exp:.4g}）"
                                              if ok and exp else ""))
    raise TypeError(f"cannot compare against {type(exp).__name__}")


# ---------------------------------------------------------------------------------------------
# Grading one case
# ---------------------------------------------------------------------------------------------
def _hint(case: Case, got: Any, grads: dict | None, lang: str) -> str:
    for m in case.mistakes:
        if m.expected is not None and compare(got, m.expected, lang, case.tol, case.exact) is None:
            if m.grads is None or (grads is not None and all(
                    compare(grads.get(str(k)), v, lang, case.tol) is None for k, v in m.grads.items())):
                return L(lang, "\nHint: " + m.en, "\n提示：" + m.zh)
    return ""


def grade_case(case: Case, res: dict, lang: str, error_hints: Callable | None = None) -> TestResult:
    call = describe(case)
    if "error" in res:
        err = str(res["error"]).strip()
        if isinstance(case.expected, Raises):
            if err.splitlines() and err.splitlines()[-1].startswith(case.expected.exc.__name__):
                return TestResult(case.name, True, L(lang, f"raised {case.expected.exc.__name__} as expected",
                                                     f"按预期抛出 {case.expected.exc.__name__}"))
        hint = error_hints(err, lang) if error_hints else ""
        if "Resource temporarily unavailable" in err or "can't start new thread" in err:
            hint = L(lang, "Note: the sandbox allows a few processes/threads only; grading needs no fork().",
                     "注意：沙箱只允许少量进程/线程；评测不需要 fork()。")
        elif res.get("memory") or err.startswith("MemoryError"):
            hint = L(lang, "Note: the sandbox's memory limit was reached (about 1 GiB beyond what torch needs).",
                     "注意：触及沙箱的内存上限（torch 自身之外约 1 GiB）。")
        return TestResult(case.name, False, L(lang, f"called {call}\nit raised:\n{err}", f"调用 {call}\n抛出异常：\n{err}")
                          + (("\n" + hint) if hint else ""))
    got = res.get("out")
    if isinstance(case.expected, Raises):
        return TestResult(case.name, False, L(
            lang, f"called {call}\nexpected it to raise {case.expected.exc.__name__}, it returned {_type(got)}",
            f"调用 {call}\n应抛出 {case.expected.exc.__name__}，却返回了 {_type(got)}"))
    msg = case.check(got, case, lang) if case.check else compare(got, case.expected, lang, case.tol, case.exact)
    grads = res.get("grads")
    if msg is None and case.grad:
        if res.get("grad_error"):
            msg = L(lang, "backward: " + res["grad_error"], "反向：输出没有经过 autograd 依赖输入（没有 grad_fn）")
        else:
            for pos, exp in case.grad["expected"].items():
                name = case.params[pos] if isinstance(pos, int) and pos < len(case.params) else str(pos)
                g = (grads or {}).get(str(pos))
                m = compare(g, exp, lang, case.tol, what=f"d loss / d {name}") if g is not None else L(
                    lang, f"d loss / d {name}: no gradient reached it", f"d loss / d {name}：梯度没有传到它")
                if m:
                    msg = L(lang, "backward (loss = sum(y · dy)) ", "反向（loss = sum(y · dy)）") + m
                    break
    if msg is None:
        return TestResult(case.name, True, "ok", res.get("seconds"))
    return TestResult(case.name, False, L(lang, f"called {call}\n", f"调用 {call}\n") + msg
                      + _hint(case, got, grads, lang), res.get("seconds"))
