"""labs.budget.comm: the ZeRO paper's volumes per step — DDP 2Ψ, ZeRO-1/2 2Ψ, ZeRO-3 3Ψ — and what PEFT changes."""
import pytest

from labs.budget import BudgetError, estimate


def comm(method="full", gpus=8, zero=0, **kw):
    return estimate("llama-2-7b", method, gpus=gpus, zero=zero, **kw)["comm_bytes_per_step"]


def test_full_ft_volumes_are_2_2_3_psi():
    P = estimate("llama-2-7b", "full")["total_params"]
    psi = 2 * P                                              # bf16 weights and grads
    assert comm(zero=0)["total"] == comm(zero=0)["all_reduce"] == 2 * psi
    assert comm(zero=1)["total"] == comm(zero=2)["total"] == 2 * psi
    z3 = comm(zero=3)
    assert (z3["all_gather"], z3["reduce_scatter"], z3["total"]) == (2 * psi, psi, 3 * psi)
    assert z3["wire_per_gpu"] == round(3 * psi * 7 / 8)       # a ring: (N-1)/N of it through each link


def test_lora_reduces_only_adapters_but_fsdp_still_gathers_the_frozen_base():
    est = estimate("llama-2-7b", "lora", rank=16, gpus=8, zero=3)
    T = est["trainable_params"]
    assert comm("lora", zero=0)["total"] == 2 * 2 * T
    z3 = comm("lora", zero=3, rank=16)
    assert z3["reduce_scatter"] == 2 * T
    assert z3["all_gather"] == 2 * 8 * est["memory_bytes"]["weights"]   # the whole (sharded) base, twice
    q = comm("qlora", zero=3, rank=16)
    assert q["all_gather"] < z3["all_gather"] / 3                     # NF4 storage is what QLoRA + FSDP moves


def test_one_gpu_moves_nothing_and_zero_needs_two():
    assert comm(gpus=1)["total"] == 0
    with pytest.raises(BudgetError):
        comm(gpus=1, zero=3)
