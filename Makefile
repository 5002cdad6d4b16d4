# The two commands of the quickstart: `make demo` and `make test`.
# Each creates .venv with the machine's python3 when it is missing, then installs with uv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
UV     := $(BIN)/uv

.PHONY: demo test lint pytest bench bench-smoke install install-dev clean

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv

install: $(UV)
	$(UV) pip install --quiet --python $(BIN)/python -e .

install-dev: $(UV)
	$(UV) pip install --quiet --python $(BIN)/python -e '.[dev]'

demo: install
	cd examples/quickstart && ../../$(BIN)/defstate state refresh
	cd examples/quickstart && ../../$(BIN)/defstate list defs --no-refresh

lint: install-dev
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy

pytest: install-dev
	$(BIN)/pytest -q

test: lint pytest

bench: install-dev
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) build dist .mypy_cache .pytest_cache .ruff_cache
