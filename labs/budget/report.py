"""``python -m labs.budget.report [--trace]``: the predicted-totals table for the note (Markdown).

7B / 13B / 70B x full / LoRA / QLoRA at batch 1, sequence 512, bf16-mixed, AdamW, full checkpointing,
one GPU; with ``--trace`` also the traced model states and activation peak next to the formula's.
"""
from __future__ import annotations

import argparse

from labs.budget import estimate, seed_table

MODELS = ("llama-2-7b", "llama-2-13b", "llama-2-70b")
METHODS = ("full", "lora", "qlora")
SETTING = dict(precision="bf16-mixed", optimizer="adamw", checkpointing="full", batch=1, seq=512)


def predicted_table(trace: bool = False) -> str:
    head = "| model | method | trainable | weights | quant | grads | optimizer | activations | logits | overhead " \
           "| **total GB / GPU** |" + (" traced states GB (formula) | traced act. GB (formula) |" if trace else "")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for m in MODELS:
        for meth in METHODS:
            r = estimate(m, meth, rank=16, targets="all-linear", trace=trace, **SETTING)
            g = r["memory_gb"]
            row = (f"| {m} | {meth} | {r['trainable_params']:,} | {g['weights']:.2f} | {g['quant_constants']:.2f} | "
                   f"{g['gradients']:.2f} | {g['optimizer']:.2f} | {g['activations']:.2f} | {g['logits']:.2f} | "
                   f"{g['overhead']:.2f} | **{g['total']:.2f}** |")
            if trace:
                if "trace" in r:
                    t = r["trace"]
                    states = g["weights"] + g["quant_constants"] + g["gradients"] + g["optimizer"]
                    row += (f" {t['model_states'] / 1e9:.2f} ({states:.2f}) | {t['activations_peak'] / 1e9:.3f} "
                            f"({g['activations'] + g['logits']:.3f}) |")
                else:
                    row += " – | – |"
            lines.append(row)
    return "\n".join(lines)


def seed_markdown() -> str:
    rows = seed_table()
    keys = [k for k in rows[0] if k not in ("model", "params")]
    lines = ["| model | params | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 2)]
    for r in rows:
        lines.append(f"| {r['model']} | {r['params']:,} | " + " | ".join(f"{r[k]:.1f}" for k in keys) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m labs.budget.report")
    p.add_argument("--trace", action="store_true")
    a = p.parse_args(argv)
    print(predicted_table(a.trace))
    print()
    print(seed_markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
