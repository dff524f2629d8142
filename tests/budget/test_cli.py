"""The CLI contract: one JSON object with the agreed keys; exit code 2 naming the bad argument."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from labs.budget import estimate
from labs.budget.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_json_contract(capsys):
    argv = ["--model", "llama-2-13b", "--method", "lora", "--rank", "8", "--targets", "q_proj,v_proj",
            "--precision", "bf16-mixed", "--optimizer", "adamw", "--checkpointing", "full", "--batch", "2",
            "--seq", "1024", "--gpus", "2", "--zero", "3", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    for k in ("weights", "gradients", "optimizer", "activations", "other", "total"):
        assert isinstance(out["memory_bytes"][k], int)
    assert out["total_params"] == 13_015_864_320
    assert out["trainable_params"] == 40 * 2 * 8 * (5120 + 5120)
    same = estimate("llama-2-13b", "lora", rank=8, targets="q_proj,v_proj", batch=2, seq=1024, gpus=2, zero=3)
    assert out["memory_bytes"] == same["memory_bytes"]


@pytest.mark.parametrize("argv,needle", [
    (["--rank", "0"], "--rank"), (["--batch", "-1"], "--batch"), (["--seq", "0"], "--seq"),
    (["--model", "nope"], "--model"), (["--method", "foo"], "--method"), (["--zero", "7"], "--zero"),
    (["--rank", "99999"], "allowed 1..4096"),
])
def test_bad_args_exit_2(argv, needle, capsys):
    with pytest.raises(SystemExit) as e:
        code = main(argv)
        raise SystemExit(code)
    assert e.value.code == 2
    assert needle in capsys.readouterr().err


def test_standalone_module_runs():
    p = subprocess.run([sys.executable, "-m", "labs.budget.cli", "--model", "qwen2.5-7b", "--method", "qlora",
                        "--json"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["total_params"] == 7_615_616_512
