"""One training loop for every lab. It emits events; the CLI prints them, the app plots them.

    for step in 1..steps:
        for micro in 1..grad_accum:   loss = task_loss(model(batch)) [+ hooks.extra_loss] ; backward
        hooks.after_backward(step)    # e.g. AdaLoRA's importance update and rank masking
        clip, optimizer.step, scheduler.step
        emit {"type": "step", ...}; every eval_every: emit {"type": "eval", ...}

Events (plain dicts, JSON-able): ``start`` (device, params, bytes), ``step`` (loss, lr, tokens/s,
elapsed, eta, memory by category), ``eval`` (eval_loss, eval_accuracy), ``end`` (the result).
``should_stop()`` is polled every micro-step: a cancel lands within one step.
Data parallel (DDP / FSDP, ``labs.experiments.fsdp``): with ``world_size > 1`` each rank trains on its rows of
the same global batch (``shard_batch``); the model passed in is already wrapped.
"""
from __future__ import annotations

import contextlib
import math
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch

from labs.device import pick_device
from labs.tasks import Task, answer_metrics, encode, evaluate


class Cancelled(Exception):
    """Raised inside the loop when ``should_stop()`` turns true."""


@dataclass
class TrainConfig:
    steps: int = 120
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup: int = 10
    max_grad_norm: float = 1.0
    eval_every: int = 40
    eval_limit: int | None = None
    seed: int = 0
    device: str | None = None
    bf16: bool = True          # bf16 autocast, on CUDA only
    optimizer: str = "adamw"   # adamw | sgd | galore (labs.methods.galore; its param_groups carry rank, gap, scale)
    evaluate: bool = True      # False: no eval passes (a systems lab that only needs the loss curve)
    rank: int = 0              # data parallel: this process's rank ...
    world_size: int = 1        # ... of world_size; each takes its contiguous slice of the same global batch


