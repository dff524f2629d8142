"""Load check (a benchmark, not a test): 20 browser sessions use the app while a lab runs.

    .venv/bin/python bench/load.py [--sessions 20] [--rounds 3]

Starts its own server on a free port with a throwaway data folder, submits a real lab (full-ft,
quick) through the lab engine, then opens N Chromium pages at once; each visits every page and
changes a calculator input, for R rounds. For every visit it records the time from navigation (or
input change) until Streamlit reports the script idle, and prints p50/p95/max per page and overall,
plus whether the lab kept running and finished. Nothing here sleeps to wait: it waits on the app's
own script state.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser.conftest import ARGS, CHROMIUM, IDLE_JS, start_server  # noqa: E402

PAGES = ["", "lora", "nf4", "qlora", "dora", "adalora", "soft-prompts", "adapters", "serving",
         "calculator", "decision-guide", "flashcards", "quiz", "interview", "progress"]


async def idle(pg) -> None:
    await pg.wait_for_function(IDLE_JS, timeout=300_000, polling=100)


async def session(browser, url: str, rounds: int, times: list, errors: list, k: int, pages: list,
                  deadline: float) -> None:
    ctx = await browser.new_context(viewport={"width": 1200, "height": 900})
    pg = await ctx.new_page()
    for r in range(rounds):
        for name in pages[k % len(pages):] + pages[:k % len(pages)]:  # sessions start on different pages
            if time.perf_counter() > deadline:
                break
            t0 = time.perf_counter()
            try:
                await pg.goto(f"{url}/{name}", timeout=300_000)
                await idle(pg)
                times.append((name or "home", time.perf_counter() - t0))
                if await pg.locator('[data-testid="stException"]').count():
                    errors.append(f"exception box on /{name}")
                if name == "calculator":
                    box = pg.locator('[data-testid="stSidebar"] input[type="number"]').first
                    t0 = time.perf_counter()
                    await box.fill(str(8 + r))
                    await box.press("Enter")
                    await idle(pg)
                    times.append(("calculator-input", time.perf_counter() - t0))
            except Exception as exc:  # a timeout is a finding, not a crash of the benchmark
                errors.append(f"/{name}: {type(exc).__name__}: {str(exc)[:120]}")
    await ctx.close()


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


async def main(n: int, rounds: int, pages: list | None = None, max_seconds: float = 1e9) -> dict:
    from playwright.async_api import async_playwright

    data = Path(tempfile.mkdtemp(prefix="peftlab-load-"))
    proc, url = start_server(data)
    import os
    os.environ["PEFTLAB_DATA_DIR"] = str(data)
    from labs import jobs

    rid = jobs.submit("full-ft", {"task": "facts"}, quick=True)
    times: list = []
    errors: list = []
    t0 = time.perf_counter()
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            deadline = time.perf_counter() + max_seconds   # visits stop starting after this; partial stats
            await asyncio.gather(*(session(browser, url, rounds, times, errors, k, pages or PAGES, deadline)
                                   for k in range(n)))
            await browser.close()
        during = jobs.get_run(rid).status
        while jobs.get_run(rid).status in ("queued", "running"):
            time.sleep(0.5)
        run = jobs.get_run(rid)
    finally:
        proc.terminate()
    by_page: dict[str, list[float]] = {}
    for name, dt in times:
        by_page.setdefault(name, []).append(dt)
    allt = [dt for _, dt in times]
    return {
        "sessions": n, "rounds": rounds, "visits": len(times), "wall_seconds": time.perf_counter() - t0,
        "p50": statistics.median(allt) if allt else None, "p95": pct(allt, 0.95) if allt else None,
        "max": max(allt) if allt else None, "errors": errors,
        "per_page": {k: {"p50": statistics.median(v), "p95": pct(v, 0.95), "n": len(v)} for k, v in by_page.items()},
        "lab": {"status_while_browsing": during, "final_status": run.status, "error": run.error,
                "accuracy": (run.result or {}).get("final", {}).get("eval_accuracy")},
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--pages", default=None, help="comma list of url paths (default: every page; '' = home)")
    ap.add_argument("--max-seconds", type=float, default=1e9, help="stop starting new visits after this")
    a = ap.parse_args()
    pages = None if a.pages is None else [p.strip() for p in a.pages.split(",")]
    res = asyncio.run(main(a.sessions, a.rounds, pages, a.max_seconds))
    print(f"{res['sessions']} sessions × {res['rounds']} round(s): {res['visits']} page visits in "
          f"{res['wall_seconds']:.0f} s; time to idle p50 {res['p50']:.2f} s, p95 {res['p95']:.2f} s, "
          f"max {res['max']:.2f} s; errors: {len(res['errors'])}; lab {res['lab']['final_status']}")
    for k, v in sorted(res["per_page"].items()):
        print(f"  {k:18s} p50 {v['p50']:6.2f} s  p95 {v['p95']:6.2f} s  (n={v['n']})")
    print(json.dumps(res))
