"""Memory breakdown of one training step (or inference with a KV cache), per GPU, in bytes.

Model states, for Ψ trainable parameters (ZeRO paper's accounting, section 3.1):

    precision    weights  grads  optimizer (K)                          AdamW total
    fp32         4        4      states (AdamW: m, v = 8)                16 bytes/param
    bf16-mixed   2        2      fp32 master 4 + states (AdamW: 8) = 12  16 bytes/param
    bf16-true    2        2      states in bf16 (AdamW: 4)               8 bytes/param  <- the seed's table

    optimizer states per param: adamw 2 x fp32 · adamw-8bit 2 x (1 + 4/256) (bitsandbytes, blockwise
    absmax per 256) · sgd momentum 1 x fp32 · adafactor (rows + cols) per matrix, no first moment

ZeRO over N GPUs: stage 1 shards the optimizer (K/N), 2 also the grads, 3 (= FSDP full shard) also
the weights (PEFT: the frozen base too). CPU offload moves the optimizer states (and master) to host memory.
Communication per step: ``labs.budget.comm``. Both are checked against real FSDP2/DDP shards and collectives
by ``labs.experiments.fsdp`` (fp32).

Frozen weights (PEFT) are stored in the compute dtype (bf16 in both bf16 modes); QLoRA stores the
decoder linear weights as NF4 (4 bits) + quantization constants, embeddings/lm_head stay bf16.

Activations: see ``labs.budget.activations``. ``other`` = logits/loss buffers + a stated runtime
overhead (CUDA context + allocator fragmentation; not tensor memory, so not in the trace).
"""
from __future__ import annotations

import math

from labs.budget.activations import activation_terms, inference_transient, logits_bytes
from labs.budget.comm import comm_bytes
from labs.budget.methods import LORA_LIKE, trainable_params
from labs.budget.params import count_params, linear_bias, linear_shapes
from labs.budget.presets import ArchConfig, BudgetError

PRECISIONS = ("fp32", "bf16-mixed", "bf16-true")
OPTIMIZERS = ("adamw", "adamw-8bit", "paged-adamw-8bit", "sgd", "adafactor")
BNB_STATE_BLOCK = 256            # bitsandbytes blockwise 8-bit optimizer: one fp32 absmax per 256 values
CUDA_CONTEXT_BYTES = 500 * 2**20  # CUDA context + cuBLAS workspace: a stated assumption, ~0.5 GiB
ALLOCATOR_FRACTION = 0.05         # caching-allocator fragmentation: a stated assumption, 5% of tensors
GB = 1e9


