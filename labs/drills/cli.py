"""`python -m labs drill ...`: the terminal twin of the Drills page.

    python -m labs drill list [--json]
    python -m labs drill show ID [--lang zh|en]
    python -m labs drill starter ID          (prints the starter file)
    python -m labs drill solution ID         (prints the reference solution)
    python -m labs drill check ID FILE [--json] [--lang zh|en] [--seed N]

`check` prints one block per test; with --json the LAST line is one JSON object
{drill, passed, tests: [{name, passed, message}], seconds, seed, status, ...}.
Exit status: 0 all tests pass, 1 a test fails (or the sandbox refused to run the code), 2 bad arguments.
`labs.cli.main` dispatches here before building its own parser, so a check starts the sandbox before
anything imports torch.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from labs.drills import drill_ids, get_drill

class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(2, f"error: {message}\n")


def add_arguments(drill: argparse.ArgumentParser) -> None:
    sub = drill.add_subparsers(dest="drill_command", required=True, parser_class=_Parser)
    ls = sub.add_parser("list", help="every drill: id, topic, difficulty, title")
    ls.add_argument("--json", action="store_true")
    show = sub.add_parser("show", help="the statement, hints and links of one drill")
    show.add_argument("id")
    show.add_argument("--lang", choices=("en", "zh"), default="en")
    for name, text in (("starter", "print the starter file"), ("solution", "print the reference solution")):
        sub.add_parser(name, help=text).add_argument("id")
    chk = sub.add_parser("check", help="grade FILE in the sandbox against our reference")
    chk.add_argument("id")
    chk.add_argument("file")
    chk.add_argument("--json", action="store_true", help="last line: one JSON object")
    chk.add_argument("--lang", choices=("en", "zh"), default="en")
    chk.add_argument("--seed", type=int, default=None, help="repeat a run's random cases (default: fresh)")


def register(sub) -> None:
    """`drill` as a subcommand of `python -m labs` (for --help; main() dispatches before parsing)."""
    add_arguments(sub.add_parser("drill", help="coding drills graded against our reference (list/show/check)"))


def _known(drill_id: str) -> bool:
    if drill_id in drill_ids():
        return True
    print(f"error: drill = {drill_id!r} is unknown: allowed {', '.join(drill_ids())}", file=sys.stderr)
    return False


def cmd_list(args) -> int:
    rows = [get_drill(i) for i in drill_ids()]
    if args.json:
        print(json.dumps([{"id": d.id, "topic": d.topic, "difficulty": d.difficulty, "title": d.title,
                           "functions": list(d.functions), "page": d.page, "lab": d.lab} for d in rows],
                         ensure_ascii=False))
        return 0
    for d in rows:
        print(f"{d.id:22s} {d.topic:13s} {'★' * d.difficulty:3s} {d.title['en']}")
    return 0


def cmd_show(args) -> int:
    d, lg = get_drill(args.id), args.lang
    print(f"# {d.title[lg]}  ({d.id}, {'★' * d.difficulty})\n")
    print(d.statement[lg] + "\n")
    for i, h in enumerate(d.hints, 1):
        print(f"{'提示' if lg == 'zh' else 'Hint'} {i}: {h[lg]}")
    print(f"\n{'概念页' if lg == 'zh' else 'Concept page'}: /{d.page}" + (f"   lab: {d.lab}" if d.lab else "")
          + f"   cards: {', '.join(d.cards)}")
    print(f"python -m labs drill starter {d.id} > {d.functions[0]}.py && python -m labs drill check {d.id} "
          f"{d.functions[0]}.py")
    return 0


def cmd_check(args) -> int:
    from labs.drills.runner import MAX_CODE_BYTES
    from labs.drills.sandbox import Sandbox, SandboxUnavailable

    path = Path(args.file)
    if not path.is_file():
        print(f"error: FILE = {args.file!r}: no such file", file=sys.stderr)
        return 2
    if path.stat().st_size > MAX_CODE_BYTES:
        print(f"error: FILE = {args.file!r} is {path.stat().st_size} bytes: allowed at most {MAX_CODE_BYTES}",
              file=sys.stderr)
        return 2
    try:
        sandbox = Sandbox()                       # start now: its torch import overlaps ours
    except SandboxUnavailable:
        sandbox = None
    code = path.read_text(encoding="utf-8", errors="replace")
    from labs.drills.runner import check

    report = check(args.id, code, lang=args.lang, seed=args.seed, sandbox=sandbox)
    _print_report(report, args.lang)
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    return 0 if report.passed else 1


def _print_report(report, lang: str) -> None:
    zh = lang == "zh"
    if report.status == "refused":
        print(("未运行代码：" if zh else "not run: ") + report.message)
        return
    for t in report.tests:
        mark = "PASS" if t.passed else "FAIL"
        print(f"[{mark}] {t.name}")
        if not t.passed:
            print("       " + t.message.replace("\n", "\n       "))
    if report.output.strip():
        print(("你的代码输出：\n" if zh else "your code printed:\n") + report.output[-2000:])
    n_ok = sum(t.passed for t in report.tests)
    if report.perf:
        p = report.perf
        print(f"{'性能' if zh else 'performance'} ({p['case']}): {p['yours_ms']:.2f} ms vs "
              f"{'参考实现' if zh else 'reference'} {p['reference_ms']:.2f} ms = {p['ratio']:.2f}x")
    print(f"{report.drill}: {n_ok}/{len(report.tests)} {'通过' if zh else 'passed'} in {report.seconds:.2f} s "
          f"(seed {report.seed})")


def main(argv: list[str]) -> int:
    parser = _Parser(prog="python -m labs drill", description="Coding drills graded against our reference.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    cmd = args.drill_command
    if cmd == "list":
        return cmd_list(args)
    if not _known(args.id):
        return 2
    if cmd == "show":
        return cmd_show(args)
    if cmd in ("starter", "solution"):
        d = get_drill(args.id)
        sys.stdout.write(d.starter() if cmd == "starter" else d.solution())
        return 0
    return cmd_check(args)
