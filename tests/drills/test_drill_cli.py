"""`python -m labs drill ...`: list/show/starter/solution/check, --json on the last line, exit codes 0/1/2.
One cold `check` runs end to end as a fresh process (the path the README times); the others call the CLI's
main() in this process (still through a real sandbox)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from labs.cli import main
from labs.drills import drill_ids, get_drill
from labs.drills.sandbox import ROOT, probe

needs_sandbox = pytest.mark.skipif(not probe()[0], reason=f"no sandbox here: {probe()[1]}")


def test_list_show_starter_solution(capsys):
    assert main(["drill", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["id"] for r in rows] == drill_ids() and len(rows) >= 14
    assert main(["drill", "show", "dora-forward", "--lang", "zh"]) == 0
    out = capsys.readouterr().out
    assert "范数" in out and "提示 1" in out
    assert main(["drill", "starter", "nf4-quantize"]) == 0
    assert capsys.readouterr().out == get_drill("nf4-quantize").starter()
    assert main(["drill", "solution", "lora-forward"]) == 0
    assert capsys.readouterr().out == get_drill("lora-forward").solution()


def test_bad_arguments_exit_2(tmp_path, capsys):
    assert main(["drill", "show", "no-such-drill"]) == 2
    assert "no-such-drill" in capsys.readouterr().err
    assert main(["drill", "check", "lora-forward", str(tmp_path / "missing.py")]) == 2
    assert "no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["drill", "show", "lora-forward", "--lang", "fr"])
    assert e.value.code == 2


@needs_sandbox
def test_cold_check_of_the_reference_exits_0_with_json_last(tmp_path):
    f = tmp_path / "lora.py"
    f.write_text(get_drill("lora-forward").solution())
    r = subprocess.run([sys.executable, "-m", "labs", "drill", "check", "lora-forward", str(f), "--json"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report["drill"] == "lora-forward" and report["passed"] is True and report["seconds"] > 0
    assert report["tests"] and all(set(t) >= {"name", "passed", "message"} and t["passed"] for t in report["tests"])
    assert "[PASS]" in r.stdout


@needs_sandbox
def test_failing_check_exits_1_and_names_the_mistake(tmp_path, capsys):
    f = tmp_path / "wrong.py"
    f.write_text(get_drill("lora-forward").solution().replace("alpha / math.sqrt(r) if use_rslora else alpha / r",
                                                              "alpha / r"))
    assert main(["drill", "check", "lora-forward", str(f), "--json", "--seed", "11"]) == 1
    out = capsys.readouterr().out
    report = json.loads(out.strip().splitlines()[-1])
    assert report["passed"] is False and report["seed"] == 11
    failed = [t for t in report["tests"] if not t["passed"]]
    assert failed and all("rsLoRA" in t["name"] for t in failed)
    assert all("off by √r" in t["message"] and "max abs error" in t["message"] for t in failed)
    assert "[FAIL]" in out
