"""Lab `fsdp`: the same fine-tune in one process, with DDP, and sharded by FSDP2 over N ranks — checked.

    1 process     the reference loss curve (fp32, the whole global batch)
    DDP  x N      replicas; gradients all-reduced                                   ZeRO-0: 2Ψ per step
    FSDP x N      fully_shard per decoder layer + root: params, grads, AdamW state   ZeRO-3: 3Ψ per step
                  sharded; every weight all-gathered for forward and again for backward
    FSDP keep     reshard_after_forward=False: gathered once, kept until backward    ZeRO-2 during the step: 2Ψ

for full fine-tuning and for our LoRA (frozen weights sharded and gathered too, only adapters reduced). Every
rank gets its rows of the same global batch, so the sharded loss curves must equal the single-process one. Each
rank's memory is counted from its LOCAL shards and each collective's bytes as it is issued
(labs.dist.CommCounter), next to labs.budget.estimate(..., gpus=N, zero=K) for the same model. On a CPU the ranks
are processes on the same cores talking through gloo; on a multi-GPU machine one rank per GPU over NCCL.
"""
from __future__ import annotations

import time

import torch

from labs.experiments import Context, Lab
from labs.params import Param, ParamError
from labs.tasks import TASKS

PARAMS = [
    Param("task", "choice", "topic", choices=tuple(TASKS), help="which fine-tuning task"),
    Param("methods", "choice", "full+lora", choices=("full+lora", "full", "lora"), help="full FT, our LoRA, both"),
    Param("world_size", "int", 0, lo=0, hi=4, gpu_hi=64,
          help="ranks: 0 = auto (2 CPU processes; every GPU of a multi-GPU machine)"),
    Param("steps", "int", 40, lo=3, hi=400, gpu_hi=5000, help="optimizer steps per run"),
    Param("batch_size", "int", 16, lo=2, hi=64, gpu_hi=512, help="global batch (split over the ranks)"),
    Param("lr", "float", 1e-3, lo=1e-6, hi=1e-1, log=True, help="peak learning rate (AdamW, cosine)"),
    Param("r", "int", 8, lo=1, hi=64, help="LoRA rank (all linear layers, alpha = 2r)"),
    Param("seed", "int", 0, lo=0, hi=2**31 - 1, help="random seed"),
]
TOLERANCE = 0.05       # every memory / communication figure within 5 % of the calculator
PADDING_MATCH = 0.005  # "explained by padding": within 0.5 % of the padding-aware figure (AdamW's step counters)
ZERO = {"fsdp": 3, "fsdp-keep": 2, "ddp": 0}


def world_size(asked: int, device: torch.device) -> int:
    """0 (auto): one rank per GPU on a multi-GPU machine, else 2 processes. 1 is not data parallel: refused."""
    if asked == 1:
        raise ParamError("world_size", "world_size = 1 is not data parallel: allowed 0 (auto) or 2 and more")
    if asked:
        return asked
    return torch.cuda.device_count() if device.type == "cuda" and torch.cuda.device_count() >= 2 else 2


def variants(methods: list[str]) -> list[tuple[str, str]]:
    out = [("fsdp", m) for m in methods]
    if "full" in methods:   # for LoRA, keep-gathered FSDP is not ZeRO-2: the frozen base is sharded at rest too
        out.append(("fsdp-keep", "full"))
    return out + [("ddp", m) for m in methods]


def predict(arch, method: str, r: int, world_size: int, zero: int) -> dict:
    from labs.budget import estimate

    return estimate(arch, "full" if method == "full" else "lora", rank=r, targets="all-linear", precision="fp32",
                    optimizer="adamw", gpus=world_size, zero=zero, batch=1, seq=16)


