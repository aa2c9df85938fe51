# The two commands of the README: `make demo` and `make test`.
# Both create .venv with the project's pinned dependencies on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench docs clean

$(STAMP): pyproject.toml requirements/constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "MiniML needs Python >= 3.11, found " + sys.version)'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e '.[test,docs]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m miniml.demo

lint: $(STAMP)
	$(BIN)/ruff check src tests examples bench
	$(BIN)/ruff format --check src tests examples bench
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

# MiniML and its peers side by side (bench/run.py); `make bench BENCH_ARGS=--quick` for a
# shorter run. Not part of `make test` (tests/test_bench_smoke.py keeps it working).
bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
