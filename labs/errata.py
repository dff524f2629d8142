"""The interview notes' claims, each checked: content/notes/claims.yaml plus the code that recomputes its numbers.

    claims()                 the register, validated (ids, sections, verdicts, both languages, evidence kinds)
    recompute(evidence)      the number one piece of evidence stands for, computed now by our code
    check(data=None)         [Mismatch, ...]: every register number that the code no longer reproduces
    counts(claims)           {verdict: n} for a list of claims

Evidence kinds and what recomputes them:

    calculator   labs.budget.estimate(**inputs), ``measure`` = "a.b+c.d" (dotted fields, summed),
                 optional ``per`` (a field to divide by) or ``saving_vs`` (inputs of a second estimate:
                 1 − ours / theirs)
    methods      labs.methods.apply_method on a preset architecture built on the meta device (no weights), or on
                 labs.base.tiny_llama (model: tiny); ``measure`` trainable | percent | scaling; optional
                 ``minus`` / ``per``: a second {method, cfg} on the same model
    kernels      peftlab_kernels.nf4 on a fixed N(0, 1) tensor: bits_per_param of {format, blocksize,
                 double_quant}, or mse (quantization error); optional ``minus`` / ``per``
    lab          a saved run (labs/data/<run>.json): dotted ``path`` fields, summed with "+" (``rows.<method>`` picks
                 a row by method),
                 optional ``minus`` / ``per`` paths; the register keeps the run's date, device and torch version
    reference    a paper or document (``cite``, ``url``): read, not recomputed
    test         ``tests/...py::name``: a test in this repository that fails if the statement stops being true

A register number is compared at the precision it is written with: 114.1 matches 114.147, 0.373 matches
0.37304, an integer must be exact. ``scale`` multiplies the computed value first (100 for percent, 1e-9 for GB).
"""
from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
REGISTER = ROOT / "content" / "notes" / "claims.yaml"
RUNS = ROOT / "labs" / "data"
SECTIONS = tuple(str(i) for i in range(1, 12))
VERDICTS = ("holds", "condition", "simplified", "wrong", "uncheckable")
NEEDS_CARD = ("wrong", "simplified")
KINDS = ("calculator", "methods", "kernels", "lab", "reference", "test")
NUMERIC = ("calculator", "methods", "kernels", "lab")
LANGS = ("en", "zh")
CLAIM_ID = re.compile(r"^s(?:[1-9]|1[01])-[a-z0-9-]+$")


class ClaimError(ValueError):
    """The register breaks its schema; the message names the claim id and the field."""


@dataclass(frozen=True)
class Mismatch:
    claim: str
    index: int          # which evidence of the claim
    register: float
    computed: float

    def __str__(self) -> str:
        return (f"content/notes/claims.yaml: claim {self.claim}, evidence {self.index}: the register says "
                f"{self.register!r}, the code computes {self.computed!r}")


def _bilingual(obj, where: str) -> None:
    if not (isinstance(obj, dict) and all(isinstance(obj.get(k), str) and obj[k].strip() for k in LANGS)):
        raise ClaimError(f"{where}: needs non-empty 'en' and 'zh' strings, got {obj!r}")


def _validate(data: dict) -> dict:
    sections = data.get("sections") or {}
    if sorted(sections, key=int) != list(SECTIONS):
        raise ClaimError(f"sections: need exactly {SECTIONS}, got {sorted(sections)}")
    for k, s in sections.items():
        _bilingual(s.get("title"), f"sections.{k}.title")
    seen = set()
    for c in data.get("claims") or []:
        cid = c.get("id")
        if not isinstance(cid, str) or not CLAIM_ID.match(cid) or cid in seen:
            raise ClaimError(f"claim id {cid!r}: allowed 's<section>-<slug>', unique")
        seen.add(cid)
        if str(c.get("section")) not in SECTIONS or not cid.startswith(f"s{c['section']}-"):
            raise ClaimError(f"claim {cid}: field section {c.get('section')!r}: allowed 1..11, matching the id")
        if "where" in c and not re.match(rf"^{c['section']}(?:\.(?:\d+|Q[1-6]))?(?:, |$)", str(c["where"])):
            raise ClaimError(f"claim {cid}: field where {c['where']!r}: allowed the section or its subsections "
                             f"('{c['section']}', '{c['section']}.1', '11.Q1')")
        if c.get("verdict") not in VERDICTS:
            raise ClaimError(f"claim {cid}: field verdict {c.get('verdict')!r}: allowed {VERDICTS}")
        for f in ("claim", "correction"):
            _bilingual(c.get(f), f"claim {cid}: field {f}")
        ev = c.get("evidence") or []
        if not ev:
            raise ClaimError(f"claim {cid}: field evidence: at least one piece of evidence is required")
        for i, e in enumerate(ev):
            if e.get("kind") not in KINDS:
                raise ClaimError(f"claim {cid}: evidence {i}: kind {e.get('kind')!r}: allowed {KINDS}")
            _bilingual(e.get("note"), f"claim {cid}: evidence {i}: note")
            if e["kind"] in NUMERIC and not isinstance(e.get("value"), (int, float)):
                raise ClaimError(f"claim {cid}: evidence {i}: a {e['kind']} evidence needs a numeric 'value'")
            if e["kind"] == "lab" and not all(e.get(k) for k in ("run", "path", "date", "device", "torch")):
                raise ClaimError(f"claim {cid}: evidence {i}: a lab evidence needs run, path, date, device, torch")
            if e["kind"] == "reference" and not e.get("cite"):
                raise ClaimError(f"claim {cid}: evidence {i}: a reference needs 'cite'")
            if e["kind"] == "test" and "::" not in str(e.get("test", "")):
                raise ClaimError(f"claim {cid}: evidence {i}: a test evidence needs 'tests/<file>.py::<name>'")
        if c["verdict"] in NEEDS_CARD and not c.get("cards"):
            raise ClaimError(f"claim {cid}: verdict {c['verdict']} needs at least one flashcard id in 'cards'")
    return data


