"""The lab catalog: one module per lab, each defining ``LAB = Lab(...)``.

A lab is a function ``run(params, ctx) -> dict`` plus the specs of its parameters. The CLI
(``python -m labs run <id>``), the app's worker process and the tests all go through ``get_lab``.
"""
from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

from labs.params import Param, validate

# lab id -> module under labs.experiments. A lab whose module is not there yet is simply not listed.
_ALL = {
    "full-ft": "full_ft",
    "lora": "lora",
    "nf4": "nf4",
    "qlora": "qlora",
    "dora": "dora",
    "adalora": "adalora",
    "soft-prompts": "soft_prompts",
    "adapters": "adapters",
    "serving": "serving",
    "minilm-cls": "minilm_cls",
    "selftest": "selftest",
    "compare": "compare",
    "merging": "merging",
    "landscape": "landscape",
    "fsdp": "fsdp",
}
_HERE = __import__("pathlib").Path(__file__).resolve().parent
MODULES = {lab: mod for lab, mod in _ALL.items() if (_HERE / f"{mod}.py").exists()}
LAB_TEXT = _HERE.parents[1] / "content" / "labs.yaml"      # every lab's title and summary, zh + en


@functools.lru_cache(maxsize=1)
def _lab_text() -> dict:
    import yaml

    return yaml.safe_load(LAB_TEXT.read_text(encoding="utf-8")) or {}


@dataclass
class Context:
    """What a running lab may use: report events, learn that it should stop, know its device."""
    emit: Callable[[dict], None] = lambda event: None
    should_stop: Callable[[], bool] = lambda: False
    device: str | None = None
    out_dir: str | None = None       # where a lab may write artifacts (adapters) for download

    def stage_ticker(self, stages: int) -> Callable[[str], None]:
        """For a lab made of a few long stages rather than training steps: `tick(name)` after each
        stage emits a progress event (ETA from the mean stage time so far) and raises Cancelled
        when the lab was asked to stop."""
        import time

        from labs.train import Cancelled

        t0, done = time.perf_counter(), [0]

        def tick(stage: str) -> None:
            if self.should_stop():
                raise Cancelled(f"cancelled during {stage}")
            done[0] += 1
            el = time.perf_counter() - t0
            self.emit({"type": "step", "step": done[0], "stage": stage, "progress": done[0] / stages,
                       "elapsed": el, "eta": el / done[0] * (stages - done[0])})

        return tick


@dataclass
class Lab:
    id: str
    params: list[Param]
    run: Callable[[dict, Context], dict]
    quick: dict = field(default_factory=dict)   # overrides applied by --quick (the CPU default)
    tiny: dict = field(default_factory=dict)    # the smallest run through every stage: the contract tests' config
    hidden: bool = False                        # not offered on pages (engine self-test)
    title: dict | None = None                   # {en, zh}; None: content/labs.yaml's entry for this id
    summary: dict | None = None                 # {en, zh}; None: content/labs.yaml's entry for this id

    def __post_init__(self):
        text = _lab_text().get(self.id, {})
        for key in ("title", "summary"):
            if getattr(self, key) is None:
                value = text.get(key)
                if not (isinstance(value, dict) and all(isinstance(value.get(lg), str) for lg in ("en", "zh"))):
                    raise ValueError(f"{LAB_TEXT.name}: lab {self.id!r}: field {key}: need {{en: ..., zh: ...}}")
                setattr(self, key, value)

    def validate(self, values: dict | None, quick: bool = False, on_gpu: bool = False) -> dict:
        merged = {**(self.quick if quick else {}), **(values or {})}
        return validate(self.params, merged, on_gpu=on_gpu)


def lab_ids(include_hidden: bool = True) -> list[str]:
    return [i for i in MODULES if include_hidden or not get_lab(i).hidden]


def get_lab(lab_id: str) -> Lab:
    if lab_id not in MODULES:
        raise KeyError(f"lab = {lab_id!r} is unknown: allowed {', '.join(MODULES)}")
    return importlib.import_module(f"labs.experiments.{MODULES[lab_id]}").LAB


def run_lab(lab_id: str, values: dict | None = None, quick: bool = False, ctx: Context | None = None) -> dict:
    """Validate ``values`` and run the lab; the result always carries ``lab`` and ``params``."""
    lab = get_lab(lab_id)
    from labs.device import configure_threads, pick_device

    ctx = ctx or Context()
    threads = configure_threads()
    params = lab.validate(values, quick=quick, on_gpu=pick_device(ctx.device).type == "cuda")
    result: dict[str, Any] = lab.run(params, ctx)
    return {"lab": lab_id, "params": params, "torch_threads": threads, **result}
