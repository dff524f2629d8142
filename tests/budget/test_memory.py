"""Model-state bytes follow the ZeRO paper; QLoRA's bits per parameter; the seed's table; FLOPs ratios."""
import math

import pytest

from labs.budget import estimate, seed_table
from labs.budget.memory import quant_constant_bytes
from labs.budget.presets import BudgetError, PRESETS


def states(r):
    m = r["memory_bytes"]
    return m["weights"] + m["gradients"] + m["optimizer"]


def test_sixteen_bytes_per_param_mixed_adamw_and_eight_in_pure_bf16():
    P = PRESETS["llama-2-7b"]
    r = estimate("llama-2-7b", "full", precision="bf16-mixed", optimizer="adamw")
    assert states(r) == 16 * r["total_params"]
    assert states(estimate("llama-2-7b", "full", precision="bf16-true")) == 8 * r["total_params"]
    assert states(estimate("llama-2-7b", "full", precision="fp32")) == 16 * r["total_params"]
    assert states(estimate("llama-2-7b", "full", precision="fp32", optimizer="sgd")) == 12 * r["total_params"]


@pytest.mark.parametrize("zero,expect", [(0, lambda p, n: 16 * p), (1, lambda p, n: 4 * p + 12 * p / n),
                                         (2, lambda p, n: 2 * p + 14 * p / n), (3, lambda p, n: 16 * p / n)])
def test_zero_stages_follow_the_paper(zero, expect):
    """ZeRO (Rajbhandari et al. 2019) fig. 1: (2 + 2 + K)Ψ with K = 12 for mixed-precision Adam."""
    n = 64
    r = estimate("llama-2-7b", "full", gpus=n, zero=zero)
    assert states(r) == pytest.approx(expect(r["total_params"], n), rel=1e-9, abs=4)


def test_zero_paper_7_5b_example():
    """The paper's 7.5B model on 64 GPUs: 120 / 31.4 / 16.6 / 1.9 GB (baseline / P_os / P_os+g / P_os+g+p)."""
    psi, n, k = 7.5e9, 64, 12
    got = [(2 + 2 + k) * psi, 4 * psi + k * psi / n, 2 * psi + (2 + k) * psi / n, (2 + 2 + k) * psi / n]
    assert [round(g / 1e9, 1) for g in got] == [120.0, 31.4, 16.6, 1.9]
    # and our per-GPU numbers scale exactly like that for a real model
    base = states(estimate("llama-2-13b", "full", gpus=n, zero=0))
    z1 = states(estimate("llama-2-13b", "full", gpus=n, zero=1))
    assert z1 / base == pytest.approx((4 + k / n) / 16, rel=1e-6)


def test_offload_moves_optimizer_to_cpu():
    r = estimate("llama-2-7b", "full", offload=True)
    assert r["memory_bytes"]["optimizer"] == 0 and r["cpu_offload_bytes"] == 12 * r["total_params"]


def test_qlora_bits_per_param():
    n = 64 * 256 * 100
    assert quant_constant_bytes(n, 64, False) * 8 / n == 0.5                  # fp32 absmax / 64
    dq = quant_constant_bytes(n, 64, True) * 8 / n
    assert dq == pytest.approx(8 / 64 + 32 / (64 * 256), abs=1e-4)            # 0.127 bits
    assert 0.5 - dq == pytest.approx(0.373, abs=1e-3)                          # the paper's saving
    r = estimate("llama-2-7b", "qlora")
    assert r["memory_bytes"]["quant_constants"] > 0
    assert r["memory_bytes"]["weights"] < estimate("llama-2-7b", "lora")["memory_bytes"]["weights"] / 3


def test_lora_grads_and_optimizer_only_for_adapter():
    r = estimate("llama-2-7b", "lora", rank=8, targets="q_proj,v_proj")
    assert r["trainable_params"] == 32 * 2 * 8 * (4096 + 4096)
    assert r["memory_bytes"]["gradients"] == 2 * r["trainable_params"]
    assert r["memory_bytes"]["optimizer"] == 12 * r["trainable_params"]


def test_eager_attention_grows_quadratically_and_flash_linearly():
    def act(seq, flash):
        return estimate("llama-2-7b", "lora", checkpointing="none", seq=seq, flash=flash)["memory_bytes"][
            "activations"]
    assert act(4096, False) / act(2048, False) > 2.5
    assert act(4096, True) / act(2048, True) == pytest.approx(2, rel=0.05)


