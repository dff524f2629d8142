"""One training step, ours vs peft, side by side in one run (CPU unless --device cuda).

    python -m bench.bench_methods [--steps 20] [--batch 8] [--seq 64] [--device cpu] [--threads N]

Each method: LoRA (r=16, lora_alpha=32, all-linear) and DoRA (same, use_dora=True) applied by our
`labs.methods.lora` and by `peft.get_peft_model` to two copies of the same base (the bundled one from
`labs.base.load_base()` when it exists, else a random Llama of the same shape). A step is forward +
backward + AdamW step + zero_grad. Runs are interleaved (ours, peft, ours, peft, …) so both see the same
machine load; the reported time is the median, as wall time and as process CPU time (on a shared box
the CPU time is the steadier one). ratio = ours / peft (< 1.0: ours is faster).
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch


def base_model(device: str):
    try:
        from labs.base import load_base

        model, _ = load_base()
        source = "labs.base.load_base()"
    except Exception as err:  # the bundled base is not there yet: same shape, random weights
        from transformers import LlamaConfig, LlamaForCausalLM

        torch.manual_seed(0)
        cfg = LlamaConfig(vocab_size=4096, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                          num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=512,
                          tie_word_embeddings=True)
        model = LlamaForCausalLM(cfg)
        source = f"random Llama of the bundled shape ({type(err).__name__}: {err})"
    return model.to(device).float(), source


def ours_apply(model, use_dora):
    from labs.methods import lora

    return lora.apply(model, r=16, lora_alpha=32, target_modules="all-linear", use_dora=use_dora)


def peft_apply(model, use_dora):
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", use_dora=use_dora))


def make_step(model, ids):
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step():
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    return step


def timed(step, device) -> tuple[float, float]:
    """(wall seconds, process CPU seconds). On a shared CPU box the CPU time is the steadier of the two."""
    if device == "cuda":
        torch.cuda.synchronize()
    t0, c0 = time.perf_counter(), time.process_time()
    step()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, time.process_time() - c0


def compare(name, use_dora, base, ids, steps, device) -> dict:
    ours = ours_apply(copy.deepcopy(base), use_dora)
    theirs = peft_apply(copy.deepcopy(base), use_dora)
    s_ours, s_peft = make_step(ours, ids), make_step(theirs, ids)
    for _ in range(3):                                   # warm-up (allocator, Triton autotune on GPU)
        s_ours(), s_peft()
    t_ours, t_peft = [], []
    for _ in range(steps):
        t_ours.append(timed(s_ours, device))
        t_peft.append(timed(s_peft, device))
    med = lambda ts, i: statistics.median(t[i] for t in ts)  # noqa: E731
    row = {"method": name}
    for i, kind in ((0, "wall"), (1, "cpu")):
        mo, mp = med(t_ours, i), med(t_peft, i)
        row.update({f"ours_{kind}_ms": 1e3 * mo, f"peft_{kind}_ms": 1e3 * mp, f"{kind}_ratio": mo / mp})
    return row


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    base, source = base_model(args.device)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, base.config.vocab_size, (args.batch, args.seq), generator=g).to(args.device)
    print(f"base: {source}; {sum(p.numel() for p in base.parameters()):,} params; batch {args.batch}x{args.seq}; "
          f"device {args.device}; torch threads {torch.get_num_threads()}; median of {args.steps} steps")
    rows = [compare("LoRA r=16 all-linear", False, base, ids, args.steps, args.device),
            compare("DoRA r=16 all-linear", True, base, ids, args.steps, args.device)]
    print(f"{'method':<24}{'ours ms':>10}{'peft ms':>10}{'ours/peft':>11}{'ours cpu':>10}{'peft cpu':>10}"
          f"{'cpu ratio':>11}")
    for r in rows:
        print(f"{r['method']:<24}{r['ours_wall_ms']:>10.1f}{r['peft_wall_ms']:>10.1f}{r['wall_ratio']:>11.2f}"
              f"{r['ours_cpu_ms']:>10.1f}{r['peft_cpu_ms']:>10.1f}{r['cpu_ratio']:>11.2f}")
    return rows


if __name__ == "__main__":
    main()