def _entry(what: str, measured: float, predicted: float, padded: float | None = None) -> dict:
    """One check. ``padded``: the same figure with FSDP2's dim-0 rounding (rank 0 holds ceil(rows / N) rows of
    every tensor; the all-gather buffer is N of those), computed from the parameter shapes. A figure off the
    calculator's Ψ/N by more than the tolerance but equal to it is ``explained_by_padding``."""
    err = abs(measured - predicted) / max(abs(predicted), 1)
    out = {"what": what, "measured": int(round(measured)), "predicted": int(round(predicted)), "rel_err": err,
           "ok": err <= TOLERANCE}
    if padded is not None and padded != predicted:
        out["padding_aware"] = int(round(padded))
        out["explained_by_padding"] = not out["ok"] and abs(measured - padded) <= PADDING_MATCH * padded
    return out


def _padded(v: dict) -> dict:
    """Padding-aware expectations for an FSDP variant (rank 0), from its shard shapes; {} for DDP."""
    sh = v.get("shards")
    if not sh:
        return {}
    gathers = 1 if v["strategy"] == "fsdp-keep" else 2
    grads = sh["rank0_trainable_bytes"]
    return {"weights": sh["unpadded_bytes"] if v["strategy"] == "fsdp-keep" else sh["rank0_bytes"],
            "gradients": grads, "optimizer": 2 * grads,                   # AdamW: exp_avg, exp_avg_sq like the grad
            "all_gather": gathers * sh["padded_bytes"], "reduce_scatter": sh["trainable_padded_bytes"],
            "all_reduce": 0, "total": gathers * sh["padded_bytes"] + sh["trainable_padded_bytes"]}


def checks(arch, p: dict, world_size: int, ranks: list[list[dict]]) -> tuple[list, list]:
    """memory_check and comm_check: rank 0's local bytes (the largest shard when rows split unevenly). Each entry
    also names its strategy, method, ZeRO stage and item (weights, gradients, optimizer, all_gather, ...)."""
    memory, comm = [], []
    for v in ranks[0]:
        zero = ZERO[v["strategy"]]
        est = predict(arch, v["method"], p["r"], world_size, zero)
        mem, com, pad = est["memory_bytes"], est["comm_bytes_per_step"], _padded(v)
        tag = f"{v['series']} (ZeRO-{zero})"

        def add(out: list, item: str, what: str, measured: float, predicted: float) -> None:
            out.append({**_entry(f"{tag}: {what}", measured, predicted, pad.get(item)), "item": item,
                        "strategy": v["strategy"], "method": v["method"], "zero": zero})

        weights = v["held_forward_to_backward"] if v["strategy"] == "fsdp-keep" else v["memory"]["weights"]
        add(memory, "weights", "weights per rank" + (" during the step" if zero == 2 else ""), weights,
            mem["weights"])
        add(memory, "gradients", "gradients per rank", v["memory"]["gradients"], mem["gradients"])
        add(memory, "optimizer", "optimizer state per rank", v["memory"]["optimizer"], mem["optimizer"])
        for kind in ("all_gather", "reduce_scatter", "all_reduce"):
            if com[kind] or v["comm"][kind]:
                add(comm, kind, f"{kind.replace('_', '-')} per step", v["comm"][kind], com[kind])
        add(comm, "total", "total per step", sum(v["comm"].values()), com["total"])
    return memory, comm


class _Merger:
    """Rank events → one step event per (series, step) once every rank sent it: mean loss, summed tokens/s,
    and the progress of the whole lab."""

    def __init__(self, emit, world_size: int, total_steps: int):
        self.emit, self.n, self.total, self.done, self.parts, self.t0 = emit, world_size, total_steps, 0, {}, \
            time.perf_counter()

    def step(self, event: dict) -> None:
        self.done += 1
        el = time.perf_counter() - self.t0
        self.emit({**event, "progress": self.done / self.total, "elapsed": el,
                   "eta": el / self.done * (self.total - self.done)})

    def __call__(self, rank: int, event: dict) -> None:
        if event.get("type") == "ranks":
            self.emit(event)
        if event.get("type") != "step":
            return
        key = (event["series"], event["step"])
        parts = self.parts.setdefault(key, [])
        parts.append(event)
        if len(parts) == self.n:
            del self.parts[key]
            self.step({**parts[0], "loss": sum(e["loss"] for e in parts) / self.n,
                       "tokens_per_s": sum(e.get("tokens_per_s", 0) for e in parts)})


