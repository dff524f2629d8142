"""Adapter merging (labs.methods.merging) against peft 0.21.2: the merge_utils functions tensor by tensor
(DARE with the same seed), and LoraModel.add_weighted_adapter end to end on two adapters saved in PEFT format
(new A/B, or B·A for SVD whose factors are sign-ambiguous, and the logits)."""
from __future__ import annotations

import pytest
import torch
from peft import PeftModel
from peft.utils import merge_utils

from labs.methods import io, lora, merging
from tests.methods.helpers import batch, max_diff, randomize_, tiny_model

WEIGHTS = [0.7, 1.3]


def _tensors(seed=0, shape=(12, 9)):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g) for _ in range(3)]


@pytest.mark.parametrize("method", ["task_arithmetic", "magnitude_prune", "ties", "dare_linear", "dare_ties"])
@pytest.mark.parametrize("sign", ["total", "frequency"])
def test_combine_matches_peft_merge_utils(method, sign):
    tensors, w = _tensors(), torch.tensor([0.5, 1.0, -0.8])
    torch.manual_seed(11)                                   # peft's DARE draws from the global RNG
    if method == "task_arithmetic":
        theirs = merge_utils.task_arithmetic(tensors, w)
    elif method in ("ties", "dare_ties"):
        theirs = getattr(merge_utils, method)(tensors, w, 0.4, sign)
    else:
        theirs = getattr(merge_utils, method)(tensors, w, 0.4)
    ours = merging.combine(tensors, w, method, density=0.4, majority_sign_method=sign,
                           generator=torch.Generator().manual_seed(11))
    assert torch.equal(ours, theirs)
    assert ours.abs().sum() > 0


def test_ties_steps_by_hand():
    """Trim keeps the top-density |τ|; the elected sign is the sign of the summed mass; disjoint mean."""
    t1 = torch.tensor([3.0, -1.0, 0.2, 2.0])
    t2 = torch.tensor([-1.0, -4.0, 0.1, 1.0])
    assert torch.equal(merging.trim(t1, 0.5), torch.tensor([3.0, 0.0, 0.0, 2.0]))
    out = merging.combine([t1, t2], [1.0, 1.0], "ties", density=0.5)
    # trimmed: [3,0,0,2] and [0,-4,0,1]; γ = [+,-,+,+]; entry 3 averages 2 and 1
    assert torch.equal(out, torch.tensor([3.0, -4.0, 0.0, 1.5]))