def test_checkpointing_saves_memory_and_costs_a_forward():
    a = estimate("llama-2-7b", "full", checkpointing="none", seq=2048)
    b = estimate("llama-2-7b", "full", checkpointing="full", seq=2048)
    assert b["memory_bytes"]["activations"] < a["memory_bytes"]["activations"] / 5
    fa, fb = a["speed"]["train_flops_per_token"], b["speed"]["train_flops_per_token"]
    assert fb / fa == pytest.approx(4 / 3)
    lora = estimate("llama-2-7b", "lora", checkpointing="none", seq=2048)["speed"]["train_flops_per_token"]
    assert 0.66 < lora / fa < 0.7           # no weight gradients: ~2F instead of 3F


def test_seed_table_is_the_pure_bf16_case():
    rows = seed_table()
    for row in rows:
        assert row["bf16-true/adamw model states GB"] == pytest.approx(row["seed_8_bytes_gb"])
        assert row["bf16-mixed/adamw model states GB"] == pytest.approx(2 * row["seed_8_bytes_gb"])


def test_fits_table_and_contract_keys():
    r = estimate("llama-2-7b", "qlora")
    for k in ("weights", "quant_constants", "gradients", "optimizer", "activations", "other", "total"):
        assert isinstance(r["memory_bytes"][k], int)
    assert r["fits"]["24"] and not estimate("llama-2-7b", "full")["fits"]["80"]
    assert r["memory_bytes"]["total"] == sum(r["memory_bytes"][k] for k in (
        "weights", "quant_constants", "gradients", "optimizer", "activations", "other"))


@pytest.mark.parametrize("kw,field", [({"batch": 0}, "batch"), ({"seq": -5}, "seq"), ({"gpus": 0}, "gpus"),
                                      ({"precision": "fp8"}, "precision"), ({"optimizer": "lion"}, "optimizer"),
                                      ({"method": "bitfit"}, "method"), ({"zero": 2}, "zero"),
                                      ({"rank": 5000}, "rank"), ({"model": "gpt-5"}, "model")])
def test_bad_input_names_the_field(kw, field):
    with pytest.raises(BudgetError) as e:
        estimate(**kw)
    assert e.value.field == field


def test_inference_kv_cache_per_token_and_gqa():
    """KV cache per token = 2 * L * (k*d) * bytes: 512 KiB for Llama-2-7B, 128 KiB with Llama-3-8B's GQA."""
    def kv(model):
        return estimate(model, "full", mode="inference", seq=4096)["activation_terms"]["kv cache 2*L*(k*d)*b*s"]
    assert kv("llama-2-7b") == 4096 * 512 * 1024
    assert kv("llama-3-8b") == 4096 * 128 * 1024
    r = estimate("llama-2-7b", "full", mode="inference")
    assert r["memory_bytes"]["gradients"] == r["memory_bytes"]["optimizer"] == 0
    assert r["memory_bytes"]["weights"] == 2 * r["total_params"]
    q = estimate("llama-2-7b", "qlora", mode="inference")
    assert q["memory_bytes"]["weights"] < r["memory_bytes"]["weights"] / 3


def test_page_worth_of_estimates_is_fast():
    """One calculator rerun asks for ~35 estimates (breakdown, 9 methods, 3 x 8 sequence lengths): < 50 ms."""
    import time
    estimate()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        estimate("llama-2-70b", "lora")
        for m in ("full", "lora", "qlora", "dora", "adalora", "prompt", "prefix", "houlsby", "llama-adapter"):
            estimate("llama-2-70b", m)
        for m in ("full", "lora", "qlora"):
            for s in (256, 512, 1024, 2048, 4096, 8192, 16384, 32768):
                estimate("llama-2-70b", m, seq=s)
        best = min(best, time.perf_counter() - t0)
    assert best < 0.05, f"{best * 1000:.1f} ms"


@pytest.mark.parametrize("shape,blocksize,dq", [((256, 384), 64, True), ((96, 64), 64, False),
                                                ((512, 512), 128, True)])
def test_nf4_bytes_equal_the_kernel(shape, blocksize, dq):
    """Packed codes + constants, per tensor, equal what peftlab_kernels.nf4 really stores."""
    import torch

    from peftlab_kernels import nf4
    q = nf4.quantize_nf4(torch.randn(*shape), blocksize=blocksize, double_quant=dq)
    n = shape[0] * shape[1]
    assert n // 2 + quant_constant_bytes(n, blocksize, dq) == q.nbytes()
