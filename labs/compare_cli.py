"""`python -m labs compare`: run the trade-off table (labs.compare) and print it as text or JSON."""
from __future__ import annotations

import argparse
import json
import sys

from labs.compare import QUICK, ROOT, CompareConfig, run_compare, save


def config_from_args(args) -> CompareConfig:
    kw = {"task": args.task, **(QUICK if args.quick else {})}
    if args.steps is not None:
        kw["steps"] = args.steps
    if args.device:
        kw["device"] = args.device
    return CompareConfig(**kw)


def render(r: dict) -> str:
    lines = [f"compare · task {r['task']} · {r['device_name']} · {r['config']['steps']} steps · "
             f"{r['seconds']:.0f} s wall, {r['cpu_seconds']:.0f} s CPU",
             f"{'method':16s} {'lr':>7s} {'trainable':>10s} {'%':>8s} {'mem KiB':>9s} {'saving':>7s} "
             f"{'s/step':>7s} {'cpu/stp':>7s} {'ms/tok':>7s} {'overhd':>7s} {'acc':>6s} {'vs full':>7s} {'lines':>6s}"]
    for row in r["rows"]:
        lines.append(f"{row['label']:16s} {row['lr']:7.0e} {row['trainable_params']:10,d} "
                     f"{row['trainable_percent']:8.3f} {row['memory']['total'] / 1024:9.0f} "
                     f"{100 * row['memory_saving_vs_full']:6.1f}% {row['seconds_per_step']:7.3f} "
                     f"{row['cpu_seconds_per_step']:7.3f} {row['latency']['ms_per_token']:7.2f} "
                     f"{100 * row['latency']['overhead_vs_base']:6.1f}% {row['accuracy']:6.3f} "
                     f"{100 * (row['accuracy_vs_full'] or 0):6.1f}% "
                     f"{row['code_lines']['method'] + row['code_lines']['kernels']:6d}")
    return "\n".join(lines)


def cmd(args) -> int:
    from labs.device import configure_threads
    from labs.tasks import TASKS

    if args.task not in TASKS:
        print(f"error: --task = {args.task!r} is unknown: allowed {', '.join(TASKS)}", file=sys.stderr)
        return 2
    if args.steps is not None and not 4 <= args.steps <= 5000:
        print(f"error: --steps = {args.steps} is out of range: allowed 4..5000", file=sys.stderr)
        return 2
    configure_threads()
    result = run_compare(config_from_args(args))
    if args.save:
        result["saved_to"] = str(save(result).relative_to(ROOT))
    print(json.dumps(result) if args.json else render(result))
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    """Add `compare` to `python -m labs` (called by labs/cli.py)."""
    p = subparsers.add_parser("compare", help="every method on one task and budget: the measured trade-off table")
    p.add_argument("--task", default="facts", help="fine-tuning task (default facts; see `python -m labs list`)")
    p.add_argument("--quick", action="store_true", help=f"the CPU default: {QUICK} (about 10 minutes on 2 cores)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps, the same for every method (4..5000)")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="force a device")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--save", action="store_true", help="write the result to labs/data/compare/<task>.json")
    p.set_defaults(func=cmd)
    return p
