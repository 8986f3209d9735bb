# Two entry points for a fresh machine: `make demo` (optlab's main job) and `make test`.
# Each creates .venv on first use and installs what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(VENV)/.installed $@

DEMO_OPTIMIZERS := sgd,momentum,adam,amsgrad,adamw,powersign,addsign,lion

demo: $(VENV)/.installed
	$(BIN)/optlab compare --task mnist1d --optimizers $(DEMO_OPTIMIZERS) \
	  --lrs 1e-3,3e-3,1e-2,3e-2,1e-1 --seeds 3 --epochs 20 --out runs/mnist1d-compare

test: $(VENV)/.installed-dev
	$(BIN)/ruff check optlab tests benchmarks
	$(BIN)/python -m pytest -n 2 tests

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check optlab tests benchmarks

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/step_time.py
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis runs
