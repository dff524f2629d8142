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

FSDP_TINY = {"methods": "full+lora", "steps": 3, "batch_size": 4, "world_size": 2, "r": 4}


@pytest.fixture(scope="session")
def fsdp_tiny_run():
    """One small run of lab `fsdp` (2 ranks, full FT + LoRA, 3 steps), shared by its lab test, the calculator's
    agreement test and the page test: (result, events)."""
    from labs.experiments import Context, run_lab

    events = []
    return run_lab("fsdp", FSDP_TINY, ctx=Context(emit=events.append)), events
