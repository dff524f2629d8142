"""Lab `adapters` at tiny settings: a closed gate starts exactly at the base, Houlsby nearly; the gates move
off zero; counts equal the formulas; latency at both batch sizes; an open gate starts worse; bad params named."""
import json

import pytest

from labs.experiments import get_lab, run_lab
from labs.params import ParamError
from tests.conftest import shared_tiny_run

TINY = get_lab("adapters").tiny


ran = shared_tiny_run("adapters", 2)


def test_result_json_counts_and_step0(ran):
    result, _ = ran
    json.dumps(result)
    v = result["variants"]
    for m in ("houlsby", "llama-adapter"):
        assert v[m]["trainable_params"] == v[m]["formula"]["value"], m
    L, d = result["layers"], result["hidden"]
    assert v["llama-adapter"]["formula"]["value"] == 2 * 3 * d + 2
    assert v["llama-adapter"]["step0_loss_change"] == pytest.approx(0.0, abs=1e-6)   # closed gate: the base exactly
    assert 0 < abs(v["houlsby"]["step0_loss_change"]) < 0.05                         # near-identity, not identity


def test_gates_start_at_zero_and_move(ran):
    result, events = ran
    gates = result["gates"]
    assert len(gates) == TINY["steps"] + 1 and len(gates[0]) == TINY["adapter_layers"]
    assert gates[0] == [0.0, 0.0]
    assert all(g != 0.0 for g in gates[-1])
    steps = [e for e in events if e["type"] == "step" and e["series"] == "LLaMA-Adapter"]
    assert [e["gates"] for e in steps] == gates[1:]


def test_latency_both_batches(ran):
    result, _ = ran
    assert set(result["latency"]) == {"1", "2"}
    for lat in result["latency"].values():
        assert set(lat) == {"base", "houlsby", "llama-adapter", "lora"}
        assert lat["base"]["overhead_vs_base"] == 0.0
        assert all(r["ms_per_token"] > 0 for r in lat.values())


def test_open_gate_starts_away_from_the_base():
    r = run_lab("adapters", {**TINY, "houlsby": False, "lora": False, "steps": 1, "gate_init": 0.8,
                             "latency_repeats": 1})
    assert r["gates"][0] == [pytest.approx(0.8)] * TINY["adapter_layers"]
    assert abs(r["variants"]["llama-adapter"]["step0_loss_change"]) > 1e-3     # random prompts leak in at step 0


@pytest.mark.parametrize("values, field", [({"adapter_layers": 64}, "adapter_layers"),
                                           ({"houlsby": False, "llama_adapter": False, "lora": False}, "houlsby")])
def test_bad_params_name_the_field(values, field):
    with pytest.raises(ParamError) as err:
        run_lab("adapters", {**TINY, **values})
    assert err.value.field == field and field in str(err.value)
