"""The contract every lab keeps (peft's PeftCommonTester style: one suite, parametrised over the registry).

    tiny       `Lab.tiny` exists and validates: the smallest run through every stage
    params     every parameter refuses a bad value with a ParamError naming the field and its allowed range;
               an unknown parameter is refused by name
    result     the tiny run's result is JSON (no NaN), carries `lab` and `params`; its events start with "start",
               and the progress bar the lab panel draws from its step events (app/labview.py: the event's
               "progress", else step / steps) stays in [0, 1] and never goes back
    cancel     asked to stop once it has started, a lab raises Cancelled instead of finishing

The tiny runs are shared with each lab's own tests (tests/labs/conftest.py), so the suite adds no training runs
for the labs that have them.
"""
from __future__ import annotations

import json

import pytest

from labs.experiments import Context, get_lab, lab_ids, run_lab
from labs.params import ParamError
from labs.train import Cancelled

LABS = lab_ids()
# a lab whose tiny run would cost the suite too much, and the test that runs the same code smaller instead
RUN_ELSEWHERE = {"compare": "tests/labs/test_compare.py runs labs.compare.run_compare on 3 of its 10 methods"}


def _bad_values(p) -> list:
    if p.kind == "choice":
        return ["not-a-choice"]
    if p.kind == "bool":
        return ["maybe"]
    if p.kind == "str":
        return [""]
    out = ["abc", float("nan")]
    if p.lo is not None:
        out.append(p.lo - 1)
    if p.hi is not None:
        out.append((p.gpu_hi or p.hi) + 1)
    if p.kind == "int":
        out.append((p.lo or 0) + 0.5)
    return out


@pytest.mark.parametrize("lab_id", LABS)
def test_tiny_exists_and_validates(lab_id):
    lab = get_lab(lab_id)
    assert lab.tiny, f"lab {lab_id!r} declares no Lab.tiny"
    assert set(lab.tiny) <= {p.name for p in lab.params}
    lab.validate(lab.tiny)                                  # raises ParamError naming the field if not


@pytest.mark.parametrize("lab_id", LABS)
def test_every_bad_value_names_its_field(lab_id):
    lab = get_lab(lab_id)
    for p in lab.params:
        for bad in _bad_values(p):
            with pytest.raises(ParamError) as err:
                lab.validate({p.name: bad}, on_gpu=True)
            assert err.value.field == p.name and "allowed" in str(err.value), (p.name, bad, str(err.value))
    with pytest.raises(ParamError) as err:
        lab.validate({"no_such_param": 1})
    assert err.value.field == "no_such_param"


def test_only_registered_labs_are_run_elsewhere():
    assert set(RUN_ELSEWHERE) <= set(LABS)


@pytest.mark.parametrize("lab_id", [lab for lab in LABS if lab not in RUN_ELSEWHERE])
def test_tiny_result_is_json_with_monotone_progress(lab_id, tiny_run):
    res, events, _ = tiny_run(lab_id)
    json.dumps(res, allow_nan=False)
    assert res["lab"] == lab_id and res["params"] == get_lab(lab_id).validate(get_lab(lab_id).tiny)
    assert events and events[0]["type"] == "start", events[:1]
    total = max(events[0].get("steps") or get_lab(lab_id).validate(get_lab(lab_id).tiny).get("steps") or 1, 1)
    bar = [min(1.0, e.get("progress", e.get("step", 0) / total)) for e in events if e["type"] == "step"]
    assert bar and all(0.0 <= x <= 1.0 for x in bar), bar
    assert all(b >= a - 1e-9 for a, b in zip(bar, bar[1:])), f"the progress bar goes back: {bar}"


@pytest.mark.parametrize("lab_id", LABS)
def test_cancel_after_start_stops_the_lab(lab_id):
    events = []
    with pytest.raises(Cancelled):
        run_lab(lab_id, get_lab(lab_id).tiny, ctx=Context(emit=events.append, should_stop=lambda: bool(events)))
    assert events and not any(e["type"] == "end" for e in events)
