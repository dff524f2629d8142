"""Lab `nf4` at tiny settings on the bundled base: the findings hold, the result is JSON, bad params name
their field. One run (attention layers, 4 eval windows) is shared; the rest calls the lab's functions."""
import math

import pytest
import torch

from labs import quant_probe as probe
from labs.experiments import nf4 as N
from tests.conftest import shared_tiny_run

TINY = N.LAB.tiny


tiny_run = shared_tiny_run("nf4", 2)


@pytest.fixture(scope="module")
def base_mods():
    from labs.base import load_base

    model, _ = load_base()
    return model, N.linear_modules(model, "all")


def test_nf4_has_the_smallest_weight_error_and_measured_bits_match_the_formula(tiny_run):
    res = tiny_run[0]
    f = res["formats"]
    assert f["nf4"]["mse"] < f["int4"]["mse"] and f["nf4"]["mse"] < f["fp4"]["mse"]
    d = res["double"]
    assert d["bits_plain"] == 4.5                              # 4 + 32/64, every matrix a multiple of 64
    assert 4.12 < d["bits_dq"] < 4.13 and d["bits_dq"] >= d["bits_formula_dq"]   # + the per-tensor offset
    assert d["bits_plain"] - d["bits_dq"] == pytest.approx(0.373, abs=0.001)
    assert abs(d["mse_dq"] / d["mse_plain"] - 1) < 0.01        # double quant barely moves the error
    assert all(fmt["bits_per_param"] == d["bits_dq"] for fmt in f.values())


def test_quality_is_measured_against_the_baseline(tiny_run):
    res = tiny_run[0]
    base = res["baseline"]["lm_loss"]
    for f in res["formats"].values():
        assert f["lm_loss"] != base and abs(f["lm_loss"] - base) < 0.5   # quantized, and not destroyed
        assert f["ppl"] == pytest.approx(math.exp(f["lm_loss"]))
    assert res["n_layers_quantized"] == 16 and len(res["formats"]["nf4"]["layers"]) == 16


def test_big_model_savings_use_budget_counts(tiny_run):
    rows = {r["model"]: r for r in tiny_run[0]["double"]["big_models"]}
    assert set(rows) == set(N.BIG_MODELS)
    assert rows["llama-2-7b"]["quantized_params"] < rows["llama-2-13b"]["quantized_params"] < rows["llama-2-70b"]["quantized_params"]
    for r in rows.values():   # measured bits vs labs.budget's formula: apart only by per-tensor offsets and
        assert r["saved_bytes"] == pytest.approx(r["saved_bytes_budget"], rel=5e-3)   # partial 256-groups


def test_roundtrip_and_bitsandbytes(tiny_run):
    res = tiny_run[0]
    trip = res["roundtrip"]
    assert trip["nf4"]["plain"]["codes_equal"] and trip["int4"]["plain"]["codes_equal"]
    assert trip["fp4"]["plain"]["dequantized_equal"]          # FP4 may code 0 as −0 or +0: same value
    bnb = res["bnb"]
    if not bnb["available"]:
        pytest.skip(bnb["reason"])
    assert bnb["all_equal"] and len(bnb["rows"]) == 2 * 4


def test_progress_ends_at_one_and_the_sweep_trades_bits_for_error(tiny_run):
    res, events = tiny_run
    assert [e["progress"] for e in events if e["type"] == "step"][-1] == 1.0
    assert {r["format"] for r in res["sweep"]} == set(N.FORMATS) and len(res["sweep"]) == 3 * len(N.BLOCKSIZES)
    small, big = (next(r for r in res["sweep"] if r["format"] == "nf4" and r["blocksize"] == b) for b in (32, 4096))
    assert small["mse"] < big["mse"] and small["bits_per_param"] > big["bits_per_param"]


def test_plain_scales_reconstruct_every_block_maximum_exactly(base_mods):
    _, mods = base_mods
    one = dict(list(mods.items())[:2])
    _, plain = probe.quantize_layers(one, "nf4", 64, False)
    _, dq = probe.quantize_layers(one, "nf4", 64, True)
    assert all(l["max_exact"] == 1.0 for l in plain["layers"])
    assert all(l["max_exact"] < 0.5 for l in dq["layers"])    # the 8-bit scale is rounded


def test_swap_restores_the_exact_weights(base_mods):
    _, mods = base_mods
    one = dict(list(mods.items())[:1])
    before = {n: m.weight.detach().clone() for n, m in one.items()}
    deq, _ = probe.quantize_layers(one, "int4", 64, True)
    with probe.swapped(one, deq):
        assert torch.equal(next(iter(one.values())).weight, next(iter(deq.values())))
        assert not torch.equal(next(iter(one.values())).weight, next(iter(before.values())))
    assert all(torch.equal(m.weight, before[n]) for n, m in one.items())
    with pytest.raises(RuntimeError), probe.swapped(one, deq):
        raise RuntimeError("a failed evaluation")                 # the originals come back on error too
    assert all(torch.equal(m.weight, before[n]) for n, m in one.items())


def test_picture_normal_vs_uniform():
    """NF4 uses its codes more evenly than INT4 on normal data; on uniform data INT4 wins on error."""
    def entropy(u):
        p = torch.tensor(u, dtype=torch.float64)
        p = p[p > 0] / p.sum()
        return float(-(p * p.log2()).sum())

    normal = N.picture(N.synthetic("normal", (128, 128)), 64, True)
    uniform = N.picture(N.synthetic("uniform", (128, 128)), 64, True)
    assert entropy(normal["formats"]["nf4"]["usage"]) > entropy(normal["formats"]["int4"]["usage"])
    assert normal["formats"]["nf4"]["mse"] < normal["formats"]["int4"]["mse"]
    assert uniform["formats"]["int4"]["mse"] < uniform["formats"]["nf4"]["mse"]
    assert sum(normal["formats"]["fp4"]["usage"]) == 128 * 128
    with pytest.raises(ValueError, match="block = 256"):
        N.picture(torch.randn(128, 128), 64, True, block=256)


def test_codebook_levels_are_equal_probability_steps():
    cb = N.codebook_table()
    p = torch.tensor(cb["nf4_prob"], dtype=torch.float64)
    up, down = p[7:].diff(), p[:8].diff()                      # 8 steps above 0, 7 below
    assert torch.allclose(up, up[0].expand_as(up), atol=1e-6) and torch.allclose(down, down[0].expand_as(down), atol=1e-6)
    assert cb["nf4"][7] == 0.0 and len(cb["fp4"]) == len(cb["int4"]) == 16


def test_weight_names_read_the_safetensors():
    names = N.weight_names()
    assert names[0].endswith("layers.0.self_attn.q_proj.weight") and len(names) % 7 == 0
    assert N.load_weight(names[0]).dtype == torch.float32
    with pytest.raises(KeyError, match="weight = 'nope'"):
        N.load_weight("nope")

