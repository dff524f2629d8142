"""check(drill_id, code) -> Report: start the sandbox, build fresh cases, run, grade.

The sandbox is started FIRST (its child spends ~1 s importing torch) and the cases are built while it
starts, so a cold check costs about one torch import, not two in a row. The expected values never leave
this process; the sandbox only receives the inputs.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from labs.drills import get_drill
from labs.drills.sandbox import Outcome, Sandbox, SandboxUnavailable


@dataclass
class Report:
    drill: str
    passed: bool
    tests: list                       # grading.TestResult
    seconds: float
    seed: int | None
    status: str                       # ok | refused | timeout | memory | output | crashed | import_error | ...
    message: str = ""                 # the whole-run verdict when the tests could not run
    output: str = ""                  # what the submission printed (capped)
    perf: dict = field(default_factory=dict)
    sandbox_cpu_s: float | None = None   # CPU the sandboxed process used (its torch import included)

    def to_dict(self) -> dict:
        return {"drill": self.drill, "passed": self.passed, "tests": [t.to_dict() for t in self.tests],
                "seconds": round(self.seconds, 3), "seed": self.seed, "status": self.status,
                "message": self.message, "output": self.output, "perf": self.perf,
                "sandbox_cpu_s": self.sandbox_cpu_s}


MAX_CODE_BYTES = 256 * 1024                  # a drill answer is a few KB; the page has no other cap

VERDICTS = {
    "timeout": ("time limit", "超时"), "cpu": ("CPU limit", "CPU 时间超限"), "memory": ("memory limit", "内存超限"),
    "output": ("output limit", "输出超限"), "crashed": ("crashed", "进程崩溃"), "protocol": ("bad result", "结果无效"),
    "import_error": ("the file does not import", "文件无法导入"), "refused": ("not run", "未运行"),
}


def run_trusted(code: str, wire_cases: list[dict]) -> Outcome:
    """Our OWN code only (tests of the graders' wrong-implementation tables): the harness's call logic in this
    process, results round-tripped through the wire format exactly as the sandbox returns them."""
    from labs.drills import child

    ns: dict = {"__name__": "solution"}
    t0 = time.perf_counter()
    try:
        exec(compile(code, "solution.py", "exec"), ns)
    except Exception as exc:  # noqa: BLE001
        return Outcome("import_error", f"{type(exc).__name__}: {exc}")
    results = []
    for case in child.decode(child.encode({"cases": wire_cases}))["cases"]:
        fn = ns.get(case["fn"])
        if not callable(fn):
            results.append({"error": f"the file defines no function {case['fn']}()"})
            continue
        try:
            results.append(child.call_case(fn, case))
        except Exception as exc:  # noqa: BLE001
            import traceback
            results.append({"error": "".join(traceback.format_exception_only(type(exc), exc))})
    return Outcome("ok", results=child.decode(child.encode(results)), seconds=time.perf_counter() - t0)


def check(drill_id: str, code: str, lang: str = "en", seed: int | None = None, sandbox: Sandbox | None = None,
          runner=None) -> Report:
    """Grade `code` for drill `drill_id`. `sandbox`: one already started (warm); `runner`: tests only."""
    t0 = time.perf_counter()
    drill = get_drill(drill_id)
    if len(code.encode("utf-8", "replace")) > MAX_CODE_BYTES:
        if sandbox is not None:
            sandbox.kill()
        return Report(drill_id, False, [], time.perf_counter() - t0, None, "refused",
                      f"code = {len(code.encode('utf-8', 'replace'))} bytes: allowed at most {MAX_CODE_BYTES}")
    if runner is None:
        try:
            sandbox = sandbox or Sandbox()
        except SandboxUnavailable as e:
            return Report(drill_id, False, [], time.perf_counter() - t0, None, "refused", str(e))
        runner = sandbox.run
    try:
        import torch

        from labs.drills.graders import builder, error_hints
        from labs.drills.grading import TestResult, grade_case

        seed = int.from_bytes(os.urandom(4), "little") if seed is None else seed
        cases = builder(drill.grader)(torch.Generator().manual_seed(seed))
        outcome = runner(code, [c.wire() for c in cases])
    except BaseException:
        if sandbox is not None:
            sandbox.kill()
        raise
    if outcome.status == "ok" and len(outcome.results) != len(cases):
        outcome = Outcome("protocol", f"expected {len(cases)} results, got {len(outcome.results)}",
                          output=outcome.output)
    if outcome.status != "ok":
        en, zh = VERDICTS.get(outcome.status, (outcome.status, outcome.status))
        msg = f"{zh if lang == 'zh' else en}: {outcome.message}"
        tests = [TestResult(c.name, False, msg) for c in cases]
        return Report(drill_id, False, tests, time.perf_counter() - t0, seed, outcome.status, msg, outcome.output)
    hints = error_hints(drill.grader)
    tests = [grade_case(c, r if isinstance(r, dict) else {"error": f"bad result {r!r:.80}"}, lang, hints)
             for c, r in zip(cases, outcome.results)]
    perf = _perf(cases, tests) if drill.perf and all(t.passed for t in tests) else {}
    return Report(drill_id, all(t.passed for t in tests), tests, time.perf_counter() - t0, seed, "ok", "",
                  outcome.output, perf, outcome.cpu_s)


def _perf(cases, tests) -> dict:
    """Kernel drills: the submission's best time on the timed case next to our reference on the same input
    (both single-threaded; shown, never required)."""
    import torch

    out = {}
    for c, t in zip(cases, tests):
        if c.repeat > 1 and c.timer is not None and t.seconds:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                best = float("inf")
                for _ in range(c.repeat):
                    t0 = time.perf_counter()
                    c.timer()
                    best = min(best, time.perf_counter() - t0)
            finally:
                torch.set_num_threads(threads)
            out = {"case": c.name, "yours_ms": 1e3 * t.seconds, "reference_ms": 1e3 * best,
                   "ratio": t.seconds / best if best > 0 else None}
    return out
