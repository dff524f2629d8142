"""Bad input, table-driven: every lab parameter and calculator field at and beyond its limits.

Each bad value must raise an error whose ``.field`` names the field and whose message says what is
allowed; a good value at the edge of the range must pass. The CLI turns the same errors into exit 2.
"""
import math

import pytest

from labs.experiments import get_lab, lab_ids
from labs.params import ParamError

BAD_NUMBERS = [float("nan"), float("inf"), "abc", "", None, [1], True]


def _lab_param_cases():
    for lab_id in lab_ids():
        for p in get_lab(lab_id).params:
            yield lab_id, p


@pytest.mark.parametrize("lab_id,param", list(_lab_param_cases()), ids=lambda x: getattr(x, "name", x))
def test_every_lab_parameter_rejects_bad_values(lab_id, param):
    lab = get_lab(lab_id)
    bad = []
    if param.kind in ("int", "float"):
        bad += BAD_NUMBERS
        if param.lo is not None:
            bad += [param.lo - 1, -1e30] if param.lo > -1e29 else []
        if param.hi is not None:
            bad += [param.hi + 1, 1e30]
        if param.kind == "int":
            bad += [1.5, "2.5"]
    elif param.kind == "choice":
        bad += ["not-a-choice", 12345, None, ""]
    elif param.kind == "bool":
        bad += ["maybe", 2, None]
    for value in bad:
        with pytest.raises(ParamError) as err:
            lab.validate({param.name: value})
        assert err.value.field == param.name
        assert param.name in str(err.value) and "allowed" in str(err.value)
    # the edges of the range are allowed, as strings too (a query string or CLI gives strings)
    if param.kind in ("int", "float"):
        for edge in (param.lo, param.hi):
            if edge is not None and math.isfinite(edge):
                value = int(edge) if param.kind == "int" else edge
                assert lab.validate({param.name: str(value)})[param.name] == value
    if param.kind == "choice":
        for c in param.choices:
            assert lab.validate({param.name: str(c)})[param.name] == c


def test_unknown_lab_parameter_is_named():
    lab = get_lab("full-ft")
    with pytest.raises(ParamError) as err:
        lab.validate({"stepz": 3})
    assert err.value.field == "stepz" and "allowed" in str(err.value)


CALC_CASES = [
    ("model", "llama-9000b"), ("model", ""), ("method", "magic"), ("rank", 0), ("rank", -4), ("rank", 10**9),
    ("rank", float("nan")), ("rank", "sixteen"), ("precision", "fp3"), ("optimizer", "adamz"),
    ("checkpointing", "half"), ("batch", 0), ("batch", -1), ("batch", 10**12), ("seq", 0), ("seq", float("inf")),
    ("gpus", 0), ("gpus", -2), ("zero", 4), ("zero", 3), ("targets", "not_a_module"), ("targets", ""),
    ("nf4_blocksize", 48), ("nf4_blocksize", 0), ("mfu", 0), ("mfu", 1.5), ("mfu", float("nan")),
    ("gpu", "TPU-v9"), ("mode", "serve"),
]


@pytest.mark.parametrize("field,value", CALC_CASES)
def test_calculator_fields_reject_bad_values(field, value):
    from labs.budget import estimate

    kwargs = {field: value}
    if field == "zero":
        kwargs["gpus"] = 1
    with pytest.raises(ParamError) as err:
        estimate(**kwargs)
    named = err.value.field
    assert named in (field, "gpus", "zero", "targets", "rank"), (field, named, str(err.value))
    assert str(err.value), "empty message"


def test_rank_larger_than_the_layer_is_refused():
    from labs.budget import estimate

    with pytest.raises(ParamError) as err:
        estimate("llama-2-7b", "lora", rank=5000)
    assert err.value.field == "rank"