def test_dare_rescale_keeps_expectation_and_is_seeded():
    t = torch.ones(200_000)
    a = merging.dare_drop(t, 0.25, generator=torch.Generator().manual_seed(5))
    b = merging.dare_drop(t, 0.25, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert set(a.unique().tolist()) == {0.0, 4.0}           # dropped, or kept × 1/(1 − p)
    assert abs(a.mean().item() - 1.0) < 0.02                 # E[τ̃] = τ
    assert abs((a > 0).float().mean().item() - 0.25) < 0.01


def test_errors_name_the_field():
    with pytest.raises(ValueError, match="density=1.5"):
        merging.combine(_tensors()[:2], [1, 1], "ties", density=1.5)
    with pytest.raises(ValueError, match="majority_sign_method='median'"):
        merging.combine(_tensors()[:2], [1, 1], "ties", density=0.5, majority_sign_method="median")
    with pytest.raises(ValueError, match="combination_type='mean'"):
        merging.add_weighted_adapter([{}, {}], [1, 1], "mean")


# ------------------------------------------------------------------------------------- add_weighted_adapter
@pytest.fixture(scope="module")
def two_adapters(tmp_path_factory):
    """Two non-trivial LoRA adapters (different r·α, overlapping targets) saved by us in PEFT format."""
    dirs = []
    for k, (targets, alpha) in enumerate(((["q_proj", "v_proj", "up_proj"], 16), (["q_proj", "v_proj", "up_proj"], 8))):
        m = lora.apply(tiny_model(seed=0), r=4, lora_alpha=alpha, target_modules=targets)
        randomize_([p for p in m.parameters() if p.requires_grad], seed=20 + k, std=0.2)
        d = tmp_path_factory.mktemp(f"adapter{k}")
        io.save(m, d)
        dirs.append(d)
    return dirs


def _peft_merged(dirs, combination_type, monkeypatch, **kw):
    import peft.tuners.lora.model as peft_lora

    pm = PeftModel.from_pretrained(tiny_model(seed=0), str(dirs[0]), adapter_name="a")
    pm.load_adapter(str(dirs[1]), adapter_name="b")
    seed, freeze = kw.pop("seed", 0), peft_lora._freeze_adapter

    def freeze_then_seed(*args):          # peft's new adapter init drew from the global RNG: reseed after it,
        freeze(*args)                     # right before DARE's first Bernoulli mask
        torch.manual_seed(seed)

    monkeypatch.setattr(peft_lora, "_freeze_adapter", freeze_then_seed)
    pm.add_weighted_adapter(["a", "b"], WEIGHTS, "m", combination_type=combination_type, **kw)
    pm.set_adapter("m")
    return pm.eval()


def _in_model_order(adapter: dict) -> dict:
    """peft visits modules in named_modules() order; a safetensors file lists them sorted."""
    order = [n for n, _ in tiny_model(seed=0).named_modules()]
    return {n: adapter[n] for n in order if n in adapter}


def _peft_factors(pm) -> dict:
    out = {}
    for name, mod in pm.base_model.model.named_modules():
        if hasattr(mod, "lora_A") and "m" in getattr(mod, "lora_A", {}):
            out[name] = (mod.lora_A["m"].weight.detach(), mod.lora_B["m"].weight.detach())
    return out


@pytest.mark.parametrize("combination_type,kw", [
    ("linear", {}), ("cat", {}), ("svd", {}), ("ties", {"density": 0.5}),
    ("ties_svd", {"density": 0.3, "svd_rank": 3}), ("dare_linear", {"density": 0.6, "seed": 7}),
])
def test_add_weighted_adapter_matches_peft(two_adapters, combination_type, kw, monkeypatch):
    kw = dict(kw)
    seed = kw.get("seed", 0)
    pm = _peft_merged(two_adapters, combination_type, monkeypatch, **kw)
    kw.pop("seed", None)
    adapters = [_in_model_order(merging.factors_from_dir(d)) for d in two_adapters]
    ours, r = merging.add_weighted_adapter(adapters, WEIGHTS, combination_type,
                                           generator=torch.Generator().manual_seed(seed), **kw)
    theirs = _peft_factors(pm)
    assert set(theirs) == set(ours) and r == pm.peft_config["m"].r
    for name, (A, B) in theirs.items():
        if combination_type.endswith("svd"):                 # singular vectors are defined up to sign
            assert max_diff(ours[name].B @ ours[name].A, B @ A) <= 1e-5
        else:
            assert max_diff(ours[name].A, A) <= 1e-6 and max_diff(ours[name].B, B) <= 1e-6
    merged = merging.install(tiny_model(seed=0), ours, r).eval()
    ids, mask = batch()
    with torch.no_grad():
        assert max_diff(merged(input_ids=ids, attention_mask=mask).logits,
                        pm(input_ids=ids, attention_mask=mask).logits) <= 1e-5
        base = tiny_model(seed=0)(input_ids=ids, attention_mask=mask).logits
    assert max_diff(merged(input_ids=ids, attention_mask=mask).logits, base) > 1e-3   # the merge did something


def test_cat_is_exact_task_arithmetic_and_linear_is_not(two_adapters):
    """`cat` reproduces Σ w_t s_t B_t A_t exactly; peft's `linear` on the factors adds cross terms B_1 A_2."""
    adapters = [merging.factors_from_dir(d) for d in two_adapters]
    exact = merging.merged_deltas(adapters, WEIGHTS, "task_arithmetic")
    cat, _ = merging.add_weighted_adapter(adapters, WEIGHTS, "cat")
    lin, _ = merging.add_weighted_adapter(adapters, WEIGHTS, "linear")
    for name, delta in exact.items():
        assert max_diff(cat[name].delta(), delta) <= 1e-5
        assert max_diff(lin[name].delta(), delta) > 1e-3


def test_merged_deltas_in_a_dense_model_equal_the_installed_cat_adapter(two_adapters):
    adapters = [merging.factors_from_dir(d) for d in two_adapters]
    dense = merging.apply_deltas(tiny_model(seed=0), merging.merged_deltas(adapters, WEIGHTS, "task_arithmetic"))
    cat, r = merging.add_weighted_adapter(adapters, WEIGHTS, "cat")
    installed = merging.install(tiny_model(seed=0), cat, r).eval()
    ids, mask = batch()
    with torch.no_grad():
        assert max_diff(dense(input_ids=ids, attention_mask=mask).logits,
                        installed(input_ids=ids, attention_mask=mask).logits) <= 1e-5
