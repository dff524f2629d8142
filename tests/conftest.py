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

import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))
