"""How long a drill check takes: the CLI cold (a fresh `python -m labs drill check` process, torch imports and
sandbox start included) and the page path (a warm sandbox from labs.drills.pool, the grader already imported).

    .venv/bin/python bench/bench_drills.py [--runs 5] [--drill lora-forward]

Prints the median and every run, the CPU time of the CLI runs (user + sys of the CLI process plus what the
sandboxed child reports for itself)
and the load average before and after, because the box is shared.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cli_cold(drill: str, runs: int) -> tuple[list[float], list[float]]:
    from labs.drills import get_drill

    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(get_drill(drill).solution())
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "labs", "drill", "check", drill, f.name, "--json"], cwd=ROOT,
                           capture_output=True, text=True)
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        sandbox = json.loads(r.stdout.strip().splitlines()[-1]).get("sandbox_cpu_s") or 0.0   # bwrap does not
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime + sandbox)  # pass it up
        if r.returncode != 0:
            raise SystemExit(f"check failed: {r.stdout[-2000:]}{r.stderr[-2000:]}")
    os.unlink(f.name)
    return walls, cpus


def page_warm(drill: str, runs: int) -> list[float]:
    from labs.drills import get_drill
    from labs.drills.pool import pool
    from labs.drills.runner import check

    code = get_drill(drill).solution()
    p = pool()
    p.prewarm(get_drill(drill).grader)
    out = []
    for _ in range(runs + 1):                               # the first one warms the grader's imports
        time.sleep(3.0)                                     # a learner reads the report before the next Run
        t0 = time.perf_counter()
        report = check(drill, code, sandbox=p.take())
        out.append(time.perf_counter() - t0)
        assert report.passed, report.to_dict()
    return out[1:]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--drill", default="lora-forward")
    a = ap.parse_args()
    load0 = open("/proc/loadavg").read().split()[:3]
    walls, cpus = cli_cold(a.drill, a.runs)
    page = page_warm(a.drill, a.runs)
    load1 = open("/proc/loadavg").read().split()[:3]
    print(f"drill {a.drill}, {os.cpu_count()} CPUs, load average before {' '.join(load0)}, after {' '.join(load1)}")
    print(f"CLI cold check : median {statistics.median(walls):.2f} s wall  runs {' '.join(f'{w:.2f}' for w in walls)}"
          f"  CPU (user+sys, all processes) median {statistics.median(cpus):.2f} s")
    print(f"page check     : median {statistics.median(page):.2f} s wall  runs {' '.join(f'{w:.2f}' for w in page)}"
          "  (warm sandbox)")


if __name__ == "__main__":
    main()
