# Two commands on a fresh machine (README "Quickstart"):
#   make repro   set up .venv if needed, then run the whole pipeline with `dvc repro`
#   make test    set up .venv if needed, then run the test suite
# Beyond the default: `make mechanism` (the κ sweep), `make electronics` and `make books` (Table 2 at the paper's scale).
# Both are idempotent: the environment is rebuilt only when pyproject.toml or constraints.txt change.
# The stages of `make repro` share one local Prefect server in $(PREFECT_HOME) (flows/_prefect.py),
# which stops after MICN_PREFECT_IDLE_S (600) idle seconds; `make prefect-stop` stops it now.

PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export PREFECT_HOME ?= $(CURDIR)/.prefect

.PHONY: env repro test test-fast bench clean-env prefect-stop mechanism electronics books scales

env: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,dask,bench]'
	touch $(STAMP)

repro: env
	dvc repro

test: env
	pytest

# The mechanism experiment on the default world, in studies/mechanism/: the κ sweep beside Table 2,
# DIN's information ablations and both L_micn supervisions (210 runs).
mechanism: env
	dvc repro studies/mechanism/dvc.yaml

# Table 2 (DIN and Wide&Deep at 10 seeds) and the κ sweep of all three backbones (DIN also with the
# `history` supervision) on the Electronics-shaped world, in studies/electronics/ (180 runs).
electronics: env
	dvc repro studies/electronics/dvc.yaml

# Table 2 on the Books-shaped world, in studies/books/ (45 runs at the paper's Books scale).
books: env
	dvc repro studies/books/dvc.yaml

# Table 2 across scales (the default world, studies/electronics, studies/books) beside the paper's lifts.
scales: env
	dvc repro studies/scales/dvc.yaml

test-fast: env
	pytest -m "not integration and not e2e"

clean-env:
	rm -rf $(VENV)

prefect-stop:
	@$(VENV)/bin/python -c "from flows._prefect import stop_shared_server as s; print('stopped' if s() else 'no shared Prefect server running')"