@dataclass
class Hooks:
    """Method-specific additions to the loop; every field optional."""
    extra_loss: Callable[[Any], torch.Tensor] | None = None      # model -> scalar added to the loss
    after_backward: Callable[[int], None] | None = None          # step -> None (grads are present)
    after_step: Callable[[int], dict | None] | None = None       # step -> extra fields for the step event
    forward: Callable[[dict], torch.Tensor] | None = None        # batch -> logits (soft prompts)
    step_context: Callable[[int], Any] | None = None             # step -> context manager around one optimizer
                                                                 # step (forward, backward, clip, update)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def tensor_bytes(tensors) -> int:
    """Bytes this process holds: a sharded DTensor (FSDP2) counts its local shard only."""
    return sum(_local(t).numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if hasattr(t, "to_local") else t


def memory_by_category(model, opt) -> dict[str, int]:
    """Bytes held by parameters (frozen and trainable), gradients and optimizer states."""
    params = list(model.parameters())
    buffers = list(model.buffers())
    state = [v for s in opt.state.values() for v in s.values()] if opt is not None else []
    return {"param_bytes": tensor_bytes(params) + tensor_bytes(buffers),
            "trainable_param_bytes": tensor_bytes(p for p in params if p.requires_grad),
            "grad_bytes": tensor_bytes(p.grad for p in params if p.grad is not None),
            "optimizer_bytes": tensor_bytes(state)}


def shard_batch(batch: dict, rank: int, world_size: int) -> tuple[dict, torch.Tensor | None]:
    """(this rank's contiguous rows of a global batch, loss denominator) for data parallelism; (batch, None)
    in one process. Denominator = global answer tokens / world_size (a gradient AVERAGE over ranks follows)."""
    if world_size == 1:
        return batch, None
    rows = batch["input_ids"].shape[0]
    if rows % world_size:
        raise ValueError(f"batch_size = {rows} is not divisible by world_size = {world_size}: allowed a multiple "
                         f"of {world_size}")
    per = rows // world_size
    tokens = (batch["labels"][:, 1:] != -100).sum()          # the same count answer_metrics uses, all rows
    return {k: v[rank * per:(rank + 1) * per] for k, v in batch.items()}, tokens / world_size


def make_optimizer(model, cfg: TrainConfig, param_groups=None):
    groups = param_groups or [{"params": [p for p in model.parameters() if p.requires_grad]}]
    if not any(p.requires_grad for g in groups for p in g["params"]):
        raise ValueError("nothing to train: every parameter is frozen")
    if cfg.optimizer == "galore":
        from labs.methods.galore import GaLoreAdamW

        return GaLoreAdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def train(model, tok, task: Task, cfg: TrainConfig, param_groups=None, on_event=None,
          should_stop=None, hooks: Hooks | None = None) -> dict:
    """Fine-tune ``model`` on ``task``; returns the result dict (also sent as the ``end`` event)."""
    emit = on_event or (lambda e: None)
    stop = should_stop or (lambda: False)
    hooks = hooks or Hooks()
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    model.to(device)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" and cfg.bf16
                else contextlib.nullcontext())
    opt = make_optimizer(model, cfg, param_groups)
    base_lrs = [g["lr"] for g in opt.param_groups]
    from labs.methods import trainable_report  # counts a 4-bit weight's logical parameters, as peft does

    report = trainable_report(model)
    trainable, total = report["trainable"], report["total"]

    def run_eval(choices: bool = False) -> dict:
        if not cfg.evaluate:
            return {}
        with autocast:
            return evaluate(model, tok, task, limit=cfg.eval_limit, forward=hooks.forward, choices=choices)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    base = run_eval(choices=True)
    emit({"type": "start", "device": str(device), "steps": cfg.steps, "trainable_params": trainable,
          "total_params": total, "config": asdict(cfg), **memory_by_category(model, opt)})
    if cfg.evaluate:
        emit({"type": "eval", "step": 0, **base})
    rng = random.Random(cfg.seed)
    order: list[int] = []
    history, evals = [], [{"step": 0, **base}]
    tokens, t_train = 0, time.perf_counter()
    model.train()
    for step in range(1, cfg.steps + 1):
        scale = min(1.0, step / max(cfg.warmup, 1)) * 0.5 * (1 + math.cos(math.pi * (step - 1) / cfg.steps))
        for g, lr in zip(opt.param_groups, base_lrs):
            g["lr"] = lr * scale
        loss_total = 0.0
        with hooks.step_context(step) if hooks.step_context else contextlib.nullcontext():
            for _ in range(cfg.grad_accum):
                if stop():
                    raise Cancelled(f"cancelled at step {step}")
                if len(order) < cfg.batch_size:
                    order.extend(rng.sample(range(len(task.train)), len(task.train)))
                batch = encode(tok, [task.train[order.pop()] for _ in range(cfg.batch_size)], device)
                # data parallel: every rank draws the same global batch and keeps its rows; the loss is divided by
                # the GLOBAL answer-token count times world_size, so the gradient average that DDP/FSDP take
                # equals the single-process gradient of the whole batch
                batch, denom = shard_batch(batch, cfg.rank, cfg.world_size)
                with autocast:
                    logits = (hooks.forward(batch) if hooks.forward else
                              model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits)
                    nll, count, _ = answer_metrics(logits, batch["labels"])
                    loss = nll.sum() / (denom if denom is not None else count.sum())
                    if hooks.extra_loss is not None:
                        loss = loss + hooks.extra_loss(model)
                (loss / cfg.grad_accum).backward()
                loss_total += loss.item() / cfg.grad_accum
                tokens += int(batch["attention_mask"].sum())
            if hooks.after_backward is not None:
                hooks.after_backward(step)
            if cfg.max_grad_norm:
                params = [p for g in opt.param_groups for p in g["params"]]
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)   # FSDP2: a DTensor norm over shards
            opt.step()
        mem = memory_by_category(model, opt)  # grads not yet cleared, states allocated: the step's peak
        extra = hooks.after_step(step) if hooks.after_step is not None else None
        opt.zero_grad(set_to_none=True)
        elapsed = time.perf_counter() - t_train
        event = {"type": "step", "step": step, "loss": loss_total, "lr": opt.param_groups[0]["lr"],
                 "elapsed": elapsed, "eta": elapsed / step * (cfg.steps - step),
                 "tokens_per_s": tokens / max(elapsed, 1e-9), **mem}
        if device.type == "cuda":
            event["peak_cuda_bytes"] = torch.cuda.max_memory_allocated(device)
        if extra:
            event.update(extra)
        history.append({k: v for k, v in event.items() if k != "type"})
        emit(event)
        if cfg.evaluate and (step % cfg.eval_every == 0 or step == cfg.steps):
            ev = run_eval(choices=step == cfg.steps)
            model.train()
            evals.append({"step": step, **ev})
            emit({"type": "eval", "step": step, **ev})
    model.eval()
    seconds = time.perf_counter() - t0
    result = {"device": str(device), "seconds": seconds, "train_seconds": time.perf_counter() - t_train,
              "seconds_per_step": (time.perf_counter() - t_train) / cfg.steps,
              "trainable_params": trainable, "total_params": total, "base": base, "final": evals[-1],
              "tokens_per_s": tokens / max(time.perf_counter() - t_train, 1e-9),
              "memory": history[-1] and {k: history[-1][k] for k in
                                          ("param_bytes", "trainable_param_bytes", "grad_bytes", "optimizer_bytes")},
              "history": history, "evals": evals}
    if device.type == "cuda":
        result["peak_cuda_bytes"] = torch.cuda.max_memory_allocated(device)
    emit({"type": "end", **{k: v for k, v in result.items() if k not in ("history", "evals")}})
    return result
