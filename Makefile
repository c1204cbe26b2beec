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

.PHONY: help setup data browser lint format test book run labs bench sweep lock clean

help:
	@echo "make book   execute every chapter ($(PROFILE) profile) and render the site into _build/html"
	@echo "make test   lint and run the test suite"
	@echo "make run PROFILE=smoke|cpu|paper   execute the chapters only"
	@echo "make labs   write the course labs (the chapters without their solutions) into labs/, the teacher's key into labs/key/"
	@echo "make bench  run the benchmarks in bench/"
	@echo "make sweep  chapter $(SWEEP_CHAPTER) over a spawn-epoch x seed grid on $(SWEEP_WORKERS) Dask workers (SWEEP_PROFILE, SWEEP_GRID, SWEEP_OUT)"
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

# Headless Chromium for the site check (llfc_utils/sitecheck.py): the Debian packages, installed
# here when we are root and they are missing; elsewhere the check is skipped with a message.
browser:
	@if ! { [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; }; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing the Debian packages chromium and chromium-driver (for the site check)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else \
	    echo "no Chromium: the site check will be skipped (apt-get install chromium chromium-driver)"; \
	  fi; \
	fi

# Course labs: every chapter with its solution cells replaced by prompts, and the teacher's key with
# the solutions in labs/key/ (generated, not committed).
labs: setup
	$(PY) -m llfc_utils.tools.labs --out labs

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: setup
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

test: lint data browser
	$(PY) -m pytest -q --durations=10

run: data
	$(PY) -m llfc_utils.tools.run --profile $(PROFILE)

book: run browser
	$(VENV)/bin/jupyter-book build . -W -n --keep-going
	$(PY) -m llfc_utils.tools.sitecheck _build/html --allow-missing-browser
	@echo "open _build/html/index.html"

bench: data
	$(PY) bench/train_throughput.py
	$(PY) bench/evaluation.py
	$(PY) bench/weight_matching.py
	$(PY) bench/book_floor.py

# A grid of chapter runs as parallel jobs (llfc_utils/sweep.py); a re-run skips finished jobs.
SWEEP_CHAPTER ?= 01_lmc_basics
SWEEP_PROFILE ?= cpu
SWEEP_GRID ?= spawn_epoch=0,2,5 seed=0,1 n_seeds=1 extras=False
SWEEP_WORKERS ?= 2
SWEEP_OUT ?= sweeps/$(SWEEP_CHAPTER)-$(SWEEP_PROFILE)
sweep: data
	$(PY) -m llfc_utils.tools.sweep --chapter $(SWEEP_CHAPTER) --profile $(SWEEP_PROFILE) \
	  --grid $(SWEEP_GRID) --workers $(SWEEP_WORKERS) --out $(SWEEP_OUT)

lock: setup
	@{ echo "# Exact versions the book was built and tested with (Python 3.11, x86_64, Linux)."; \
	   echo "# Regenerate with \`make lock\`. pyproject.toml keeps loose lower bounds for other environments."; \
	   $(PY) -m pip freeze --exclude-editable | grep -v '^llfc'; } > $(LOCK).tmp && mv $(LOCK).tmp $(LOCK)

clean:
	rm -rf _build book/*.ipynb book/results labs .pytest_cache .ruff_cache
