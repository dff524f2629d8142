"""The Triton twins, run for real on CPU by Triton's interpreter (TRITON_INTERPRET=1).

The interpreter must be switched on before triton is first imported, and bitsandbytes imports triton
as soon as it loads, so the cases run in a fresh subprocess (`_triton_cases.py`), one JSON line each.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

HERE = Path(__file__).parent
CASES = ["dispatch_is_forced", "quantize_dequantize_nf4", "quantize_dequantize_fp4", "quantize_dequantize_int4",
         "ties_on_midpoints", "fused_matmul_4bit", "fused_lora_forward_backward"]


@pytest.fixture(scope="module")
def results():
    env = dict(os.environ, TRITON_INTERPRET="1", PEFTLAB_FORCE_TRITON="1")
    proc = subprocess.run([sys.executable, str(HERE / "_triton_cases.py"), *CASES], env=env,
                          capture_output=True, text=True, timeout=600, cwd=HERE.parent.parent)
    out = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            rec = json.loads(line)
            out[rec["case"]] = rec
    if not out:
        pytest.fail(f"the interpreter run produced no results (rc={proc.returncode}):\n{proc.stderr[-3000:]}")
    return out


@pytest.mark.parametrize("case", CASES)
def test_triton_twin(results, case):
    assert case in results, f"case {case} did not report (crashed before it?)"
    assert results[case]["ok"], results[case]["msg"]
