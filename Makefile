# llfc-book. The two commands a newcomer needs:
#   make book   set up, prepare the data, execute the chapters (cpu profile), render _build/html
#   make test   set up, prepare the data, lint, run the tests (unit tests + chapters in the smoke profile)
# Every target sets up what it needs by itself.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
LOCK := requirements.lock
STAMP := $(VENV)/.llfc-installed
PROFILE ?= cpu
# This machine's pip prints one harmless line per local wheel folder it cannot see; hide those.
QUIET_PIP := { grep -v "is ignored: it is neither a file nor a directory" || true; }

.PHONY: help setup data lint format test book run bench lock clean

help:
	@echo "make book   execute every chapter ($(PROFILE) profile) and render the site into _build/html"
	@echo "make test   lint and run the test suite"
	@echo "make run PROFILE=smoke|cpu|paper   execute the chapters only"
	@echo "make bench  run the benchmarks in bench/"
	@echo "make lock   rewrite $(LOCK) from the current venv"

$(STAMP): $(LOCK) pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing the pinned packages into $(VENV) (first time: a few minutes)"
	$(PY) -m pip install -q --disable-pip-version-check -r $(LOCK) 2>&1 | $(QUIET_PIP)
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e . 2>&1 | $(QUIET_PIP)
	@touch $@

setup: $(STAMP)

# Fashion-MNIST: the data root, then the Debian package (installed here when we are root), then a download.
data: setup
	@if ! $(PY) -m llfc_utils.data --no-download fashion_mnist >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing the Debian package dataset-fashion-mnist"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; \
	  fi; \
	fi
	$(PY) -m llfc_utils.data fashion_mnist

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: setup
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

test: lint data
	$(PY) -m pytest -q

run: data
	$(PY) -m llfc_utils.run --profile $(PROFILE)

book: run
	$(VENV)/bin/jupyter-book build . -W -n --keep-going
	@echo "open _build/html/index.html"

bench: data
	$(PY) bench/train_throughput.py

lock: setup
	@{ echo "# Exact versions the book was built and tested with (Python 3.11, x86_64, Linux)."; \
	   echo "# Regenerate with \`make lock\`. pyproject.toml keeps loose lower bounds for other environments."; \
	   $(PY) -m pip freeze --exclude-editable | grep -v '^llfc'; } > $(LOCK).tmp && mv $(LOCK).tmp $(LOCK)

clean:
	rm -rf _build book/*.ipynb book/results labs .pytest_cache .ruff_cache
