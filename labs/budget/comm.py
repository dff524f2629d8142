"""Communication per training step and GPU for data parallelism, ZeRO and FSDP (the ZeRO paper's accounting).

Ψ = the bytes of one full copy of what a collective moves: the weights in their storage dtype (QLoRA: the NF4
bytes and their constants), the gradients in theirs. A collective over a tensor of S bytes counts as

    all-gather S      reduce-scatter S      all-reduce 2S (= a reduce-scatter followed by an all-gather)

and a ring moves (N-1)/N of that through each GPU's link (``wire``). Per optimizer step (ZeRO paper, section 7):

    strategy                       what is communicated                                         full FT
    DDP (zero 0)                   all-reduce the gradients                                     2Ψ
    ZeRO-1, ZeRO-2                 reduce-scatter the gradients, all-gather the updated weights  2Ψ
    ZeRO-3 = FSDP full shard       all-gather weights (forward), again (backward), reduce-scatter grads  3Ψ
    FSDP reshard_after_forward=False   one all-gather kept until backward ends + reduce-scatter  2Ψ

PEFT changes the gradient terms only: frozen weights have no gradient, so DDP and ZeRO-1/2 move 2Ψ_trainable.
Under ZeRO-3 / FSDP the frozen base is sharded too, so it is all-gathered like every weight:
2Ψ_weights + Ψ_trainable-grads. ``labs.experiments.fsdp`` counts these bytes on real collectives.
"""
from __future__ import annotations


def comm_bytes(weights: float, grads: float, trainable_weights: float, gpus: int, zero: int,
               reshard_after_forward: bool = True) -> dict:
    """Bytes per step per GPU by collective. ``weights`` = every stored weight byte (frozen + trainable + quant
    constants), ``grads`` = gradient bytes, ``trainable_weights`` = the trainable weights' bytes (unsharded)."""
    out = {"all_reduce": 0.0, "reduce_scatter": 0.0, "all_gather": 0.0}
    if gpus > 1:
        if zero == 0:
            out["all_reduce"] = 2 * grads
            formula = "DDP: all-reduce of the gradients = 2 x grads"
        elif zero in (1, 2):
            out["reduce_scatter"], out["all_gather"] = grads, trainable_weights
            formula = "ZeRO-1/2: reduce-scatter grads + all-gather the updated trainable weights"
        else:
            gathers = 2 if reshard_after_forward else 1
            out["reduce_scatter"], out["all_gather"] = grads, gathers * weights
            formula = (f"ZeRO-3/FSDP: {gathers} all-gather(s) of every weight (frozen ones too) + "
                       "reduce-scatter of the grads")
    else:
        formula = "one GPU: no communication"
    total = sum(out.values())
    out = {k: int(round(v)) for k, v in out.items()}
    out.update(total=int(round(total)), wire_per_gpu=int(round(total * (gpus - 1) / gpus)), formula=formula)
    return out
