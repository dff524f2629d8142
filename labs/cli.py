"""`python -m labs`: every lab, the pretraining and the calculator from a terminal.

    python -m labs list
    python -m labs run full-ft --task sentiment --quick [--json] [--steps 100 --lr 3e-4 ...]
    python -m labs pretrain [--out DIR] [--steps N]
    python -m labs budget ...          (the VRAM calculator, see `python -m labs budget --help`)
    python -m labs compare [--quick]   (every method on one task: the measured trade-off table)
    python -m labs drill list|show|starter|solution|check   (coding drills, see labs/drills/cli.py)

Bad arguments exit with status 2 and a message naming the argument and its allowed range.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from labs.params import ParamError


class ArgError(Exception):
    pass


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def _parse_lab_args(extra: list[str]) -> dict:
    """``--name value`` / ``--name=value`` pairs → {name: value}; dashes become underscores."""
    values, i = {}, 0
    while i < len(extra):
        arg = extra[i]
        if not arg.startswith("--") or arg == "--":
            raise ArgError(f"unexpected argument {arg!r}: lab parameters are given as --name value")
        if "=" in arg:
            name, val = arg[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(extra):
                raise ArgError(f"argument {arg} needs a value")
            name, val = arg[2:], extra[i + 1]
            i += 2
        values[name.replace("-", "_")] = val
    return values


class Progress:
    """A one-line progress bar on stderr when it is a terminal; silent otherwise."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()
        self.total = 0
        self.last_eval = ""

    def __call__(self, e: dict) -> None:
        if not self.enabled:
            return
        if e.get("type") == "start":
            self.total = e.get("steps", 0)
        elif e.get("type") == "eval" and "eval_accuracy" in e:
            self.last_eval = f" acc {e['eval_accuracy']:.3f}"
        elif e.get("type") == "step" and self.total:
            done = e["step"] / self.total
            bar = "█" * int(30 * done) + "·" * (30 - int(30 * done))
            sys.stderr.write(f"\r{bar} {e['step']}/{self.total} loss {e['loss']:.3f}{self.last_eval}"
                             f" {e.get('tokens_per_s', 0):.0f} tok/s eta {e.get('eta', 0):.0f}s ")
            sys.stderr.flush()
        elif e.get("type") == "end":
            sys.stderr.write("\n")


def _jsonable(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def cmd_list(args) -> int:
    from labs.experiments import get_lab, lab_ids

    for lab_id in lab_ids():
        lab = get_lab(lab_id)
        print(f"{lab_id:14s} {lab.title['en']}")
        for p in lab.params:
            print(f"    --{p.name.replace('_', '-'):18s} default {p.default!s:10s} {p.allowed()}  {p.help}")
    return 0


def cmd_run(args, extra: list[str]) -> int:
    from labs.experiments import Context, lab_ids, run_lab

    if args.lab not in lab_ids():
        return _fail(f"lab = {args.lab!r} is unknown: allowed {', '.join(lab_ids())}")
    try:
        values = _parse_lab_args(extra)
    except ArgError as err:
        return _fail(str(err))
    progress = Progress(enabled=True)
    t0 = time.perf_counter()
    try:
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
        result = run_lab(args.lab, values, quick=args.quick,
                         ctx=Context(emit=progress, device=args.device, out_dir=args.out))
    except ParamError as err:
        return _fail(f"--{err.field.replace('_', '-')}: {err}")
    result["seconds"] = time.perf_counter() - t0
    result.setdefault("quick", args.quick)
    if args.json:
        full = _jsonable(result)
        if not args.history:
            full.pop("history", None)
        print(json.dumps(full))
    else:
        _print_summary(result)
    return 0


def _print_summary(r: dict) -> None:
    print(f"lab {r['lab']}  task {r.get('task', '-')}  device {r.get('device', '-')}  {r['seconds']:.1f}s")
    if "trainable_params" in r:
        print(f"trainable {r['trainable_params']:,} / {r['total_params']:,} params "
              f"({100 * r['trainable_params'] / r['total_params']:.3f}%)")
    for key in ("base", "final"):
        if isinstance(r.get(key), dict):
            print(f"{key:6s} eval loss {r[key]['eval_loss']:.4f}  accuracy {r[key]['eval_accuracy']:.3f}")
    for group in ("methods", "variants", "runs"):          # labs that train several variants: one row each
        rows = r.get(group)
        if isinstance(rows, dict) and all(isinstance(v, dict) and "final" in v for v in rows.values()):
            for name, v in rows.items():
                print(f"{name:14s} trainable {v.get('trainable_params', 0):>11,}  accuracy "
                      f"{v['base']['eval_accuracy']:.3f} -> {v['final']['eval_accuracy']:.3f}  eval loss "
                      f"{v['final']['eval_loss']:.4f}")


def cmd_pretrain(args) -> int:
    from pathlib import Path

    from labs.pretrain import BASE_DIR, PretrainConfig, pretrain

    if args.steps is not None and not 1 <= args.steps <= 100000:
        return _fail(f"--steps = {args.steps} is out of range: allowed 1..100000")
    cfg = PretrainConfig(**({"steps": args.steps} if args.steps else {}))
    out = Path(args.out) if args.out else BASE_DIR
    record = pretrain(cfg, out_dir=out)
    from labs.pretrain import write_readme
    write_readme(out, record)
    print(json.dumps({k: v for k, v in record.items() if k != "history"}))
    return 0


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors: also exit 2, with the usage line
        self.print_usage(sys.stderr)
        self.exit(2, f"error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m labs", description="PEFT Lab from a terminal: labs, pretraining, budgets.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="list labs and their parameters")
    run = sub.add_parser("run", help="run one lab (its parameters as --name value; see `list`)")
    run.add_argument("lab", help="lab id, e.g. full-ft")
    run.add_argument("--quick", action="store_true", help="the CPU default: finishes in about a minute")
    run.add_argument("--json", action="store_true", help="print one JSON object with the result")
    run.add_argument("--history", action="store_true", help="with --json: include every step event")
    run.add_argument("--device", choices=("cpu", "cuda"), default=None, help="force a device")
    run.add_argument("--out", default=None, help="folder for the run's artifacts (e.g. adapter/ in PEFT format)")
    pre = sub.add_parser("pretrain", help="train the bundled base model from scratch (deterministic)")
    pre.add_argument("--out", default=None, help="output folder (default: labs/base_model)")
    pre.add_argument("--steps", type=int, default=None, help="optimizer steps (default: the recorded run's)")
    from labs.budget import cli as budget_cli

    budget_cli.register(sub)
    from labs.drills import cli as drill_cli

    drill_cli.register(sub)
    from labs import compare_cli

    compare_cli.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["drill"]:  # before build_parser: a check starts its sandbox before anything imports torch
        from labs.drills.cli import main as drill_main
        return drill_main(argv[1:])
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "run":
        return cmd_run(args, extra)
    if extra:
        return _fail(f"unexpected argument {extra[0]!r} for `{args.command}`")
    if args.command == "list":
        return cmd_list(args)
    if args.command == "pretrain":
        return cmd_pretrain(args)
    if hasattr(args, "func"):
        return args.func(args)
    parser.print_help()
    return 2
