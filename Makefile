# Everything runs from .venv, which is (re)built whenever pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PY_DIRS := gc tests $(wildcard bench) $(wildcard tools)
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' gc/nsx_route_gc/__init__.py)

.PHONY: test lint typecheck pytest demo bench mutation image clean

$(STAMP): pyproject.toml
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check $(PY_DIRS)
	$(BIN)/ruff format --check $(PY_DIRS)
	$(BIN)/yamllint -s cronjob.yaml .yamllint.yaml
	$(BIN)/hadolint Dockerfile

typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/mypy --strict $(wildcard tools)

pytest: $(STAMP)
	$(BIN)/pytest

test: lint typecheck pytest

demo: $(STAMP)
	$(BIN)/nsx-route-gc demo

# Scan and apply --yes against the simulator at sizes S, M, L and W at 20 ms per answer, then
# W at 500 ms (the slow manager); writes bench/RESULTS.md.
bench: $(STAMP)
	$(BIN)/python bench/run.py

# Mutation testing (mutmut, pinned) of the modules that decide or delete, in a venv of its own;
# slow, so not part of `test`. Updates docs/mutation.md (scores, every surviving mutant) and
# writes build/mutation/REPORT.md. MUTATE=judge.py runs one module.
MUT_VENV := .venv-mut
MUT_STAMP := $(MUT_VENV)/.installed

$(MUT_STAMP): pyproject.toml
	rm -rf $(MUT_VENV)
	$(PYTHON) -m venv $(MUT_VENV)
	$(MUT_VENV)/bin/pip install --quiet --upgrade pip
	$(MUT_VENV)/bin/pip install --quiet -e '.[dev,mutation]'
	touch $(MUT_STAMP)

mutation: $(MUT_STAMP)
	$(MUT_VENV)/bin/python tools/mutation.py $(MUTATE)

# No container engine on our own machines: this builds wherever docker exists.
image:
	docker build -t nsx-route-gc:$(VERSION) .

clean:
	rm -rf $(VENV) $(MUT_VENV) build/mutation .mypy_cache .ruff_cache .pytest_cache
