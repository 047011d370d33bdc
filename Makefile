# Auscult: two commands for a fresh machine (README.md):
#   make demo   the module's main job on audio it generates (runtime dependencies only)
#   make test   the test suite (installs the training and development extras)
# Each creates .venv and installs what it needs by itself.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
export PIP_PROGRESS_BAR := off

.PHONY: demo test bench model clean venv-runtime venv-dev

$(VENV)/bin/python:
	$(PYTHON) -c 'import sys; sys.exit("Python >= 3.10 is required") if sys.version_info < (3, 10) else None'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip setuptools wheel

# Runtime set only: what the edge module's container has.
$(VENV)/.runtime: pyproject.toml | $(VENV)/bin/python
	$(PIP) install --quiet -e .
	touch $@

# Training and development extras (torch==2.13.0 CPU, librosa, scikit-learn, pytest, ...).
$(VENV)/.dev: pyproject.toml $(VENV)/.runtime
	$(PIP) install --quiet -e '.[train,dev]'
	touch $@

venv-runtime: $(VENV)/.runtime
venv-dev: $(VENV)/.dev

demo: $(VENV)/.runtime
	$(PY) -m audioclassifier.demo --out demo-out

test: $(VENV)/.dev
	$(PY) -m pytest -q

bench: $(VENV)/.dev
	$(PY) bench/features.py

clean:
	rm -rf $(VENV) demo-out .pytest_cache .hypothesis build *.egg-info
