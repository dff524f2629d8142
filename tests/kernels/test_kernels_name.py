"""Our top-level `kernels/` shadows the hub library `kernels` (pip) that bitsandbytes and transformers
probe for. With the repo on sys.path, both must behave exactly as when no `kernels` exists at all:
hub kernels off, no traceback, no extra console output, and our package still ours afterwards."""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("bitsandbytes")
pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[2]
PROBE = r"""
import json, sys, warnings
import torch, bitsandbytes, transformers
from transformers.utils import is_kernels_available
from transformers import LlamaConfig, LlamaForCausalLM
cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                  num_attention_heads=4, num_key_value_heads=2)
model = LlamaForCausalLM(cfg)
logits = model(torch.zeros(1, 4, dtype=torch.long)).logits
x = torch.randn(4, 64)
p, st = bitsandbytes.functional.quantize_4bit(x, quant_type="nf4")
ok_bnb = bool((bitsandbytes.functional.dequantize_4bit(p, st) - x).abs().max() < 0.2 * x.abs().max())
mod = sys.modules.get("kernels")
print(json.dumps({"hub": bool(is_kernels_available()), "finite": bool(torch.isfinite(logits).all()),
                  "bnb_ok": bool(ok_bnb), "kernels_file": getattr(mod, "__file__", None)}))
"""


def _run(cwd, with_repo: bool):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TRITON_INTERPRET")}
    if with_repo:
        env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


@pytest.fixture(scope="module")
def runs():
    with tempfile.TemporaryDirectory() as bare:
        return _run(ROOT, with_repo=True), _run(bare, with_repo=False)


def test_hub_kernels_stay_off_and_libraries_work(runs):
    (ours, _), (bare, _) = runs
    assert ours["hub"] is False and bare["hub"] is False
    assert ours["finite"] and ours["bnb_ok"]


def test_no_traceback_and_no_extra_console_output(runs):
    (_, err_ours), (_, err_bare) = runs
    assert "Traceback" not in err_ours
    lines_ours = [ln for ln in err_ours.splitlines() if ln.strip()]
    lines_bare = [ln for ln in err_bare.splitlines() if ln.strip()]
    assert len(lines_ours) <= len(lines_bare), f"extra output with our package:\n{err_ours}"


def test_our_package_is_still_ours_and_says_so():
    import kernels

    assert Path(kernels.__file__).resolve().parent == ROOT / "kernels"
    assert not hasattr(kernels, "__version__")          # transformers reads this to trust a `kernels`
    with pytest.raises(ImportError, match="PEFT Lab's local package"):
        from kernels import get_kernel  # noqa: F401
    from kernels.nf4 import quantize_nf4  # the real API still imports

    assert callable(quantize_nf4)
