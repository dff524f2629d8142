"""labs.serving (simulator) on a tiny random Llama, and the `serving` lab at tiny settings on the bundled base."""

import pytest
import torch

from labs.base import tiny_llama
from labs.params import ParamError
from labs.serving import (_split_by_slots, build_server, make_stream, reference, serve)


def _tokens(n, length, vocab=128, seed=0):
    return torch.randint(3, vocab, (n, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("mixed", [False, True])
def test_three_strategies_match_the_per_request_reference(mixed):
    srv = build_server(tiny_llama(), K=5, r=4, targets="all-linear", slots=2, mixed_ranks=mixed, b_scale=0.2)
    tokens = _tokens(7, 6)
    adapters = [0, 3, 3, 1, 4, 2, 0]
    ref = reference(srv, tokens, adapters, prompt_len=4)
    srv.route.mode = "base"
    from labs.serving import generate

    base = generate(srv, tokens, 4)
    assert (ref - base).abs().max() > 1e-2                        # the adapters really change the logits
    for strategy in ("merge_swap", "per_group", "batched"):
        out = serve(srv, strategy, tokens, adapters, prompt_len=4, batch_size=4)
        assert out["logits"].shape == ref.shape
        torch.testing.assert_close(out["logits"], ref, rtol=1e-4, atol=1e-4)
        assert len(out["latency_s"]) == 7 and out["p50_s"] <= out["p95_s"]
    if mixed:
        assert sorted(set(srv.ranks)) == [1, 2, 4]


def test_merge_swap_restores_the_base_weights():
    srv = build_server(tiny_llama(), K=3, r=2, targets=["q_proj"], slots=3, b_scale=0.5)
    before = {n: m.base_layer.weight.clone() for n, m in srv.layers.items()}
    serve(srv, "merge_swap", _tokens(4, 5), [0, 1, 2, 1], prompt_len=3, batch_size=4)
    for n, m in srv.layers.items():
        torch.testing.assert_close(m.base_layer.weight, before[n], rtol=0, atol=1e-6)


def test_lru_cache_loads_and_batch_split():
    assert _split_by_slots([0, 1, 0, 2, 3, 2], 2) == [[0, 1, 2], [3, 4, 5]]
    srv = build_server(tiny_llama(), K=4, r=2, targets=["v_proj"], slots=2)
    tokens = _tokens(8, 4)
    out = serve(srv, "batched", tokens, [0, 1, 0, 1, 2, 3, 2, 3], prompt_len=3, batch_size=4)
    assert out["adapter_loads"] == 4 and out["cache_hits"] == 0    # batch 2 evicts both of batch 1
    again = serve(srv, "batched", tokens[:4], [2, 3, 2, 3], prompt_len=3, batch_size=4)
    assert again["adapter_loads"] == 0 and again["cache_hits"] == 2


def test_skewed_traffic_concentrates_on_few_adapters():
    uni, skew = make_stream(2000, 32, "uniform"), make_stream(2000, 32, "skewed")
    top = lambda s: max(s.count(k) for k in set(s)) / len(s)   # noqa: E731
    assert top(skew) > 3 * top(uni)
    with pytest.raises(ValueError, match="traffic"):
        make_stream(4, 4, "bursty")


def test_lab_tiny_run_is_consistent(tiny_run):
    res = tiny_run("serving")[0]            # the session's one tiny run (tests/conftest.py)
    assert set(res["strategies"]) == {"merge_swap", "per_group", "batched"}
    assert res["max_abs_diff"] < 1e-4 and res["adapter_effect"] > 1e-3
    for s in res["strategies"].values():
        assert s["tokens_per_s"] > 0 and s["argmax_agree"] == 1.0
    mem = res["memory"]
    assert mem["merged_copies_bytes"] == 4 * mem["base_bytes"]
    assert mem["shared_bytes"] < mem["merged_copies_bytes"]
    assert [p["K"] for p in res["sweep_k"]] == [1, 4]
    assert sorted(p["batch_size"] for p in res["sweep_batch"]) == [1, 2, 4]
    batched = res["strategies"]["batched"]
    assert batched["adapter_loads"] + batched["cache_hits"] > 0


@pytest.mark.parametrize("field,value", [("adapters", 0), ("adapters", 65), ("traffic", "bursty"),
                                         ("cache_slots", 0), ("r", 1000)])
def test_bad_params_name_the_field(field, value):
    from labs.experiments import get_lab

    with pytest.raises(ParamError) as err:
        get_lab("serving").validate({field: value}, quick=True)
    assert err.value.field == field and field in str(err.value)
