# Inkstone: `make run` sets up and starts the app; `make test` sets up and runs the whole test suite.
# Both install from the hash-checked locks in locks/ (`make lock` refreshes them from requirements*.txt).
# No offline variables here: every Inkstone process sets them itself (core/offline.py).
VENV := .venv

.PHONY: setup setup-dev run test lint bench lock test-latest

setup:
	scripts/setup.sh

setup-dev:
	scripts/setup.sh dev

run: setup
	$(VENV)/bin/streamlit run app.py --server.address 127.0.0.1

# One pytest worker per core (at most 4), a test file per worker at a time (its module fixtures built once).
test: setup-dev
	$(VENV)/bin/python -m pytest -n auto --maxprocesses 4 --dist loadfile

lint: setup-dev
	$(VENV)/bin/ruff check .

bench: setup
	$(VENV)/bin/python bench/decode.py
	$(VENV)/bin/python bench/history.py

# Re-resolve every dependency to its newest release allowed by requirements*.txt, with hashes (uv).
lock: setup-dev
	scripts/lock.sh

# The whole suite against the newest releases, in a throwaway venv; says what would break.
test-latest:
	scripts/test-latest.sh
