# The two quick-start commands: `make run` (one replica, in-memory broker, demo at :8000)
# and `make test` (the whole suite against real redis-server and gateway processes).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test install install-test system-deps lint typecheck check clean

run: install
	$(BIN)/gateway serve --host 127.0.0.1 --port 8000

# The suite mostly waits on processes it started (replicas, Redis, browsers): three
# pytest-xdist workers, each module kept on one worker (its module-scoped replicas).
TEST_WORKERS ?= 3

test: install-test system-deps
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

check: lint typecheck test

# lint-imports checks the layering of gateway/ (the contracts in pyproject.toml).
lint: install-test
	$(BIN)/ruff check gateway tests bench client/python examples
	$(BIN)/ruff format --check gateway tests bench client/python examples
	$(BIN)/lint-imports

typecheck: install-test
	$(BIN)/mypy

# Each install runs again only when pyproject.toml changed since it last succeeded (the
# stamps live in the venv, so a new venv installs afresh). The code itself is an editable
# install: edits need no reinstall. A test install covers the plain one too.
install: $(VENV)/.install.stamp

install-test: $(VENV)/.install-test.stamp

$(VENV)/.install.stamp: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e .
	@touch $@

$(VENV)/.install-test.stamp: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[test,dev,bench]"
	@touch $@ $(VENV)/.install.stamp

system-deps:
	@bash scripts/system-deps.sh

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache test-artifacts
