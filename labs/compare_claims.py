"""The seed notes' section-9 claims next to a measured comparison: which cells agree, which do not.

    column        claim (content/compare/claims.yaml)        measured (labs.compare)          agrees when
    trainable     a range of % of all parameters             trainable / total · 100          inside the range
    memory        "~X%" saving vs full FT                    1 − total bytes / full's         within ± tolerance
    inference     zero | tiny | present                      ms/token vs the base's 75th      zero: ≤ the base's q75;
                                                             percentile (its own spread)      present: above; tiny: either
    quality       a range of % of full FT's accuracy         accuracy / full's · 100          inside the range
    complexity    1..3 stars                                 lines-of-code tercile among      the same star count
                                                             the PEFT methods measured

Every threshold is computed from the claim or from the measurement itself (the base's own quartiles, the
terciles of the line counts); nothing here is a tuned constant. Explanations of disagreements are prose in
content/compare/explanations.yaml, keyed "method.column" (a column-wide fallback under "column").
"""
from __future__ import annotations

import functools
from pathlib import Path

import yaml

CONTENT = Path(__file__).resolve().parent.parent / "content" / "compare"
COLUMNS = ("trainable", "memory", "inference", "quality", "complexity")


@functools.lru_cache(maxsize=1)
def claims() -> dict:
    data = yaml.safe_load((CONTENT / "claims.yaml").read_text(encoding="utf-8"))
    methods = data["methods"]
    for name, c in methods.items():
        if "same_as" in c:
            methods[name] = {**methods[c["same_as"]], **{k: v for k, v in c.items() if k != "same_as"}}
    return data


@functools.lru_cache(maxsize=1)
def explanations() -> dict:
    return yaml.safe_load((CONTENT / "explanations.yaml").read_text(encoding="utf-8"))


def _range(value: float, lo_hi) -> str:
    lo, hi = lo_hi
    return "agrees" if lo <= value <= hi else ("higher" if value > hi else "lower")


def complexity_stars(rows: list[dict]) -> dict[str, int]:
    """1..3 by tercile of total lines (method + kernels) among the PEFT methods (full FT: 1, it adds no code).
    A method's position is the number of methods with strictly fewer lines, so equal counts share a star."""
    lines = {r["method"]: r["code_lines"]["method"] + r["code_lines"]["kernels"] for r in rows if r["method"] != "full"}
    out = {"full": 1}
    for m, n in lines.items():
        below = sum(1 for x in lines.values() if x < n)
        out[m] = 1 + (3 * below) // max(len(lines), 1)
    return out


def inference_class(row: dict, base: dict) -> str:
    """zero | present: is the method's median ms/token above the base's own 75th percentile?
    ("tiny" cannot be told apart from either on a shared machine, so a "tiny" claim agrees with both.)"""
    return "zero" if row["latency"]["ms_per_token"] <= base["ms_per_token_q75"] else "present"


def judge_row(row: dict, result: dict, stars: dict[str, int]) -> dict[str, str | None]:
    """{column: "agrees" | "higher" | "lower" | "differs" | None (no claim)} for one measured method."""
    data = claims()
    c = data["methods"].get(row["method"], {})
    out: dict[str, str | None] = {k: None for k in COLUMNS}
    if c.get("trainable_percent"):
        out["trainable"] = _range(row["trainable_percent"], c["trainable_percent"])
    if c.get("memory_saving") is not None:
        tol = data["saving_tolerance"]
        out["memory"] = _range(row["memory_saving_vs_full"], (c["memory_saving"] - tol, c["memory_saving"] + tol))
    if c.get("inference"):
        got = inference_class(row, result["base_latency"])
        ok = got == c["inference"] or c["inference"] == "tiny"
        out["inference"] = "agrees" if ok else ("higher" if got == "present" else "lower")
    if c.get("quality") and row.get("accuracy_vs_full") is not None:
        out["quality"] = _range(100 * row["accuracy_vs_full"], c["quality"])
    if c.get("complexity"):
        got = stars[row["method"]]
        out["complexity"] = "agrees" if got == c["complexity"] else ("higher" if got > c["complexity"] else "lower")
    return out


def judge(result: dict) -> dict[str, dict]:
    """{method: {column: verdict}} for a whole comparison result."""
    stars = complexity_stars(result["rows"])
    return {r["method"]: judge_row(r, result, stars) for r in result["rows"]}


def disagreements(result: dict) -> list[dict]:
    """Every cell whose verdict is not "agrees", with its explanation key (method.column or the column's)."""
    ex = explanations()
    out = []
    for method, cols in judge(result).items():
        for col, verdict in cols.items():
            if verdict in (None, "agrees"):
                continue
            key = f"{method}.{col}"
            text = ex.get("cells", {}).get(key) or ex.get("column", {}).get(col)
            out.append({"method": method, "column": col, "verdict": verdict, "key": key, "explanation": text})
    return out
