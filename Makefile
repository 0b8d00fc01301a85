VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-fast lint

# requirements-dev.txt includes requirements.txt (what the app needs at run time, a Space's install)
$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements-dev.txt -e .
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) demo.py

# everything: real packaged models, the sample data in ../shared/data, a served app, a browser
test: setup lint
	$(PY) -m pytest -q

# the fast tier: a fake encoder and a tiny collection, no model weights, no sample data
test-fast: setup
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check src tests bench
