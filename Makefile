# The two commands of the README's quick start. Each creates .venv and installs
# what it needs on first use (and again when setup.py changes).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= out/demo
PYTEST_ARGS ?=
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Runtime + command-line extras: enough for the demo.
$(VENV)/.installed-run: setup.py | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[xrai,cli]'
	touch $@

# Everything the tests, notebooks and benchmarks use.
$(VENV)/.installed-dev: setup.py | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@ $(VENV)/.installed-run

demo: $(VENV)/.installed-run
	$(BIN)/saliency-tf1 demo --out $(OUT)

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

bench: $(VENV)/.installed-dev
	for f in bench/bench_*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) out .pytest_cache
