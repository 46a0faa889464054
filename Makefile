# One obvious way to do each thing. Everything runs inside ./.venv, created once by `make setup`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CORES  ?= 2

.PHONY: setup test test-fast demo bench lint format clean

setup: $(VENV)/.installed

# torch/torchvision first, pinned to the working pair (ENVIRONMENT.md), then the package + test extras.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

test: setup
	$(BIN)/pytest

test-fast: setup
	$(BIN)/pytest -m "not slow and not slurm"

demo: setup
	$(BIN)/snakemake --cores $(CORES) results/table1.csv

bench: setup
	$(BIN)/python bench/model_step.py
	$(BIN)/python bench/loader.py
	$(BIN)/python bench/train_throughput.py
	$(BIN)/python bench/predict.py

lint: setup
	$(BIN)/ruff check unilearn tests bench workflow
	$(BIN)/ruff format --check unilearn tests bench

format: setup
	$(BIN)/ruff format unilearn tests bench
	$(BIN)/ruff check --fix unilearn tests bench

clean:
	rm -rf results/*.csv results/*.md results/*.png .snakemake work
