# The two commands of the quickstart: `make demo` and `make test`.
# Each creates .venv with the machine's python3 when it is missing, then installs with uv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
UV     := $(BIN)/uv

.PHONY: demo test lint pytest bench bench-ui bench-smoke install install-dev clean

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv

# Installs come from the committed uv.lock (`uv sync --frozen`): a fresh machine and CI get the
# same versions. --inexact keeps uv itself (pip-installed into .venv above) and whatever else
# you added. `make install EXTRAS=dbt` (or EXTRAS=s3,serve...) adds extras to the demo's
# environment. After changing dependencies in pyproject.toml, run `.venv/bin/uv lock`
# (tests/test_lockfile.py fails until you do).
EXTRAS ?=
comma  := ,
# --compile-bytecode writes every module's .pyc once at install: without it, where
# PYTHONDONTWRITEBYTECODE is set (this sandbox, some CI images), every `dagster`, `dbt` and
# `defstate` child process of the tests recompiles its imports from source (seconds each).
# A sync with nothing to change costs about a second; src/ is compiled the same way.
SYNC   := UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --frozen --inexact --quiet --compile-bytecode --python $(BIN)/python
COMPILE_SRC := $(BIN)/python -m compileall -q -j 0 src
WITH   := $(foreach e,$(subst $(comma), ,$(EXTRAS)),--extra $(e))

install: $(UV)
	$(SYNC) $(WITH)
	$(COMPILE_SRC)

install-dev: $(UV)
	$(SYNC) --extra dev $(WITH)
	$(COMPILE_SRC)

demo: install
	cd examples/quickstart && ../../$(BIN)/defstate state refresh
	cd examples/quickstart && ../../$(BIN)/defstate list defs --no-refresh

lint: install-dev
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy

# One pytest worker per core (pytest-xdist); --dist loadfile keeps each test file on one worker,
# so a module fixture (one dbt parse, one built PEX, one served example) is made once, and each
# worker starts its own session servers (moto, fake-gcs-server, PostgreSQL) on free ports.
# PYTEST_WORKERS=0 runs everything in one process.
PYTEST_WORKERS ?= auto
pytest: install-dev
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist loadfile

test: lint pytest

# Benchmarks (never part of `make test`): ARGS="--quick" or e.g. ARGS="--sizes 1,100 --repeat 3";
# DAGSTER_ARGS for bench.dagster (dg list defs via the adapter vs Dagster's own components).
bench: install-dev
	$(BIN)/python -m bench.run $(ARGS)
	$(BIN)/python -m bench.dagster $(DAGSTER_ARGS)

# First render of the web UI in headless Chromium, N=1000 x 20 (bench/ui.py)
bench-ui: install-dev
	$(BIN)/python -m bench.ui $(ARGS)

bench-smoke: install-dev
	$(BIN)/python -m bench.run --smoke

clean:
	rm -rf $(VENV) build dist .mypy_cache .pytest_cache .ruff_cache

# A PEX of the quickstart with its state baked in: build/pex/app.pex (examples/pex_build/).
.PHONY: pex
pex: install-dev
	$(BIN)/python examples/pex_build/build.py --project examples/quickstart
