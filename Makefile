# Two entry points do all the set-up on a fresh machine:
#   make demo   train a model on SKAB's anomaly-free file and load it as the worker would
#   make test   ruff, mypy and the test suite
# Torch is installed first, pinned, so the project's torch range installs nothing more.
# Elsewhere, get the CPU build with: make test TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
TORCH_PIP_ARGS ?=
SKAB ?= ../shared/data/skab
DEMO ?= demo

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint demo clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH)"
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

demo: install
	$(BIN)/anomaly-train fit --data $(SKAB)/anomaly-free/anomaly-free.csv --delimiter ';' \
		--timestamp-column datetime --store $(DEMO)/model-store
	$(BIN)/anomaly-train versions --store $(DEMO)/model-store
	WORKER_STORE__PATH=$(DEMO)/model-store $(BIN)/anomaly-worker check-model

clean:
	rm -rf $(VENV) $(DEMO) .mypy_cache .ruff_cache .pytest_cache
