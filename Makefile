# The two commands of the README's quick start. Each creates .venv and installs
# what it needs on first use (and again when setup.py changes).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= out/demo
PYTEST_ARGS ?=
export TF_CPP_MIN_LOG_LEVEL ?= 2

# The oldest TensorFlow legacy users are pinned to, with the NumPy it needs: the
# core of the suite (engine, every method, the contract, the core API, metrics)
# runs there too. Tests of newer TensorFlow's artifacts (Keras 3, tf-keras,
# TF2 SavedModels, the op registry's exact counts), the CLI/demo, Beam and the
# browser run only in .venv.
OLDEST_TF ?= 2.13.1
OLDEST_VENV ?= .venv-oldest
OLDEST_IGNORE := legacy io guard_registry guard_corpus untrusted tf2_models cli demo notebooks \
	beam report compat_examples distributed
OLDEST_ARGS := $(foreach t,$(OLDEST_IGNORE),--ignore=tests/test_$(t).py)

.PHONY: demo test test-oldest lint bench clean

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

$(OLDEST_VENV)/.installed: setup.py
	$(PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/python -m pip install -q --upgrade pip
	$(OLDEST_VENV)/bin/python -m pip install -q -e '.[xrai,metrics,oracle]' \
		'tensorflow==$(OLDEST_TF)' 'numpy<2' 'pytest>=7' 'pytest-timeout>=2'
	touch $@

demo: $(VENV)/.installed-run
	$(BIN)/saliency-tf1 demo --out $(OUT)

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-oldest: $(OLDEST_VENV)/.installed
	$(OLDEST_VENV)/bin/python -m pytest $(OLDEST_ARGS) $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

# bench_gpu.py needs PyTorch (and a GPU), not this venv: run it where they are.
bench: $(VENV)/.installed-dev
	for f in $(filter-out bench/bench_gpu.py,$(wildcard bench/bench_*.py)); do \
		$(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) $(OLDEST_VENV) out .pytest_cache
