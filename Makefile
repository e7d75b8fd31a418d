# Two commands for a newcomer: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: demo test lint typecheck unit integration e2e bench clean venv

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed-base: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(VENV)/.installed-base

venv: $(VENV)/.installed-dev

demo: $(VENV)/.installed-base
	$(BIN)/vatio up $(DEMO_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy
	$(BIN)/mypy tests bench

test: $(VENV)/.installed-dev lint typecheck
	$(BIN)/pytest $(PYTEST_ARGS)

unit: $(VENV)/.installed-dev
	$(BIN)/pytest tests/unit src/vatio $(PYTEST_ARGS)

integration: $(VENV)/.installed-dev
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

e2e: $(VENV)/.installed-dev
	$(BIN)/pytest tests/e2e $(PYTEST_ARGS)

bench: $(VENV)/.installed-dev
	$(BIN)/vatio bench ingest --json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
