# Two entry points do all the set-up on a fresh machine:
#   make demo   broker, training, worker and a simulated fleet of pumps with faults, end to end
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

.PHONY: install test lint demo broker-start broker-stop clean

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
	$(BIN)/python -m worker.demo --workdir $(DEMO)

broker-start: install
	$(BIN)/python -m worker.local_broker start

broker-stop:
	$(BIN)/python -m worker.local_broker stop

clean:
	rm -rf $(VENV) $(DEMO) .kafka .mypy_cache .ruff_cache .pytest_cache
