"""`python -m labs`: help, exit codes, and a real (short) run with one JSON object on stdout."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def cli(*args, timeout=240):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "labs", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=timeout)


def test_help_lists_commands():
    out = cli("--help")
    assert out.returncode == 0
    for word in ("run", "list", "pretrain"):
        assert word in out.stdout


@pytest.mark.parametrize("args, needle", [
    (("run", "nope"), "lab = 'nope' is unknown"),
    (("run", "full-ft", "--steps", "0"), "--steps"),
    (("run", "full-ft", "--steps", "abc"), "--steps"),
    (("run", "full-ft", "--lr", "nan"), "--lr"),
    (("run", "full-ft", "--task", "poetry"), "--task"),
    (("run", "full-ft", "--bogus", "1"), "bogus"),
    (("run", "full-ft", "--steps"), "needs a value"),
    (("frobnicate",), "invalid choice"),
    (("pretrain", "--steps", "-3"), "--steps"),
])
def test_bad_arguments_exit_2_naming_the_argument(args, needle):
    out = cli(*args)
    assert out.returncode == 2, out.stderr
    assert needle in out.stderr
    assert "Traceback" not in out.stderr


def test_range_message_says_what_is_allowed():
    out = cli("run", "full-ft", "--steps", "100000")
    assert out.returncode == 2 and "allowed 1..400" in out.stderr


def test_short_run_prints_one_json_object():
    out = cli("run", "full-ft", "--task", "facts", "--steps", "3", "--batch-size", "4", "--json")
    assert out.returncode == 0, out.stderr
    lines = [ln for ln in out.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1
    r = json.loads(lines[0])
    for key in ("lab", "task", "device", "seconds", "trainable_params", "total_params"):
        assert key in r
    assert r["lab"] == "full-ft" and r["task"] == "facts" and r["device"] == "cpu"
    assert r["trainable_params"] == r["total_params"]
    assert set(r["base"]) >= {"eval_accuracy", "eval_loss"}
    assert set(r["final"]) >= {"eval_accuracy", "eval_loss"}


def test_list_shows_labs_and_ranges():
    out = cli("list")
    assert out.returncode == 0 and "full-ft" in out.stdout and "1..400" in out.stdout
