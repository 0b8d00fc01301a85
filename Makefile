VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test

$(VENV)/.installed: requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements.txt -e .
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) -m mosaic build skimage
	$(PY) -m mosaic search skimage "a cat with green eyes" -k 3
	$(PY) -m mosaic search skimage --image rocket -k 3

test: setup
	$(PY) -m pytest -q
