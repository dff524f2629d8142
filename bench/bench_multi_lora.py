"""Multi-LoRA decode step (BGMV): batched kernel vs a per-adapter grouped loop vs a per-request loop.

    python bench/bench_multi_lora.py [--device cpu|cuda] [--rows 64] [--dim 1024] [--rank 16] [--adapters 16 64]

One row per K, three timings side by side and two ratios (throughput = rows / time, so a ratio of times).
Timings interleave the contenders round by round and take each one's median, so a noisy shared
machine slows all of them alike; wall time is the headline, CPU time of this process beside it.
`bgmv` dispatches like every op here: Triton on CUDA; on CPU the C kernel (peftlab_kernels/csrc/multi_lora_cpu.c)
for fp32 when a C compiler built it, else the PyTorch grid path, which is timed on CPU as well.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from peftlab_kernels.multi_lora import bgmv, bgmv_grouped_loop, bgmv_reference, bgmv_torch  # noqa: E402


def _timer(device: torch.device):
    """fn -> (wall seconds, CPU seconds of this process). CPU time leaves out other processes on a
    shared box but counts OpenMP workers spinning after a parallel region, so with more than one
    thread it over-counts every contender that uses torch's pool; wall time is the headline."""
    def once(fn):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0, time.process_time() - c0
    return once


def measure(K: int, T: int, d: int, r: int, device: torch.device, rounds: int = 30, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, d, generator=g).to(device)                                   # (T, d)
    A = (torch.randn(K, r, d, generator=g) / d ** 0.5).to(device)                   # (K, r, d)
    B = torch.randn(K, d, r, generator=g).to(device)                                # (K, d, r)
    s = (torch.rand(K, generator=g) + 0.5).to(device)                               # (K,)
    idx = torch.randint(0, K, (T,), generator=g).to(device)                         # uniform traffic
    contenders = {"batched": lambda: bgmv(x, A, B, idx, s),
                  "grouped_loop": lambda: bgmv_grouped_loop(x, A, B, idx, s),
                  "per_request": lambda: bgmv_reference(x, A, B, idx, s)}
    if device.type == "cpu":                 # the PyTorch grid path bgmv falls back to without a compiler
        contenders["batched_torch"] = lambda: bgmv_torch(x, A, B, idx, s)
    want = contenders["per_request"]()
    err = {k: float((f() - want).abs().max()) for k, f in contenders.items()}   # also warms up
    once = _timer(device)
    times = {k: [] for k in contenders}
    for _ in range(rounds):
        for k, f in contenders.items():
            times[k].append(once(f))
    med = {k: statistics.median(w for w, _ in v) for k, v in times.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in times.items()}
    out = {"K": K, "rows": T, "d": d, "r": r, "active_adapters": int(torch.unique(idx).numel()),
           "path": _path(x),
           "us": {k: round(v * 1e6, 1) for k, v in med.items()},
           "cpu_us": {k: round(v * 1e6, 1) for k, v in cpu.items()},
           "rows_per_s": {k: round(T / v) for k, v in med.items()},
           "batched_vs_grouped": round(med["grouped_loop"] / med["batched"], 2),
           "batched_vs_per_request": round(med["per_request"] / med["batched"], 2),
           "batched_vs_grouped_cpu": round(cpu["grouped_loop"] / cpu["batched"], 2),
           "batched_vs_per_request_cpu": round(cpu["per_request"] / cpu["batched"], 2),
           "max_abs_diff_vs_per_request": err}
    if "batched_torch" in med:
        out["torch_grid_vs_grouped"] = round(med["grouped_loop"] / med["batched_torch"], 2)
        out["torch_grid_vs_per_request"] = round(med["per_request"] / med["batched_torch"], 2)
    return out


def _path(x: torch.Tensor) -> str:
    from peftlab_kernels._dispatch import use_native, use_triton

    if use_triton(x):
        return "Triton"
    if x.dtype == torch.float32 and use_native(x, "multi_lora_cpu"):
        from peftlab_kernels.multi_lora_native import simd

        return "C, AVX-512" if simd() else "C, scalar"
    return "PyTorch grid"


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--adapters", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: leave torch's default)")
    ap.add_argument("--json", action="store_true", help="print one JSON list instead of the table")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    rows = [measure(K, args.rows, args.dim, args.rank, device, args.rounds) for K in args.adapters]
    if args.json:
        print(json.dumps(rows))
        return rows
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"# multi-LoRA decode step on {name}, torch {torch.__version__}, batched path: {rows[0]['path']}; "
          f"T={args.rows} rows, d={args.dim}, r={args.rank}, {args.rounds} interleaved rounds; ratios of wall-time "
          f"medians (of CPU-time medians)")
    print(f"{'K':>4} {'active':>6} {'batched us':>11} {'grouped us':>11} {'per-req us':>11} "
          f"{'vs grouped':>17} {'vs per-req':>17} {'max|diff|':>10}")
    for row in rows:
        us = row["us"]
        print(f"{row['K']:>4} {row['active_adapters']:>6} {us['batched']:>11.1f} {us['grouped_loop']:>11.1f} "
              f"{us['per_request']:>11.1f} {row['batched_vs_grouped']:>8.2f}x ({row['batched_vs_grouped_cpu']:.2f}x) "
              f"{row['batched_vs_per_request']:>7.2f}x ({row['batched_vs_per_request_cpu']:.2f}x) "
              f"{max(row['max_abs_diff_vs_per_request'].values()):>10.2e}")
        if "torch_grid_vs_grouped" in row:
            print(f"{'':>4} {'':>6} {us['batched_torch']:>11.1f}  <- PyTorch grid path (no compiler): "
                  f"{row['torch_grid_vs_grouped']:.2f}x vs grouped, {row['torch_grid_vs_per_request']:.2f}x vs per-request")
    return rows


if __name__ == "__main__":
    main()
