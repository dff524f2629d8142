"""One fine-tune, three ways: one process, DDP, or FSDP2 (``fully_shard``) over a torch.distributed group.

    build(method)                  the bundled base, full FT or our LoRA, seeded: identical on every rank
    wrap(model, strategy)          "ddp": DistributedDataParallel (replicas, all-reduce of the gradients)
                                   "fsdp": fully_shard each decoder layer, then the root (ZeRO-3: params, grads,
                                           optimizer state sharded; params all-gathered before use, freed after)
                                   "fsdp-keep": the same with reshard_after_forward=False (params stay gathered
                                           from forward to the end of backward: ZeRO-2's memory during the step)
    run_variant(spec, ...)         labs.train.train on this rank's rows of the global batch, measuring
                                   memory by category from the LOCAL shards and bytes per collective

``train_rank`` is what labs.dist.launch runs on every rank: the variants of one lab run, one after another,
in one process group (starting N processes costs more than a short run on a CPU).
"""
from __future__ import annotations

import copy
import functools

import torch

from labs.toolkit import median_step_seconds
from labs.train import Hooks, TrainConfig, tensor_bytes, train

STRATEGIES = ("single", "ddp", "fsdp", "fsdp-keep")
COUNTED_STEPS = 2          # collectives are counted on the first steps only: the counting mode costs time


def build(method: str, r: int, seed: int):
    """(model, tokenizer): the base with every weight trainable (``full``) or frozen + LoRA on all linears."""
    from labs.methods import lora

    base, tok = _base()
    model = copy.deepcopy(base)                      # a fresh copy per variant: loading from disk once is enough
    if method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
    else:
        torch.manual_seed(seed)                      # lora_A ~ kaiming(seed): the same on every rank
        lora.apply(model, r=r, lora_alpha=2 * r, target_modules="all-linear")
    return model, tok


@functools.lru_cache(maxsize=1)
def _base():
    from labs.base import load_base

    return load_base()


def decoder_layers(model) -> list[torch.nn.Module]:
    return list(model.model.layers)


def wrap(model, strategy: str, device: torch.device, counter):
    """The model as this rank trains it. FSDP: one all-gather unit per decoder layer, the rest (embeddings,
    final norm, the tied head) in the root unit; the root reshards after forward too, so a step is exactly
    all-gather, all-gather, reduce-scatter of everything (PyTorch's default keeps the root gathered)."""
    model.to(device)
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        ddp.register_comm_hook(None, counter.ddp_hook())
        return ddp
    from torch.distributed.fsdp import fully_shard

    keep = strategy == "fsdp-keep"
    for layer in decoder_layers(model):
        fully_shard(layer, reshard_after_forward=not keep)
    fully_shard(model, reshard_after_forward=not keep)
    return model


def run_variant(spec: dict, strategy: str, method: str, rank: int, world_size: int, emit, should_stop=None) -> dict:
    """Train one (strategy, method) and return its losses, memory, communication and step times."""
    from labs.device import pick_device
    from labs.dist import CommCounter
    from labs.tasks import get_task

    device = pick_device(spec["device"] if world_size == 1 or spec["device"] == "cpu" else f"cuda:{rank}")
    model, tok = build(method, spec["r"], spec["seed"])
    counter = CommCounter()
    core = model
    if strategy != "single":
        model = wrap(model, strategy, device, counter)
    held = []                                        # parameter bytes held from forward to backward

    def after_forward(_module, _args, _output):
        if core.training:
            held.append(tensor_bytes(core.parameters()))

    core.register_forward_hook(after_forward)
    local = {}

    def after_step(step: int) -> None:               # parameters only: the step event's param_bytes adds buffers
        local["params"] = tensor_bytes(core.parameters())

    class Counting:                                  # a context around one optimizer step
        def __init__(self, step):
            self.on = step <= COUNTED_STEPS and strategy != "single"
            self.mode = counter.mode() if self.on and strategy.startswith("fsdp") else None

        def __enter__(self):
            counter.active = self.on
            if self.mode:
                self.mode.__enter__()

        def __exit__(self, *exc):
            if self.mode:
                self.mode.__exit__(*exc)
            counter.active = False

    series = f"{'1 process' if strategy == 'single' else f'{strategy} x{world_size}'} · {method}"
    cfg = TrainConfig(steps=spec["steps"], batch_size=spec["batch_size"], lr=spec["lr"], seed=spec["seed"],
                      warmup=max(1, spec["steps"] // 10), evaluate=False, bf16=False, device=str(device),
                      eval_every=10**9, rank=rank, world_size=world_size)
    res = train(model, tok, get_task(spec["task"]), cfg, hooks=Hooks(after_step=after_step,
                step_context=Counting), on_event=lambda e: emit({**e, "series": series}), should_stop=should_stop)
    last = res["history"][-1]                          # grads and optimizer states as the loop counted them
    return {"strategy": strategy, "method": method, "series": series, "rank": rank,
            "losses": [h["loss"] for h in res["history"]],
            "memory": {"weights": local["params"], "gradients": last["grad_bytes"], "optimizer": last["optimizer_bytes"]},
            "held_forward_to_backward": max(held) if held else None,
            "comm": {k: v / COUNTED_STEPS for k, v in counter.bytes.items()},
            "comm_calls": {k: v / COUNTED_STEPS for k, v in counter.calls.items()},
            "seconds_per_step": median_step_seconds(res["history"], skip=range(COUNTED_STEPS)),  # uncounted steps
            "trainable_params": res["trainable_params"], "total_params": res["total_params"],
            "shards": _shard_rows(core) if strategy.startswith("fsdp") else None}


def _shard_rows(model) -> dict:
    """Padding: FSDP2 splits dim 0 of every parameter into N chunks of ceil(rows / N) rows (the last rank's may be
    shorter) and pads the all-gather buffer to N equal chunks. So rank 0 holds ceil(rows / N) rows of every tensor,
    more than 1/N when rows do not divide — most visible on LoRA's lora_A, which has only r rows. Returns the
    unpadded and padded (N x ceil) bytes of all and of the trainable parameters, and rank 0's shard bytes."""
    out = {k: 0 for k in ("unpadded_bytes", "padded_bytes", "trainable_unpadded_bytes", "trainable_padded_bytes",
                          "rank0_bytes", "rank0_trainable_bytes")}
    for p in model.parameters():
        if hasattr(p, "to_local"):
            rows, n = p.shape[0], p.device_mesh.size()
            per_row = p.element_size() * (p.numel() // max(rows, 1))
            for prefix, counts in (("", True), ("trainable_", p.requires_grad)):
                if counts:
                    out[f"{prefix}unpadded_bytes"] += rows * per_row
                    out[f"{prefix}padded_bytes"] += -(-rows // n) * n * per_row
            out["rank0_bytes"] += -(-rows // n) * per_row
            out["rank0_trainable_bytes"] += -(-rows // n) * per_row if p.requires_grad else 0
    out["padding_bytes"] = out["padded_bytes"] - out["unpadded_bytes"]
    return out


def train_rank(rank: int, world_size: int, spec: dict, emit) -> list[dict]:
    """labs.dist target: every (strategy, method) in ``spec["variants"]``, in order, on this rank."""
    return [run_variant(spec, strategy, method, rank, world_size, emit) for strategy, method in spec["variants"]]
