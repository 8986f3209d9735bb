# Two entry points for a fresh machine: `make demo` (optlab's main job) and `make test`.
# Each creates .venv on first use and installs what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test optax-suite lint bench docs clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(VENV)/.installed $@

$(VENV)/.installed-docs: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install --quiet -e '.[docs]'
	touch $(VENV)/.installed $@

LINTED := optlab tests benchmarks notebooks docs/conf.py

DEMO_OPTIMIZERS := sgd,momentum,adam,amsgrad,adamw,powersign,addsign,lion

demo: $(VENV)/.installed
	$(BIN)/optlab compare --task mnist1d --optimizers $(DEMO_OPTIMIZERS) \
	  --lrs 1e-3,3e-3,1e-2,3e-2,1e-1 --seeds 3 --epochs 20 --out runs/mnist1d-compare

# optax's own tests, shipped in its wheel, run with optlab's optimizers substituted
# (tests/optax_suite/shim.py says how; nothing of optax's test code is copied).
OPTAX_SUITE := optax._src.alias_test optax._src.float64_test optax._src.sharding_test \
  optax.schedules._schedule_test optax.contrib._common_test optax.contrib._sam_test \
  optax.contrib._muon_test optax.contrib._schedule_free_test

# tests/ includes tests/test_notebooks.py: every notebook runs in its quick configuration
# (OPTLAB_NOTEBOOK_QUICK=1) and must match its jupytext script. The docs are built last.
test: $(VENV)/.installed-dev $(VENV)/.installed-docs
	$(BIN)/ruff check $(LINTED)
	$(BIN)/python -m pytest -n 2 --durations=25 tests
	$(BIN)/python -m pytest -n 2 -p tests.optax_suite.shim -p no:cacheprovider --pyargs $(OPTAX_SUITE)
	$(SPHINX_BUILD)

optax-suite: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -n 2 -p tests.optax_suite.shim -p no:cacheprovider --pyargs $(OPTAX_SUITE)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check $(LINTED)

# The documentation site (docs/README.md): warnings are errors; -E re-reads every page, so a
# warning is never hidden by an earlier build.
SPHINX_BUILD = $(BIN)/sphinx-build -W --keep-going -E -q -b html docs docs/_build/html

docs: $(VENV)/.installed-docs
	$(SPHINX_BUILD)
	@echo "docs: docs/_build/html/index.html"

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/step_time.py
	$(BIN)/python benchmarks/compile_time.py
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis runs docs/_build .cache
