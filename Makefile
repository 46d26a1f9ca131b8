# retina-lightning: `make install`, then `make test`. `make help` lists every target.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is installed first and on its own: override for your platform or CUDA version, e.g.
#   make install TORCH="torch==2.5.1 torchvision==0.20.1 --index-url https://download.pytorch.org/whl/cu124"
TORCH ?= torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?= -n 2
MINUTES ?= 20
BENCH_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install test lint format pytest quickstart bench bench-accuracy clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

install: ## create .venv and install the package, its dev tools and the `retina` command
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[dev]"
	@echo "installed: activate with 'source $(VENV)/bin/activate' (or call $(VENV)/bin/retina)"

lint: ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: ## apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

pytest: ## the test suite only (two pytest-xdist workers; PYTEST_ARGS= for one process)
	$(PY) -m pytest -q $(PYTEST_ARGS)

test: lint pytest ## lint + the test suite (what CI runs)

quickstart: ## train and test the U-Net on the embedded synthetic data (CPU, a few minutes)
	$(VENV)/bin/retina fit --config configs/synthetic/unet.yaml
	$(VENV)/bin/retina test --config configs/synthetic/unet.yaml --ckpt_path best

bench: ## quick benchmarks: data pipeline, inference speed, memory scaling (~4 min on 2 CPU cores)
	$(PY) benchmarks/bench_data.py --quick $(BENCH_ARGS)
	$(PY) benchmarks/bench_inference.py --quick $(BENCH_ARGS)
	$(PY) benchmarks/bench_scaling.py --quick $(BENCH_ARGS)

bench-accuracy: ## DRIVE leaderboard: every method, MINUTES (20) of training each; set RETINA_DATA_ROOT
	$(PY) benchmarks/bench_accuracy.py --minutes $(MINUTES) $(BENCH_ARGS)

clean: ## remove caches and run outputs (keeps .venv)
	rm -rf .pytest_cache .ruff_cache runs lightning_logs wandb previews
	find . -name __pycache__ -not -path "./$(VENV)/*" -exec rm -rf {} +
