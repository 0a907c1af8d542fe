# bertscape: two commands do everything from a fresh clone.
#   make book   set up .venv, execute every chapter (PROFILE=quick by default), build the static site
#               (BUNDLE=path renders a results bundle instead of computing: python -m bertscape.book.bundle)
#   make test   set up .venv, run the whole test suite
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= quick
# torch goes in first so a CPU-only machine never pulls a CUDA build. On a GPU box, e.g.:
#   make book TORCH_INDEX=https://download.pytorch.org/whl/cu126
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
STAMP := $(VENV)/.bertscape-installed
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup book test browser clean bench wheel

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# Headless Chromium and its driver for the site tests (Debian packages), installed when missing.
browser:
	@command -v chromedriver >/dev/null && (command -v chromium >/dev/null || command -v chromium-browser >/dev/null) \
	  || { if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	       else echo "browser tests need chromium and chromium-driver (apt-get install chromium chromium-driver)"; fi; }

book: setup
	$(PY) -m bertscape.book --profile $(PROFILE) $(if $(TASKS),--tasks $(TASKS)) $(if $(BUNDLE),--bundle $(BUNDLE))

test: setup browser
	$(PY) -m pytest -q

# Speed/memory measurements (minutes; see benchmarks/RESULTS.md). loss-landscapes (in the lock file)
# is the reference implementation bench_landscape.py compares against.
bench: setup
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_landscape.py
	$(PY) benchmarks/bench_layers.py
	$(PY) benchmarks/bench_precision.py

# A wheel of the package in _build/dist (built in an isolated environment by the PyPI package `build`).
wheel: setup
	$(PY) -m build --wheel --outdir _build/dist

clean:
	rm -rf _build
