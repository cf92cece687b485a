# `make demo` and `make test` are the two commands of the README. Each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-fast install clean

# The demo needs the package alone; the tests also need the dev extra (pytest, ruff, onnxruntime, OpenVINO, NNCF).
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(PY) -m solov2.cli demo --out runs/demo

test: $(VENV)/.installed-dev
	$(PY) -m ruff check solov2 tests benchmarks tools
	$(PY) -m pytest -q

test-fast: $(VENV)/.installed-dev
	$(PY) -m ruff check solov2 tests benchmarks tools
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf runs work_dirs