def load(path: Path | None = None) -> dict:
    return _validate(yaml.safe_load((path or REGISTER).read_text(encoding="utf-8")))


@functools.lru_cache(maxsize=1)
def register() -> dict:
    return load()


def claims() -> list[dict]:
    return register()["claims"]


def counts(items: list[dict]) -> dict[str, int]:
    out = {v: 0 for v in VERDICTS}
    for c in items:
        out[c["verdict"]] += 1
    return out


# ---------------------------------------------------------------- recomputation

def _walk(obj, path: str):
    for part in path.split("."):
        if isinstance(obj, list):                       # rows.<method>: the row whose "method" is <method>
            obj = next(r for r in obj if r.get("method") == part)
        else:
            obj = obj[part]
    return obj


def _fields(result: dict, expr: str) -> float:
    return float(sum(_walk(result, p.strip()) for p in expr.split("+")))


@functools.lru_cache(maxsize=64)
def _estimate(inputs_json: str) -> dict:
    from labs.budget import estimate
    return estimate(**json.loads(inputs_json))


def _calculator(e: dict) -> float:
    r = _estimate(json.dumps(e["inputs"], sort_keys=True))
    v = _fields(r, e["measure"])
    if "per" in e:
        v /= _fields(r, e["per"])
    if "saving_vs" in e:
        other = _estimate(json.dumps(e["saving_vs"], sort_keys=True))
        v = 1.0 - v / _fields(other, e["measure"])
    return v


@functools.lru_cache(maxsize=32)
def _adapted(model: str, method: str, cfg_json: str):
    import torch
    from labs.methods import apply_method
    if model == "tiny":
        from labs.base import tiny_llama
        net = tiny_llama()
    else:
        from transformers import AutoModelForCausalLM
        from labs.budget.params import hf_config
        from labs.budget.presets import get_arch
        with torch.device("meta"):                      # shapes only: nothing is allocated
            net = AutoModelForCausalLM.from_config(hf_config(get_arch(model)))
            return apply_method(net, method, **json.loads(cfg_json))
    return apply_method(net, method, **json.loads(cfg_json))


def _method_value(model: str, spec: dict, measure: str) -> float:
    net = _adapted(model, spec["method"], json.dumps(spec.get("cfg", {}), sort_keys=True))
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    if measure == "trainable":
        return float(trainable)
    if measure == "percent":
        return 100.0 * trainable / sum(p.numel() for p in net.parameters())
    if measure == "scaling":
        from labs.methods.lora import lora_layers
        return float(next(iter(lora_layers(net).values())).scaling)
    raise ClaimError(f"methods evidence: measure {measure!r}: allowed trainable, percent, scaling")


@functools.lru_cache(maxsize=1)
def _normal_weights():
    import torch
    return torch.randn(1024, 1024, generator=torch.Generator().manual_seed(0))


def _kernel_value(spec: dict, measure: str) -> float:
    from peftlab_kernels import nf4
    w = _normal_weights()
    fmt = spec.get("format", "nf4")
    q = getattr(nf4, f"quantize_{fmt}")(w, spec.get("blocksize", 64), spec.get("double_quant", True))
    if measure == "bits_per_param":
        return float(q.bits_per_param())
    if measure == "mse":
        return float((getattr(nf4, f"dequantize_{fmt}")(q) - w).pow(2).mean())
    raise ClaimError(f"kernels evidence: measure {measure!r}: allowed bits_per_param, mse")


@functools.lru_cache(maxsize=8)
def saved_run(name: str) -> dict:
    """A saved lab result, e.g. "compare/facts" -> labs/data/compare/facts.json."""
    path = RUNS / f"{name}.json"
    if not path.is_file():
        raise ClaimError(f"lab evidence: run {name!r}: no file {path.relative_to(ROOT)}")
    return json.loads(path.read_text(encoding="utf-8"))


