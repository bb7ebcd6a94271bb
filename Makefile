# Two commands on a fresh machine: `make run` (set up + train the default) and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test test-all smoke clean

install: $(STAMP)

# Re-install only when the dependency list changes; pip takes torch from this machine's disk.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test]' 2>&1 | { grep -v '^WARNING: Location' || true; }
	$(BIN)/python -c "import dlrun, torch, hydra" 
	touch $(STAMP)

run: install
	$(BIN)/dlrun

smoke: install
	$(BIN)/dlrun debug=smoke

# -n auto: one pytest worker per core (most tests wait on a dlrun subprocess); one torch thread each
test: install
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n auto

test-all: install
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n auto -m ""

clean:
	rm -rf outputs multirun .pytest_cache
