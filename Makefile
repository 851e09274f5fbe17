# web-bot: `make run` installs everything into .venv and serves on the offline defaults; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
export HF_HUB_OFFLINE := 1
# llama-cpp-python compiles llama.cpp on install; use every core (pip keeps the wheel in its cache afterwards).
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)
# Built for this CPU (-march=native), llama.cpp uses AMX tile instructions wherever the CPU reports them, and a VM
# that reports AMX without enabling it kills the server with SIGILL at the first token. Build for AVX2, which every
# x86-64 server of the last decade has, so the wheel runs wherever it is copied (the Docker image too).
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

# requirements.in and requirements-dev.in are edited by hand; `make lock` resolves them into requirements.txt and
# requirements-dev.txt, exact versions with their hashes, for CPython 3.11 on Linux x86-64 (this machine, CI and the
# Docker image). Installs take the locks only; tests/test_deploy.py fails when a lock no longer matches its input.
LOCK_TARGET := --python-version 3.11.7 --python-platform x86_64-unknown-linux-gnu
# e.g. `make lock LOCK_FLAGS=--upgrade` for the newest versions, or `LOCK_FLAGS="-P fastapi"` for one package.
LOCK_FLAGS ?=

# $(call compile,input,lock,extra options): uv reads the old lock as its preferences, so versions only move when
# the input needs it (or LOCK_FLAGS says so).
define compile
	[ ! -f $(2) ] || cp $(2) $(2).new
	$(BIN)/uv pip compile --quiet --generate-hashes --no-header $(LOCK_TARGET) $(LOCK_FLAGS) $(3) $(1) -o $(2).new
	printf '%s\n' \
	  "# Made by \`make lock\` from $(1) (uv pip compile --generate-hashes) for CPython 3.11 on Linux x86-64:" \
	  "# every package at an exact version, with the hashes of its files. Do not edit; change $(1) instead." \
	  "# Install with: pip install --require-hashes -r $(2)" > $(2)
	cat $(2).new >> $(2)
	rm $(2).new
endef

.PHONY: install install-dev lock system-deps voices run migrate test bench lint clean rebuild-llama docker-test fuzz soak

# The venv's own pip installs the lock, which pins pip itself too (the llm package depends on pip).
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --require-hashes -r requirements.txt
	$(BIN)/python scripts/check_llama.py || $(MAKE) rebuild-llama
	$(BIN)/python scripts/fetch_smart_turn.py
	touch $@

# A llama-cpp-python wheel that cannot run here (built elsewhere, or for another CPU, and kept in pip's cache) is
# built again from its hashed sdist with the flags above.
rebuild-llama:
	awk '/^llama-cpp-python==/{p=1; print; next} p && /^ /{print; next} {p=0}' requirements.txt > $(VENV)/llama.txt
	$(BIN)/pip install --no-cache-dir --force-reinstall --no-deps --require-hashes -r $(VENV)/llama.txt
	$(BIN)/python scripts/check_llama.py

$(VENV)/.dev: requirements-dev.txt $(VENV)/.runtime
	$(BIN)/pip install --require-hashes -r requirements-dev.txt
	touch $@

install: $(VENV)/.runtime

install-dev: $(VENV)/.dev

# The dev lock is constrained to the runtime lock, so the two hold the same versions of what they share.
lock: $(VENV)/.dev
	$(call compile,requirements.in,requirements.txt,)
	$(call compile,requirements-dev.in,requirements-dev.txt,-c requirements.txt)

system-deps:
	bash scripts/system-deps.sh

# Festival's Russian voice, from Debian (no Russian voice is on PyPI): `make run` speaks Russian out of the box.
voices:
	bash scripts/system-deps.sh voices

run: install voices
	$(BIN)/python -m web_bot --host $(HOST) --port $(PORT)

# The server migrates at start-up too; this applies the history schema's migrations on their own.
migrate: install
	$(BIN)/python -m core.history upgrade

test: install-dev system-deps
	$(BIN)/python -m pytest

bench: install-dev
	$(BIN)/python -m bench

# The long fuzz: tests/test_fuzz.py with thousands of examples per target (`make test` runs a short, fixed sample),
# then each atheris harness for FUZZ_SECONDS. Failing inputs are kept in test-artifacts/fuzz/.
FUZZ_SECONDS ?= 60
fuzz: install-dev
	FUZZ=long $(BIN)/python -m pytest -p no:cacheprovider tests/test_fuzz.py
	$(BIN)/python -m tests.fuzz all $(FUZZ_SECONDS)

lint: install-dev
	$(BIN)/ruff check core web_bot tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# An hour of mixed traffic against one server, sampled each minute; fails if memory, descriptors, tasks or threads
# keep growing (bench/soak.py). `make soak SOAK_MINUTES=5` is the short run the suite has (tests/test_soak.py).
SOAK_MINUTES ?= 60
soak: install-dev
	SOAK_MINUTES=$(SOAK_MINUTES) $(BIN)/python -m bench.soak

# The image and the compose file for real (tests/test_docker.py): Docker from Debian, local base images, a build.
docker-test: install-dev system-deps
	bash scripts/docker/engine.sh
	DOCKER_TESTS=1 $(BIN)/python -m pytest tests/test_docker.py
