# `make demo` and `make test` are the two commands of the README. Each creates .venv on first use and installs
# the exact versions of constraints.txt (the set the tests ran with; pyproject.toml gives the ranges).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP_INSTALL := $(PY) -m pip install --quiet -c constraints.txt

.PHONY: demo test test-fast docs install lint clean

# The demo needs the package alone; the tests also need the dev extra (pytest, ruff, import-linter, onnxruntime,
# OpenVINO, NNCF).
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PIP_INSTALL) -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP_INSTALL) -e '.[dev]'
	touch $@

install: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(PY) -m solov2.cli demo --out runs/demo

# Style, and the layers: imports point down (pyproject.toml's [tool.importlinter]).
lint: $(VENV)/.installed-dev
	$(PY) -m ruff check solov2 tests benchmarks tools
	$(VENV)/bin/lint-imports

# Two pytest-xdist workers, one test file at a time each (a module's fixtures are built once): alone, pytest keeps
# about one of the two cores busy (subprocess start-ups, Python); tests/conftest.py trains the shared checkpoint once
# and gives each worker its share of the cores as torch threads.
# One run for the whole suite: the SIGSEGV that once split off OpenVINO's files is found and fixed (OpenVINO's
# plugins left a freed signal stack; solov2.deploy.openvino.repair_signal_stack, docs/development.md).
PYTEST_PARALLEL := -n 2 --dist loadfile
# The slowest tests at the end of each run: where `make test`'s minutes go (issue 22's 8-minute target).
PYTEST_DURATIONS := --durations=15

test: lint
	sh tools/install_chromium.sh
	$(PY) -m pytest -q $(PYTEST_PARALLEL) $(PYTEST_DURATIONS)

test-fast: lint
	$(PY) -m pytest -q -m "not slow" $(PYTEST_PARALLEL)

# The documentation site (mkdocs.yml); --strict turns a broken link or a page left out of the nav into an error.
docs: $(VENV)/.installed-dev
	$(VENV)/bin/mkdocs build --strict -d site

clean:
	rm -rf runs work_dirs site
