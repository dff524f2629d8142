# Two commands: `make run` serves the app, `make test` runs the whole suite. Both install from the lock files.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= localhost
PORT ?= 8501
# No NVIDIA GPU: torch (and triton) come from requirements-cpu.lock; a GPU box keeps its own CUDA torch.
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo 1)
LOCKS := -c requirements.lock $(if $(HAS_GPU),,-c requirements-cpu.lock)
# Where the CPU wheel of torch comes from, if not the default index (e.g. https://download.pytorch.org/whl/cpu).
TORCH_INDEX ?=
TORCH_FROM := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)

.PHONY: run test venv install install-dev bench lock clean-venv

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(if $(HAS_GPU),,$(BIN)/pip install -q -c requirements-cpu.lock $(TORCH_FROM) torch)

$(VENV)/.runtime: requirements.txt requirements.lock requirements-cpu.lock | $(BIN)/python
	$(BIN)/pip install -q $(LOCKS) -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt requirements.lock requirements-cpu.lock | $(BIN)/python
	$(BIN)/pip install -q $(LOCKS) -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

install: $(VENV)/.runtime
install-dev: $(VENV)/.dev

run: $(VENV)/.runtime
	$(BIN)/streamlit run streamlit_app.py --server.address $(HOST) --server.port $(PORT)

test: $(VENV)/.dev
	$(BIN)/python -m pytest -q --timeout=900 tests

bench: $(VENV)/.dev
	for b in bench/bench_*.py; do PYTHONPATH=. $(BIN)/python $$b || exit 1; done

# Re-resolve the newest versions the requirements allow into a throw-away venv and write the lock files from
# it; then run `make test` (it reinstalls .venv from the new lock) and commit the lock files with the result.
# torch stays at requirements-cpu.lock's version unless TORCH=x.y.z is given.
TORCH ?= $(shell sed -n 's/^torch==//p' requirements-cpu.lock)
lock:
	rm -rf .venv-lock
	$(PY) -m venv .venv-lock
	.venv-lock/bin/pip install -q --upgrade pip
	.venv-lock/bin/pip install -q $(TORCH_FROM) torch==$(TORCH)
	.venv-lock/bin/pip install -q -r requirements-dev.txt
	$(PY) .ci/lock.py .venv-lock/bin/python
	rm -rf .venv-lock

clean-venv:
	rm -rf $(VENV)
