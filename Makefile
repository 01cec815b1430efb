# Inkstone: `make run` sets up and starts the app; `make test` sets up and runs the whole test suite.
VENV := .venv
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: setup setup-dev run test lint bench

setup:
	scripts/setup.sh

setup-dev:
	scripts/setup.sh dev

run: setup
	$(VENV)/bin/streamlit run app.py --server.address 127.0.0.1

test: setup-dev
	$(VENV)/bin/python -m pytest

lint: setup-dev
	$(VENV)/bin/ruff check .

bench: setup
	$(VENV)/bin/python bench/decode.py
	$(VENV)/bin/python bench/history.py