def _combine(e: dict, value: float, second) -> float:
    if "minus" in e:
        return value - second(e["minus"])
    if "per" in e:
        return value / second(e["per"])
    return value


def recompute(e: dict) -> float:
    """The number evidence ``e`` stands for, computed now (before ``scale``)."""
    kind = e["kind"]
    if kind == "calculator":
        return _calculator(e)
    if kind == "methods":
        model, measure = e["model"], e["measure"]
        return _combine(e, _method_value(model, e, measure), lambda s: _method_value(model, s, measure))
    if kind == "kernels":
        return _combine(e, _kernel_value(e, e["measure"]), lambda s: _kernel_value(s, e["measure"]))
    if kind == "lab":
        run = saved_run(e["run"])
        return _combine(e, _fields(run, e["path"]), lambda p: _fields(run, p))
    raise ClaimError(f"evidence kind {kind!r} has no number to recompute")


def decimals(value: float | int) -> int:
    """How many decimals the register wrote: 114.1 -> 1, 0.373 -> 3, 4194304 -> 0."""
    if isinstance(value, int):
        return 0
    text = repr(float(value))
    if "e" in text:
        mant, exp = text.split("e")
        return max(0, len(mant.split(".")[1].rstrip("0")) - int(exp)) if "." in mant else max(0, -int(exp))
    return len(text.split(".")[1].rstrip("0"))


def agrees(register_value: float | int, computed: float) -> bool:
    """The computed number, rounded to the register's precision, is the register's number."""
    if isinstance(register_value, int) and not isinstance(register_value, bool):
        return round(computed) == register_value and abs(computed - round(computed)) < 1e-6 * max(1, abs(computed))
    d = decimals(register_value)
    return math.isclose(round(computed, d), register_value, rel_tol=0, abs_tol=10 ** -(d + 6))


def run_facts(e: dict) -> dict:
    """The saved run's date, device and torch version (what the register must keep with a lab figure)."""
    run = saved_run(e["run"])
    return {"date": run.get("date"), "device": run.get("device_name") or run.get("device"),
            "torch": (run.get("versions") or {}).get("torch")}


def check(data: dict | None = None) -> list[Mismatch | str]:
    """Every disagreement between the register and the code (an empty list means all numbers hold)."""
    data = data or register()
    bad: list[Mismatch | str] = []
    for c in data["claims"]:
        for i, e in enumerate(c["evidence"]):
            if e["kind"] == "test":
                path, name = e["test"].split("::")
                src = ROOT / path
                if not src.is_file() or not re.search(rf"^\s*def {re.escape(name)}\(", src.read_text("utf-8"), re.M):
                    bad.append(f"claim {c['id']}, evidence {i}: no test {e['test']}")
                continue
            if e["kind"] not in NUMERIC:
                continue
            if e["kind"] == "lab":
                facts = run_facts(e)
                kept = {k: str(e[k]) for k in facts}
                if kept != {k: str(v) for k, v in facts.items()}:
                    bad.append(f"claim {c['id']}, evidence {i}: the register keeps {kept} but the saved run "
                               f"{e['run']} is {facts}: re-read the run and update the register")
            got = recompute(e) * float(e.get("scale", 1))
            if not agrees(e["value"], got):
                bad.append(Mismatch(c["id"], i, e["value"], got))
    return bad


# ---------------------------------------------------------------- where a learner can see it

CALC_METHODS = ("lora", "dora", "qlora", "adalora", "prompt", "prefix", "houlsby")   # the calculator's names too


def calculator_inputs(e: dict) -> dict | None:
    """labs.budget.estimate keyword arguments that show this evidence in the calculator (None: it cannot)."""
    if e["kind"] == "calculator":
        return dict(e["inputs"])
    if e["kind"] != "methods" or e["model"] == "tiny" or e["method"] not in CALC_METHODS:
        return None
    cfg, method = e.get("cfg", {}), e["method"]
    out = {"model": e["model"], "method": method}
    if method in ("lora", "dora", "qlora", "adalora"):
        out["rank"] = cfg.get("r", cfg.get("init_r", 8))
        tm = cfg.get("target_modules", "all-linear")
        out["targets"] = tm if isinstance(tm, str) else ",".join(tm)
    elif method in ("prompt", "prefix"):
        out["n_tokens"] = cfg.get("num_virtual_tokens", 20)
    else:
        out["adapter_size"] = cfg.get("bottleneck", 64)
    return out


def lab_params(e: dict) -> dict:
    """The saved run's settings that the lab's panel takes as parameters (a link can prefill them)."""
    from labs.experiments import get_lab
    config = saved_run(e["run"]).get("config") or {}
    names = {p.name for p in get_lab(e["lab"]).params}
    return {k: v for k, v in config.items() if k in names and isinstance(v, (int, float, str, bool))}
