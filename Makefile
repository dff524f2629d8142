# Two commands: `make run` serves the app, `make test` runs the whole suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= localhost
PORT ?= 8501

.PHONY: run test venv install install-dev bench clean-venv

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

install: $(VENV)/.runtime
install-dev: $(VENV)/.dev

run: $(VENV)/.runtime
	$(BIN)/streamlit run streamlit_app.py --server.address $(HOST) --server.port $(PORT)

test: $(VENV)/.dev
	$(BIN)/python -m pytest -q --timeout=900 tests

bench: $(VENV)/.dev
	for b in bench/bench_*.py; do PYTHONPATH=. $(BIN)/python $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)
