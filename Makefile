# Two set-up commands: `make demo` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow lint bench clean chromium

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

# The report's browser test drives Debian's chromium: installed here when missing.
chromium:
	bash scripts/install_chromium.sh

# Test files run in parallel, one file per worker (pytest-xdist, --dist loadfile: a file's
# module fixtures are built once); TEST_JOBS workers, default the number of CPUs (at most 4).
TEST_JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ $$n -gt 4 ] && n=4; echo $$n)

test: $(STAMP) chromium
	$(BIN)/python -m pytest -q -n $(TEST_JOBS) --dist loadfile --durations=25

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow -n $(TEST_JOBS) --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check stjax tests scripts experiments
	$(BIN)/lint-imports --no-cache

bench: $(STAMP)
	$(BIN)/python scripts/bench_data.py
	$(BIN)/python scripts/bench_layers.py

clean:
	rm -rf $(VENV) build *.egg-info
