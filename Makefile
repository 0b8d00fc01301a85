VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test

$(VENV)/.installed: requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements.txt -e .
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) demo.py

test: setup
	$(PY) -m pytest -q
