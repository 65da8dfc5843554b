# authgate developer entry points. `make help` lists them.
#
# The virtualenv is refreshed only when pyproject.toml is newer than its stamp,
# so repeated `make test` runs start at once. Nothing here uses apt-get except
# `make bench`, which may install wrk (root only); CI's extra system packages
# (chromium) are installed by .ci/run.

PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
BENCH_ARGS ?=
BACKEND_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help run test lint bench clean

help:
	@echo "make run    - start authgate with the demo configuration (authgate serve --demo)"
	@echo "make test   - ruff check, mypy and pytest (needs PostgreSQL, Redis, Node.js + npm)"
	@echo "make lint   - ruff check and mypy only"
	@echo "make bench  - throughput/latency benchmark against same-run references, then the token"
	@echo "              store per backend at 1,000 and 1,000,000 families (about 15 more minutes)"
	@echo "make clean  - remove the virtualenv, caches and build output"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.stamp-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	touch $@

$(VENV)/.stamp-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

run: $(VENV)/.stamp-run
	exec $(BIN)/authgate serve --demo

lint: $(VENV)/.stamp-dev
	$(BIN)/ruff check src tests bench examples
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

bench: $(VENV)/.stamp-run
	@command -v wrk >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "bench: installing wrk (apt-get)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null 2>&1 \
	      || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null 2>&1; } \
	      || echo "bench: could not install wrk; using the Python load generator (bench/load.py)"; \
	  else \
	    echo "bench: wrk not found; using the Python load generator (bench/load.py)"; \
	  fi; }
	@# Both run even when the first reports a failed case; make fails if either did.
	$(BIN)/python bench/run.py $(BENCH_ARGS); rc=$$?; \
	  $(BIN)/python bench/backends.py $(BACKEND_ARGS) && exit $$rc

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist src/*.egg-info
	find src tests bench -name __pycache__ -type d -prune -exec rm -rf {} +
