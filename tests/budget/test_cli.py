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


def test_measure_without_cuda_is_a_clear_error(capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: --measure would run")
    assert main(["--model", "qwen2.5-0.5b", "--measure", "--json"]) == 2
    assert "--measure" in capsys.readouterr().err


def test_config_json_path(tmp_path, capsys):
    cfg = {"model_type": "llama", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 160,
           "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    assert main(["--model", str(path), "--method", "full", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    h, V, I, L, kd = 64, 1000, 160, 2, 32
    assert out["total_params"] == 2 * V * h + L * (2 * h * h + 2 * h * kd + 3 * h * I + 2 * h) + h
    path.write_text("{broken")
    assert main(["--model", str(path), "--json"]) == 2
    assert "--config" in capsys.readouterr().err
