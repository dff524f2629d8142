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
