"""Suite-wide setup: the repo root on sys.path, a throwaway data folder, two torch threads."""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Never write into the learner's real ./data from a test run.
os.environ.setdefault("PEFTLAB_DATA_DIR", tempfile.mkdtemp(prefix="peftlab-test-data-"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from labs.device import configure_threads  # noqa: E402

configure_threads()  # the free cores, not more: oversubscribed threads make every test many times slower


import pytest  # noqa: E402

FSDP_TINY = {"methods": "full+lora", "steps": 3, "batch_size": 4, "world_size": 2, "r": 4}   # = fsdp's Lab.tiny


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """`tiny_run(lab_id)` → (result, events, out_dir) of `run_lab(lab_id, Lab.tiny)`, run once per test session and
    shared by the lab contract suite (tests/labs/test_lab_contract.py), each lab's own tests and the page tests."""
    from labs.experiments import Context, get_lab, run_lab

    runs = {}

    def get(lab_id: str):
        if lab_id not in runs:
            events, out = [], tmp_path_factory.mktemp(f"tiny-{lab_id}")
            res = run_lab(lab_id, get_lab(lab_id).tiny, ctx=Context(emit=events.append, out_dir=str(out)))
            runs[lab_id] = (res, events, out)
        return runs[lab_id]

    return get


def shared_tiny_run(lab_id: str, fields: int = 3):
    """A module fixture for a lab's own tests: the first ``fields`` of the session's tiny run of ``lab_id``
    (result, events, out_dir), e.g. ``ran = shared_tiny_run("adapters", 2)``."""

    @pytest.fixture(scope="module")
    def fixture(tiny_run):
        return tiny_run(lab_id)[:fields]

    return fixture


@pytest.fixture(scope="session")
def fsdp_tiny_run(tiny_run):
    """One small run of lab `fsdp` (2 ranks, full FT + LoRA, 3 steps), shared by its lab test, the calculator's
    agreement test and the page test: (result, events)."""
    res, events, _ = tiny_run("fsdp")
    return res, events
