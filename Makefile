# Auscult: two commands for a fresh machine (README.md):
#   make demo   the module's main job on audio it generates (runtime dependencies only)
#   make test   the test suite (installs the training and development extras)
# Each creates .venv and installs what it needs by itself.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
export PIP_PROGRESS_BAR := off

.PHONY: demo test test-image lint image bench bench-train model clean venv-runtime venv-dev

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
	$(PIP) install --quiet -e '.[train,dev,openvino]'
	touch $@

venv-runtime: $(VENV)/.runtime
venv-dev: $(VENV)/.dev

# The demo plots its timeline with matplotlib: the runtime set plus that one extra.
$(VENV)/.demo: pyproject.toml $(VENV)/.runtime
	$(PIP) install --quiet -e '.[demo]'
	touch $@

demo: $(VENV)/.demo
	$(PY) demo/run_demo.py --out demo-out

test: $(VENV)/.dev
	$(PY) -m pytest -q

# ruff over the tree, mypy over the module package (configured in pyproject.toml); .ci/run runs it.
lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# The container image, audioclassifier:<module.json version>-amd64: docker, or podman where no Docker
# engine runs (through ../shared/tools/container-base.sh where that exists). tools/image.sh says how.
image:
	tools/image.sh build

# Builds the image (as `make image`) and checks the running container; -rA prints the image size.
test-image: $(VENV)/.dev
	$(PY) -m pytest -q -rA -m image tests/contract/test_image.py

bench: $(VENV)/.dev
	$(PY) bench/features.py
	$(PY) bench/module.py
	$(PY) bench/explain.py

# Full trainings and evaluations (synthetic at -6/0/+6 dB on unseen machines, the real sets), then the
# generalisation benchmarks (held-out machines, speeds, load and gain; anomaly detection, then fault
# classification; baselines in the same run):
# the figures of docs/data-science.md's results. Takes a while on 2 cores.
bench-train: $(VENV)/.dev
	$(PY) bench/train.py
	$(PY) bench/shift.py
	$(PY) bench/faults.py

# The module's default model: an anomaly model trained on synthetic machine sounds (reproducible).
# Pinned to the shipped model's method and features (gmm4:level): this round's candidate (gmm4:shape)
# failed tests/integration/test_calibration.py (docs/data-science.md, generalisation under shift). With the
# `embedding` output and the card's `learning` block (on-site learning, docs/module.md); the embedding
# features do not depend on the scoring method, so the scores are the former model's (within 5e-5).
# --no-refit: the shipped model was fitted on the training machines alone (before `train` refitted the
# chosen candidate on every normal window), and this recipe rebuilds it as it is.
MODEL_DATA := build/model-data
model: $(VENV)/.dev
	rm -rf $(MODEL_DATA)
	$(PY) -m ml synth --out $(MODEL_DATA) --seed 1 --labels normal --first-machine-id 100 --machines 64 \
		--clips-per-class 4 --snr-db -6 --snr-db 0 --snr-db 6
	$(PY) -m ml train --data $(MODEL_DATA) --kind anomaly --seed 1 --window-seconds 2.0 --percentile 99.5 \
		--dataset-note "Auscult synthetic machine sounds (python -m ml synth --seed 1): normal only, \
	machine IDs 100-163, 4 clips of 10 s each, SNR -6/0/+6 dB" --method gmm4:level --no-refit \
		--out modules/audioclassifier/audioclassifier/models/model.onnx

clean:
	rm -rf $(VENV) demo-out .pytest_cache .hypothesis build *.egg-info
