#!/usr/bin/env bash
# One command on a CUDA box: the Triton kernels for real + the GPU benchmarks, results under $OUT.
#   OUT=/some/dir bash bench/gpu.sh
# No installs: uses the interpreter that has torch + triton (+ peft; bitsandbytes optional).
# Budget: < 8 minutes: step timeouts 150 + 180 + 120 s = 7.5 min worst case (Triton compiles included).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench/out}"
mkdir -p "$OUT"
PY="${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "nvidia-smi: n/a"
  "$PY" -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"
} | tee "$OUT/env.txt"
# 1) correctness: the kernel tests (CPU path + interpreter) on this box too
timeout 150 "$PY" -m pytest -q tests/peftlab_kernels -x -p no:cacheprovider 2>&1 | tail -n 25 | tee "$OUT/tests.txt"
# 2) Triton on the GPU vs the PyTorch reference, then the benchmarks (CPU ratios first if bnb exists)
timeout 180 "$PY" bench/bench_kernels.py --gpu --rounds 3 --out "$OUT" 2>&1 | tee "$OUT/bench.txt"
echo "results: $OUT/bench_kernels.json"
# 3) multi-LoRA serving kernels (BGMV): batched vs per-adapter grouped loop vs per-request loop, K = 16 and 64
timeout 120 "$PY" bench/bench_multi_lora.py --device cuda --adapters 16 64 --rounds 50 2>&1 | tee "$OUT/bench_multi_lora.txt"