def run(p: dict, ctx: Context) -> dict:
    from labs.base import model_dir
    from labs.budget import get_arch
    from labs.device import pick_device
    from labs.dist import backend_for, launch
    from labs.sharded import run_variant

    t0 = time.perf_counter()
    device = pick_device(ctx.device)
    ws = world_size(p["world_size"], device)
    n_gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    if device.type == "cuda" and ws > n_gpus:
        why = (f"allowed 2..{n_gpus} (one NCCL rank per GPU)" if n_gpus >= 2 else
               f"this machine has {n_gpus} GPU: run the lab on the CPU (device cpu) for gloo ranks")
        raise ParamError("world_size", f"world_size = {ws} needs one GPU per rank: {why}")
    if p["batch_size"] % ws:
        raise ParamError("batch_size", f"batch_size = {p['batch_size']} does not split over world_size = {ws}: "
                                       f"allowed a multiple of {ws}")
    methods = ["full", "lora"] if p["methods"] == "full+lora" else [p["methods"]]
    todo = variants(methods)
    spec = {**p, "device": device.type, "variants": todo}
    threads = torch.get_num_threads()
    rank_threads = max(1, threads // ws) if device.type == "cpu" else threads     # the cores, shared by the ranks
    merger = _Merger(ctx.emit, ws, p["steps"] * (len(methods) + len(todo)))
    ctx.emit({"type": "start", "steps": p["steps"], "world_size": ws, "device": str(device),
              "backend": backend_for(device.type)})
    ranks = launch("labs.sharded:train_rank", spec, ws, on_event=merger, should_stop=ctx.should_stop,
                   device=device.type, threads=rank_threads)
    single = {}        # the reference, after the ranks are done (on a GPU box: on GPU 0 alone)
    for m in methods:
        single[m] = run_variant(spec, "single", m, 0, 1, lambda e: e.get("type") == "step" and merger.step(e),
                                should_stop=ctx.should_stop)
    arch = get_arch(str(model_dir() / "config.json"))
    memory, comm = checks(arch, p, ws, ranks)
    runs, diffs = {}, {}
    for i, v in enumerate(ranks[0]):
        losses = [sum(r[i]["losses"][k] for r in ranks) / ws for k in range(p["steps"])]
        ref = single[v["method"]]["losses"]
        diffs[v["series"]] = max(abs(a - b) for a, b in zip(losses, ref))
        runs[v["series"]] = {"strategy": v["strategy"], "method": v["method"], "losses": losses,
                             "seconds_per_step": max(r[i]["seconds_per_step"] for r in ranks),
                             "memory_per_rank": [r[i]["memory"] for r in ranks], "comm": v["comm"],
                             "comm_calls": v["comm_calls"], "shards": v["shards"],
                             "held_forward_to_backward": v["held_forward_to_backward"]}
    for m, s in single.items():
        runs[s["series"]] = {"strategy": "single", "method": m, "losses": s["losses"],
                             "seconds_per_step": s["seconds_per_step"], "memory_per_rank": [s["memory"]]}
    every = memory + comm
    return {"task": p["task"], "device": str(device), "backend": backend_for(device.type), "world_size": ws,
            "torch_threads_per_rank": rank_threads,
            "trainable_params_by_method": {m: s["trainable_params"] for m, s in single.items()},
            "total_params": single[methods[0]]["total_params"],
            "max_loss_diff": max(diffs.values()), "loss_diff": diffs,
            "memory_check": memory, "comm_check": comm, "max_rel_err": max(e["rel_err"] for e in every),
            "all_within_tolerance": all(e["ok"] for e in every), "tolerance": TOLERANCE, "runs": runs,
            "off_only_by_padding": [e["what"] for e in every if e.get("explained_by_padding")],
            "seconds": time.perf_counter() - t0}


LAB = Lab("fsdp", PARAMS, run, quick={"steps": 10, "batch_size": 8},
          tiny={"methods": "full+lora", "steps": 3, "batch_size": 4, "world_size": 2, "r": 4})
