# web-bot: `make run` installs everything into .venv and serves on the offline defaults; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
export HF_HUB_OFFLINE := 1
# llama-cpp-python compiles llama.cpp on install; use every core (pip keeps the wheel in its cache afterwards).
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: install install-dev system-deps run migrate test bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip wheel

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install -r requirements.txt
	touch $@

$(VENV)/.dev: requirements-dev.txt $(VENV)/.runtime
	$(BIN)/pip install -r requirements-dev.txt
	touch $@

install: $(VENV)/.runtime

install-dev: $(VENV)/.dev

system-deps:
	bash scripts/system-deps.sh

run: install
	$(BIN)/python -m web_bot --host $(HOST) --port $(PORT)

# The server migrates at start-up too; this applies the history schema's migrations on their own.
migrate: install
	$(BIN)/python -m core.history upgrade

test: install-dev system-deps
	$(BIN)/python -m pytest

bench: install-dev
	$(BIN)/python -m bench

lint: install-dev
	$(BIN)/ruff check core web_bot tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
