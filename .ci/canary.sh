#!/usr/bin/env bash
# Newest-versions canary: a throw-away venv with the newest releases requirements*.txt allow (no lock), then a
# short smoke set. Fails (exit 1) when an upstream release breaks us, naming what differs from the lock.
# The fix is code, or an upper bound with a one-line reason in requirements.txt — never silence.
# torch is the exception: on a CPU box it stays at requirements-cpu.lock (the newest torch on PyPI is a
# multi-GB CUDA build); a GPU box keeps the CUDA build it has.
set -uo pipefail
cd "$(dirname "$0")/.."
V=.venv-canary
PY="${PY:-python3}"
rm -rf "$V"
"$PY" -m venv "$V" && "$V/bin/pip" install -q --upgrade pip || exit 1
# torch held at the locked CPU build for the whole install (an eager upgrade would fetch a CUDA torch).
TORCH_PIN="$(mktemp)"
if ! command -v nvidia-smi >/dev/null 2>&1; then
  grep '^torch==' requirements-cpu.lock > "$TORCH_PIN"
  "$V/bin/pip" install -q -c "$TORCH_PIN" torch || exit 1
fi
if ! "$V/bin/pip" install -q -c "$TORCH_PIN" --upgrade --upgrade-strategy eager -r requirements-dev.txt; then
  echo "CANARY FAILED: the newest releases that requirements-dev.txt allows do not install together (see pip above)."
  exit 1
fi
DIFF="$("$V/bin/python" .ci/lock.py "$V/bin/python" --diff)"
echo "canary: installed versions that differ from requirements.lock:"
echo "$DIFF" | sed 's/^/  /'

DATA="$(mktemp -d)"
export PEFTLAB_DATA_DIR="$DATA" TOKENIZERS_PARALLELISM=false PYTHONPATH=
failed=()
step() {  # step NAME CMD...: run, keep the last lines of output on failure
  local name="$1"; shift
  local log; log="$(mktemp)"
  if "$@" >"$log" 2>&1; then echo "canary: ok   $name"; else
    echo "canary: FAIL $name"; tail -n 40 "$log" | sed 's/^/    /'; failed+=("$name"); fi
  rm -f "$log"
}
step "imports from the repo root" "$V/bin/python" -c \
  "import app.main, app.i18n, labs, labs.cli, labs.methods, labs.budget, labs.jobs, peftlab_kernels.nf4, peftlab_kernels.lora"
step "python -m labs run lora --quick --json" bash -c \
  "'$V/bin/python' -m labs run lora --quick --json | tail -n 1 | '$V/bin/python' -c 'import json,sys; r=json.loads(sys.stdin.read()); assert r[\"quick\"] is True and r[\"seconds\"] > 0, r'"
step "install, peft and bitsandbytes parity tests" "$V/bin/python" -m pytest -q -p no:cacheprovider --timeout=600 \
  tests/test_install.py tests/peftlab_kernels/test_nf4.py tests/peftlab_kernels/test_linear4bit.py tests/methods/test_lora.py \
  tests/methods/test_qlora.py --deselect tests/test_install.py::test_the_lock_is_what_is_installed_here
step "AppTest: the home page through the router" "$V/bin/python" -m pytest -q -p no:cacheprovider --timeout=600 \
  tests/test_app_pages.py -k "test_main_router_runs"
rm -rf "$DATA"

if ((${#failed[@]})); then
  echo "CANARY FAILED: ${failed[*]}"
  echo "The newest allowed releases break the project. Releases that differ from requirements.lock:"
  echo "$DIFF" | sed 's/^/  /'
  echo "Fix the code, or bound the package in requirements.txt with a one-line reason (README: 'When an upstream release breaks the install')."
  exit 1
fi
echo "canary: passed with the newest allowed releases"
rm -rf "$V"
