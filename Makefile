# Every target builds its own virtual environment in the clone, so a fresh
# machine with only Python 3.11+ needs nothing else.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test test-slow lint typecheck-links verify bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# One process per core (pytest-xdist); a file's tests stay together, so its module
# fixtures (the kill matrix, the proofs) are computed once.
TESTS_ON_EVERY_CORE := -n auto --dist loadfile

test: $(STAMP)
	$(BIN)/python -m pytest -q $(TESTS_ON_EVERY_CORE)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow $(TESTS_ON_EVERY_CORE)

lint: $(STAMP) typecheck-links
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# mypy reads the installed names (pagingcheck.model, ...) through these links.
typecheck-links:
	@mkdir -p .typecheck/pagingcheck
	@for pkg in model impl spec checks; do ln -sfn ../../$$pkg .typecheck/pagingcheck/$$pkg; done
	@ln -sfn ../../pagingcheck/__main__.py .typecheck/pagingcheck/__main__.py

verify: $(STAMP)
	$(BIN)/pagingcheck verify

# Every benchmark script; reference_loop.py is the yardstick simulate_bench.py runs, not one.
bench: $(STAMP)
	for script in benchmarks/*_bench.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .typecheck build *.egg-info .pytest_cache .mypy_cache .ruff_cache
