"""``python -m labs budget ...`` (via ``register``) or standalone ``python -m labs.budget.cli ...``.

    python -m labs budget --model llama-2-7b --method lora --rank 16 --targets all-linear \\
        --precision bf16-mixed --optimizer adamw --checkpointing full --batch 1 --seq 512 --json

Bad arguments exit with code 2 and a message naming the argument and what it allows.
"""
from __future__ import annotations

import argparse
import json
import sys

from labs.budget import GPUS, METHODS, OPTIMIZERS, PRECISIONS, estimate
from labs.budget.presets import PRESETS, BudgetError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="llama-2-7b", help=f"preset ({', '.join(PRESETS)}) or path to config.json")
    p.add_argument("--method", default="lora", choices=METHODS)
    p.add_argument("--rank", type=int, default=16, help="LoRA/QLoRA/DoRA/AdaLoRA/VeRA rank r")
    p.add_argument("--targets", default="all-linear", help="all-linear or comma list, e.g. q_proj,v_proj")
    p.add_argument("--precision", default="bf16-mixed", choices=PRECISIONS)
    p.add_argument("--optimizer", default="adamw", choices=OPTIMIZERS)
    p.add_argument("--checkpointing", default="full", choices=("none", "full"))
    p.add_argument("--attention", default="flash", choices=("flash", "eager"))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--gpus", type=int, default=1)
    p.add_argument("--zero", type=int, default=0, choices=(0, 1, 2, 3), help="ZeRO stage (3 = FSDP full shard)")
    p.add_argument("--offload", action="store_true", help="offload optimizer states to CPU")
    p.add_argument("--nf4-blocksize", type=int, default=64)
    p.add_argument("--no-double-quant", action="store_true")
    p.add_argument("--n-tokens", type=int, default=20, help="prompt/prefix virtual tokens")
    p.add_argument("--prefix-projection", action="store_true", help="P-tuning v2 style reparameterisation MLP")
    p.add_argument("--adapter-size", type=int, default=64, help="Houlsby bottleneck m")
    p.add_argument("--adapter-len", type=int, default=10, help="LLaMA-Adapter prompt length")
    p.add_argument("--adapter-layers", type=int, default=None, help="LLaMA-Adapter: top layers adapted")
    p.add_argument("--feedforward", default=None, help="(IA)³: comma list of targets whose input is rescaled "
                                                       "(default down_proj when targeted; '' = none)")
    p.add_argument("--mode", default="train", choices=("train", "inference"))
    p.add_argument("--gpu", default="A100-80GB", choices=tuple(GPUS))
    p.add_argument("--mfu", type=float, default=0.4)
    p.add_argument("--trace", action="store_true", help="check against a FakeTensorMode + MemTracker step")
    p.add_argument("--measure", action="store_true", help="a real step on CUDA (max_memory_allocated)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    kw = {"n_tokens": args.n_tokens, "adapter_size": args.adapter_size}
    if args.method == "prefix":
        kw = {"n_tokens": args.n_tokens, "prefix_projection": args.prefix_projection}
    elif args.method == "llama-adapter":
        kw = {"adapter_len": args.adapter_len, "adapter_layers": args.adapter_layers}
    elif args.method == "houlsby":
        kw = {"adapter_size": args.adapter_size}
    elif args.method == "prompt":
        kw = {"n_tokens": args.n_tokens}
    elif args.method == "ia3":
        kw = {"feedforward": args.feedforward}
    else:
        kw = {}
    try:
        res = estimate(args.model, args.method, rank=args.rank, targets=args.targets, precision=args.precision,
                       optimizer=args.optimizer, checkpointing=args.checkpointing, batch=args.batch, seq=args.seq,
                       gpus=args.gpus, zero=args.zero, flash=args.attention == "flash", offload=args.offload,
                       nf4_blocksize=args.nf4_blocksize, double_quant=not args.no_double_quant, mode=args.mode,
                       gpu=args.gpu, mfu=args.mfu, trace=args.trace, **kw)
        if args.measure:
            from labs.budget.presets import get_arch
            from labs.budget.trace import measure_cuda
            res["measure"] = measure_cuda(get_arch(args.model), method=args.method, rank=args.rank,
                                          targets=args.targets, precision=args.precision,
                                          optimizer=args.optimizer, checkpointing=args.checkpointing,
                                          batch=args.batch, seq=args.seq, flash=args.attention == "flash")
    except BudgetError as e:
        print(f"error: --{e.field.replace('_', '-')}: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(res, default=str))
    else:
        print(render(res))
    return 0


def render(r: dict) -> str:
    gb = r["memory_gb"]
    lines = [f"{r['model']} · {r['method']} · {r['precision']} · {r['optimizer']} · ckpt={r['checkpointing']} · "
             f"b={r['batch']} s={r['seq']} · gpus={r['gpus']} zero={r['zero']}",
             f"params {r['total_params']:,} · trainable {r['trainable_params']:,} ({r['trainable_percent']:.3f}%)",
             "per GPU (GB):"]
    for k in ("weights", "quant_constants", "gradients", "optimizer", "activations", "logits", "overhead", "total"):
        lines.append(f"  {k:16s} {gb[k]:10.2f}")
    lines.append("fits on: " + ", ".join(f"{k} GB" for k, v in r["fits"].items() if v) or "none")
    sp = r["speed"]
    lines.append(f"~{sp['seconds_per_step']:.3f} s/step on {sp['gpu']} at MFU {sp['mfu']}")
    if "trace" in r:
        t = r["trace"]
        lines.append(f"trace ({t['note']}, {t['seconds']} s): model states {t['model_states'] / 1e9:.2f} GB, "
                     f"activation peak {t['activations_peak'] / 1e9:.2f} GB")
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors already name the argument; keep exit code 2
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``budget`` subcommand to the lead's CLI: ``p.set_defaults(func=run)``."""
    p = subparsers.add_parser("budget", help="VRAM / speed calculator (exact counts, per-byte breakdown)")
    add_arguments(p)
    p.set_defaults(func=run)
    return p


def main(argv=None) -> int:
    p = _Parser(prog="python -m labs budget", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