def dtype_bytes(precision: str) -> dict[str, float]:
    """Bytes per element: compute/working weights, grads, frozen weights, master, optimizer state."""
    if precision not in PRECISIONS:
        raise BudgetError("precision", f"precision = {precision!r} is not allowed: allowed {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return {"compute": 4, "weight": 4, "grad": 4, "frozen": 4, "master": 0, "state": 4}
    if precision == "bf16-mixed":
        return {"compute": 2, "weight": 2, "grad": 2, "frozen": 2, "master": 4, "state": 4}
    return {"compute": 2, "weight": 2, "grad": 2, "frozen": 2, "master": 0, "state": 2}


def optimizer_state_bytes(optimizer: str, tensors: list[tuple[tuple[int, ...], int]], state: float) -> float:
    """Optimizer-state bytes for trainable tensors given as (shape, how many) pairs
    (``state`` = bytes of one 32- or 16-bit state element)."""
    if optimizer not in OPTIMIZERS:
        raise BudgetError("optimizer", f"optimizer = {optimizer!r} is not allowed: allowed {', '.join(OPTIMIZERS)}")
    n = sum(math.prod(s) * k for s, k in tensors)
    if optimizer == "adamw":
        return 2 * state * n
    if optimizer in ("adamw-8bit", "paged-adamw-8bit"):
        blocks = sum(math.ceil(math.prod(s) / BNB_STATE_BLOCK) * k for s, k in tensors)
        return 2 * (n + 4 * blocks)
    if optimizer == "sgd":
        return state * n
    # adafactor: factored second moment (row + column means) for matrices, full for vectors
    return state * sum(((s[0] + s[1]) if len(s) == 2 and min(s) > 1 else math.prod(s)) * k for s, k in tensors)


def trainable_tensors(c: ArchConfig, method: str, info: dict, kw: dict) -> list[tuple[tuple[int, ...], int]]:
    """(shape, count) of the trainable tensors: what the optimizer allocates states for."""
    h, L = c.hidden_size, c.n_layers
    if method == "full":
        bias = linear_bias(c)
        out = [((c.vocab_size, h), 1 if c.tied else 2), ((h,), 1 + 2 * L)]
        for name, (o, i) in linear_shapes(c).items():
            out += [((o, i), L)] + ([((o,), L)] if bias[name] else [])
        return out
    if method in LORA_LIKE:
        r, out = kw["rank"], []
        for t in info["targets"]:
            o, i = linear_shapes(c)[t]
            out += [((r, i), L), ((o, r), L)] + ([((o,), L)] if method == "dora" else []) \
                + ([((r, 1), L)] if method == "adalora" else [])
        return out
    # prompt / prefix / houlsby / llama-adapter: one block of parameters each (shape only matters to Adafactor)
    return [((info["trainable"],), 1)]


def quant_constant_bytes(n_quantized: int, blocksize: int, double_quant: bool) -> float:
    """NF4 absmax bytes of ONE tensor: fp32 per block, or (double quant) 8-bit per block + fp32 per 256
    blocks + one fp32 offset (the mean subtracted before the second quantization)."""
    blocks = math.ceil(n_quantized / blocksize)
    if not double_quant:
        return 4 * blocks
    return blocks + 4 * math.ceil(blocks / 256) + 4


def breakdown(c: ArchConfig, method: str = "lora", rank: int = 16, targets="all-linear", precision="bf16-mixed",
              optimizer="adamw", checkpointing="full", flash=True, batch=1, seq=512, gpus=1, zero=0,
              offload=False, nf4_blocksize=64, double_quant=True, mode="train", **method_kw) -> dict:
    """The whole estimate: ``memory_bytes`` (per GPU) plus counts and the formulas used."""
    for name, v, lo, hi in (("batch", batch, 1, 1 << 16), ("seq", seq, 1, 1 << 22), ("gpus", gpus, 1, 1 << 16),
                            ("zero", zero, 0, 3)):
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise BudgetError(name, f"{name} = {v!r} is not allowed: allowed an integer {lo}..{hi}")
    if checkpointing not in ("none", "full"):
        raise BudgetError("checkpointing", f"checkpointing = {checkpointing!r} is not allowed: allowed none, full")
    if mode not in ("train", "inference"):
        raise BudgetError("mode", f"mode = {mode!r} is not allowed: allowed train, inference")
    if nf4_blocksize not in (32, 64, 128, 256, 512, 1024, 2048, 4096):
        raise BudgetError("nf4_blocksize", f"nf4_blocksize = {nf4_blocksize!r} is not allowed: allowed a power "
                                           "of two 32..4096")
    db = dtype_bytes(precision)
    counts = count_params(c)
    P = counts["total"]
    info = trainable_params(c, method, rank=rank, targets=targets, **method_kw)
    T = info["trainable"]
    kw = {"rank": rank}

    # ---- weights: frozen base + trainable working copy --------------------------------------------------
    frozen = 0 if method == "full" else P
    quantized = counts["linear"] if method == "qlora" else 0
    w_base = (frozen - quantized) * db["frozen"] + quantized * 0.5
    w_base += info.get("frozen_extra", 0) * db["frozen"]    # VeRA's shared random A, B (buffers, base dtype)
    w_train = T * db["weight"]
    qconst = c.n_layers * sum(quant_constant_bytes(o * i, nf4_blocksize, double_quant)   # per tensor, as bnb
                              for o, i in linear_shapes(c).values()) if quantized else 0
    weights_total = w_base + w_train
    if mode == "inference":   # no grads or optimizer; an unmerged adapter is kept beside the base
        T = 0
        weights_total = w_base + (info["trainable"] if method != "full" else P) * db["frozen"]
    grads = T * db["grad"]
    opt_states = optimizer_state_bytes(optimizer, trainable_tensors(c, method, info, kw), db["state"]) if T else 0
    master = T * db["master"]
    optimizer_total = opt_states + master

    # ---- ZeRO / FSDP sharding over N data-parallel GPUs (communication first: it moves unsharded sizes) -
    comm = comm_bytes(weights_total + qconst, grads, w_train, gpus if mode == "train" else 1, zero)
    N = gpus
    if zero >= 1:
        optimizer_total /= N
    if zero >= 2:
        grads /= N
    if zero >= 3:
        weights_total /= N
        qconst /= N
    cpu_bytes = 0.0
    if offload:
        cpu_bytes, optimizer_total = optimizer_total, 0.0

    # ---- activations and logits -----------------------------------------------------------------------
    if mode == "inference":
        rows = seq + (method_kw.get("n_tokens", 20) if method == "prefix" else 0)
        kv = 2 * c.n_layers * c.kv_dim * batch * rows * db["compute"]
        act_terms = {"kv cache 2*L*(k*d)*b*s": kv,
                     "prefill working set of one layer": inference_transient(c, db["compute"], batch, seq, flash)}
        act = sum(act_terms.values())
        per_layer, kept, phase = {}, 0, "prefill"
        logit = batch * c.vocab_size * (db["compute"] + 4)   # last position only (generate), fp32 for sampling
    else:
        n_virtual = method_kw.get("n_tokens", 20)
        seq_eff = seq + n_virtual if method == "prompt" else seq   # soft tokens are real positions
        at = activation_terms(c, method, info, db["compute"], batch, seq_eff, flash, checkpointing)
        act_terms, act = dict(at["terms"]), at["peak"]
        per_layer, kept, phase = at["per_layer"], at["kept_per_layer"], at["phase"]
        if method in ("prefix", "llama-adapter"):                   # per-layer K/V (or prompt) rows, per sample
            rows = n_virtual if method == "prefix" else method_kw.get("adapter_len", 10)
            extra = c.n_layers * 2 * rows * c.kv_dim * batch * db["compute"]
            act_terms["prefix K/V per layer"] = extra
            act += extra
        logit = logits_bytes(c, batch, seq_eff, db["compute"])
    tensors = weights_total + qconst + grads + optimizer_total + act + logit
    overhead = CUDA_CONTEXT_BYTES + ALLOCATOR_FRACTION * tensors
    mem = {"weights": weights_total, "quant_constants": qconst, "gradients": grads, "optimizer": optimizer_total,
           "activations": act, "logits": logit, "overhead": overhead, "other": logit + overhead}
    mem["total"] = tensors + overhead
    mem = {k: int(round(v)) for k, v in mem.items()}
    return {"memory_bytes": mem, "comm_bytes": comm, "cpu_offload_bytes": int(cpu_bytes), "total_params": P,
            "trainable_params": T if mode == "train" else info["trainable"], "trainable_info": info,
            "activation_terms": act_terms,
            "activation_per_layer": per_layer, "activation_kept_per_layer": kept, "activation_peak_phase": phase,
            "bytes_per_element": db}
