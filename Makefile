# One obvious way to do each thing. Everything runs inside ./.venv, created once by `make setup`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CORES  ?= 2

.PHONY: setup test test-fast demo demo-seeds bench lint format clean

setup: $(VENV)/.installed

# torch/torchvision first, pinned to the pair that works together on CPU and CUDA (PyPI), then the package + test extras.
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

# The demo's Table 1 with two seeds (`seeds: [0, 1]`): every fine-tuning twice, each cell the mean
# ± std over the seeds, the CSV with each seed's row. Seed 0's runs are those of `make demo`, so
# after it only seed 1's run. (`python bench/demo.py --seeds 0,1` times it from a fresh clone.)
demo-seeds: setup
	$(BIN)/snakemake --cores $(CORES) results/table1.csv --config 'overrides=["seeds=[0,1]"]'

bench: setup
	$(BIN)/python bench/model_step.py
	$(BIN)/python bench/loader.py
	$(BIN)/python bench/train_throughput.py
	$(BIN)/python bench/predict.py

# ruff for the Python, `snakemake --lint` for workflow/ (tests/workflow_lint.py: the warnings it
# still gives, each justified; tests/test_workflow_lint.py runs the same in `make test`).
lint: setup
	$(BIN)/ruff check unilearn tests bench
	$(BIN)/ruff format --check unilearn tests bench
	$(BIN)/python tests/workflow_lint.py

format: setup
	$(BIN)/ruff format unilearn tests bench
	$(BIN)/ruff check --fix unilearn tests bench

# Generated files only: results/README.md is tracked and stays.
clean:
	rm -rf .snakemake work
	find results -maxdepth 1 -type f \( -name '*.csv' -o -name '*.png' -o -name '*.pdf' \
		-o -name '*.json' -o -name '*.html' -o -name '*.md' \) ! -name README.md -delete
