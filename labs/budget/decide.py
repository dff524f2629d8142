"""The decision guide's rules: answers in, a method with reasons out, checked against the calculator.

    answers: gpu_gb, model, task (chat | nlu | domain), n_tasks (1 | few | many), latency (bool),
             data (small | medium | large), best_quality (bool)

The rule order mirrors the usual reasoning: first what fits, then how it will be served, then quality.
Each reason is a key into content/budget/guide.yaml (zh + en).
"""
from __future__ import annotations

from labs.budget import estimate
from labs.budget.presets import BudgetError

TASKS = ("chat", "nlu", "domain")
N_TASKS = ("1", "few", "many")
DATA = ("small", "medium", "large")


def _fits(model: str, method: str, gpu_gb: float, **kw) -> tuple[bool, dict]:
    r = estimate(model, method, **kw)
    return r["memory_bytes"]["total"] <= gpu_gb * 1e9, r


def recommend(gpu_gb: float, model: str, task: str = "chat", n_tasks: str = "1", latency: bool = False,
              data: str = "medium", best_quality: bool = False) -> dict:
    """``{"method", "settings", "reasons": [keys], "estimate": dict, "alternatives": {...}}``."""
    if task not in TASKS:
        raise BudgetError("task", f"task = {task!r} is not allowed: allowed {', '.join(TASKS)}")
    if n_tasks not in N_TASKS:
        raise BudgetError("n_tasks", f"n_tasks = {n_tasks!r} is not allowed: allowed {', '.join(N_TASKS)}")
    if data not in DATA:
        raise BudgetError("data", f"data = {data!r} is not allowed: allowed {', '.join(DATA)}")
    if not isinstance(gpu_gb, (int, float)) or gpu_gb <= 0:
        raise BudgetError("gpu_gb", f"gpu_gb = {gpu_gb!r} is not allowed: allowed a positive number of GB")
    reasons: list[str] = []
    settings = {"rank": 16, "targets": "all-linear"}
    full_ok, _ = _fits(model, "full", gpu_gb)
    lora_ok, _ = _fits(model, "lora", gpu_gb)
    qlora_ok, _ = _fits(model, "qlora", gpu_gb)
    huge = estimate(model, "full")["total_params"] >= 1e11

    if full_ok and best_quality and data == "large" and n_tasks == "1":
        method = "full"
        reasons += ["full_fits", "full_large_data"]
    elif huge and task == "nlu" and not lora_ok:
        method = "prompt"
        reasons += ["prompt_huge"]
    elif not lora_ok:
        method = "qlora"
        reasons += ["qlora_memory" if qlora_ok else "nothing_fits"]
    elif best_quality:
        method = "dora"
        settings = {"rank": 64, "targets": "all-linear"}
        reasons += ["dora_quality"]
    elif task == "nlu":
        method = "lora"
        reasons += ["nlu_lora"]
    else:
        method = "lora"
        reasons += ["lora_default"]
    if latency and method in ("lora", "qlora", "dora"):
        reasons.append("merge_zero_latency")
    if n_tasks == "many":
        reasons.append("many_adapters")
    if data == "small" and method != "full":
        reasons.append("small_data")
    if method == "dora" and not _fits(model, "dora", gpu_gb, rank=64)[0]:
        method, settings = "lora", {"rank": 16, "targets": "all-linear"}
        reasons.append("dora_too_big")
    est = estimate(model, method, **settings) if method not in ("prompt",) else estimate(model, method)
    alternatives = {m: estimate(model, m)["memory_bytes"]["total"] for m in ("full", "lora", "qlora", "dora")}
    return {"method": method, "settings": settings, "reasons": reasons, "estimate": est,
            "fits": est["memory_bytes"]["total"] <= gpu_gb * 1e9, "alternatives": alternatives}
