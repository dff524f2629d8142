"""FLOPs per token and time per step.

Forward FLOPs per token (a multiply-add = 2 FLOPs):

    matmuls     2 * N_matmul          N_matmul = L * (linear weights) + V*h (lm_head; the embedding is a lookup)
    attention   2 * 2 * s * a*d * L / 2    (QK^T and PV over s keys; causal halves it)

Training multiplies the forward F by:   full FT 3F (backward = grad wrt input + grad wrt weight);
PEFT 2F + 3*adapter (frozen weights need no weight gradient); full checkpointing +F (recompute);
QLoRA adds dequantization of every NF4 weight, once per use (forward, backward, recompute), which
is memory-bound and stated separately.

time/step = FLOPs/step / (peak FLOP/s * MFU). Peak numbers are the vendors' dense datasheet figures.
"""
from __future__ import annotations

from labs.budget.params import count_params, layer_linear_weights
from labs.budget.presets import ArchConfig, BudgetError

# name: (memory GB, dense bf16 TFLOP/s, fp32 (non-tensor) TFLOP/s) -- vendor datasheets
GPUS = {
    "RTX 3090": (24, 71, 35.6), "RTX 4090": (24, 165, 82.6), "A10G": (24, 70, 31.2),
    "A100-40GB": (40, 312, 19.5), "L40S": (48, 362, 91.6), "RTX A6000": (48, 155, 38.7),
    "A100-80GB": (80, 312, 19.5), "H100-SXM": (80, 989, 67), "H200": (141, 989, 67),
    "B200": (192, 2250, 80), "MI300X": (192, 1307, 163.4),
}
CARD_SIZES_GB = (24, 40, 48, 80, 141, 192)
DEQUANT_FLOPS_PER_WEIGHT = 2   # NF4: one table lookup + one multiply by absmax per weight


def flops(c: ArchConfig, method: str, trainable: int, batch: int, seq: int, checkpointing: str,
          gpu: str = "A100-80GB", mfu: float = 0.4, precision: str = "bf16-mixed") -> dict:
    if gpu not in GPUS:
        raise BudgetError("gpu", f"gpu = {gpu!r} is not known: allowed {', '.join(GPUS)}")
    if not isinstance(mfu, (int, float)) or not 0.01 <= mfu <= 1.0:
        raise BudgetError("mfu", f"mfu = {mfu!r} is not allowed: allowed 0.01..1.0")
    cnt = count_params(c)
    n_matmul = c.n_layers * layer_linear_weights(c) + c.vocab_size * c.hidden_size
    attn = 2 * seq * c.q_dim * c.n_layers                      # 4*s*a*d*L / 2 (causal)
    fwd = 2 * n_matmul + attn
    if method == "full":
        train = 3 * fwd
    else:
        train = 2 * fwd + 3 * 2 * trainable                     # no weight grads for the frozen base
    recompute = fwd if checkpointing == "full" else 0
    tokens = batch * seq
    dequant = 0
    if method == "qlora":
        uses = 2 + (1 if checkpointing == "full" else 0)
        dequant = uses * DEQUANT_FLOPS_PER_WEIGHT * cnt["linear"]  # per step, independent of tokens
    per_step = (train + recompute) * tokens + dequant
    mem, bf16, fp32 = GPUS[gpu]
    peak = (fp32 if precision == "fp32" else bf16) * 1e12
    return {"forward_flops_per_token": fwd, "train_flops_per_token": train + recompute,
            "flops_per_step": per_step, "dequant_flops_per_step": dequant, "gpu": gpu, "mfu": mfu,
            "peak_tflops": peak / 1e12, "seconds_per_step": per_step / (peak * mfu),
            "tokens_per_second": tokens / (per_step / (peak * mfu))}


def fits(total_bytes: float) -> dict[int, bool]:
    """Which card sizes (GB = 1e9 bytes, as vendors count) hold ``total_bytes`` per GPU."""
    return {gb: total_bytes <= gb * 1e9 for gb in CARD_SIZES_GB}
