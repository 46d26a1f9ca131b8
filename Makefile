# retina-lightning: `make install`, then `make test`. `make help` lists every target.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# every target that runs the suite's tools depends on this stamp, so `make test` or `make quickstart`
# works as the very first command on a fresh clone: it installs once, then reuses .venv
STAMP := $(VENV)/.installed
# torch is installed first and on its own: override for your platform or CUDA version, e.g.
#   make install TORCH="torch==2.5.1 torchvision==0.20.1 --index-url https://download.pytorch.org/whl/cu124"
TORCH ?= torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?= -n 2
MINUTES ?= 20
BENCH_ARGS ?=
# `make gpu-wheels`: what a GPU machine's Python 3.12 (torch, lightning, torchmetrics,
# scikit-image, timm, huggingface-hub there) lacks; their other needs are all there. wandb is
# left out: the suite imports it only for W&B logging.
GPU_WHEELS ?= kornia==0.9.0 kornia-rs==0.2.0 jsonargparse==4.53.0 docstring-parser==0.18.0 \
	typeshed-client==2.15.0 omegaconf==2.4.0 segmentation-models-pytorch==0.6.0
GPU_PLATFORMS := $(foreach n,manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014 manylinux1,--platform $(n)_x86_64)
QUICK ?=
GPU_CHECK_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install test lint format pytest quickstart bench bench-accuracy bench-laptop bench-training bench-zoo \
	gpu-wheels gpu-check clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

install: ## create .venv and install the package, its dev tools and the `retina` command
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)
	@echo "installed: activate with 'source $(VENV)/bin/activate' (or call $(VENV)/bin/retina)"

$(STAMP): pyproject.toml
	$(MAKE) --no-print-directory install

lint: $(STAMP) ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP) ## apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

pytest: $(STAMP) ## the test suite only (two pytest-xdist workers; PYTEST_ARGS= for one process)
	$(PY) -m pytest -q $(PYTEST_ARGS)

test: lint pytest ## lint + the test suite (what CI runs)

quickstart: $(STAMP) ## train and test the U-Net on the embedded synthetic data (CPU, a few minutes)
	$(VENV)/bin/retina fit --config configs/synthetic/unet.yaml
	$(VENV)/bin/retina test --config configs/synthetic/unet.yaml --ckpt_path best

bench: $(STAMP) ## quick benchmarks: data pipeline, inference speed, memory scaling (~4 min on 2 CPU cores)
	$(PY) benchmarks/bench_data.py --quick $(BENCH_ARGS)
	$(PY) benchmarks/bench_inference.py --quick $(BENCH_ARGS)
	$(PY) benchmarks/bench_scaling.py --quick $(BENCH_ARGS)

bench-accuracy: $(STAMP) ## DRIVE leaderboard: every method, MINUTES (20) of training each; set RETINA_DATA_ROOT
	$(PY) benchmarks/bench_accuracy.py --minutes $(MINUTES) --plain $(BENCH_ARGS)

bench-laptop: $(STAMP) ## the laptop recipe vs the plain script at 10 and 20 CPU-minutes (~65 min); set RETINA_DATA_ROOT
	$(PY) benchmarks/bench_accuracy.py --minutes 10 --methods laptop --plain --tag laptop $(BENCH_ARGS)
	$(PY) benchmarks/bench_accuracy.py --minutes 20 --methods laptop --plain --tag laptop $(BENCH_ARGS)

bench-zoo: $(STAMP) ## the shipped models on DRIVE and CHASE_DB1 with default flags (~20 min); set RETINA_DATA_ROOT
	$(PY) benchmarks/zoo_cross_camera.py $(BENCH_ARGS)

bench-training: $(STAMP) ## training patches/s per model and precision (CPU; + cuda rows on a GPU), quick
	$(PY) benchmarks/bench_training.py --quick $(BENCH_ARGS)

gpu-wheels: $(STAMP) ## wheels a GPU machine lacks -> .whl/, and DRIVE -> .data/ (RETINA_DATA_ROOT): carry both
	@exclude=$$(git rev-parse --git-path info/exclude) && mkdir -p $$(dirname $$exclude) && \
	for d in /.whl/ /.data/; do grep -qxF $$d $$exclude 2>/dev/null || echo $$d >> $$exclude; done
	rm -rf .whl  # one version of each package: two would stop the install there
	$(PY) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
		--implementation cp $(GPU_PLATFORMS) -d .whl $(GPU_WHEELS)
	@if [ -n "$$RETINA_DATA_ROOT" ] && [ -d "$$RETINA_DATA_ROOT/DRIVE" ]; then \
		mkdir -p .data && rm -rf .data/DRIVE && cp -r "$$RETINA_DATA_ROOT/DRIVE" .data/ && \
		echo "copied $$RETINA_DATA_ROOT/DRIVE to .data/DRIVE"; \
	else echo "RETINA_DATA_ROOT holds no DRIVE/: the GPU check's DRIVE step will skip"; fi
	@du -sh .whl .data 2>/dev/null || true

gpu-check: ## GPU tests + training/data/inference benchmarks + DPN on DRIVE, <9 min (QUICK=1: CPU ok)
	bash scripts/gpu_check.sh $(if $(QUICK),--quick) $(GPU_CHECK_ARGS)

clean: ## remove caches and run outputs (keeps .venv)
	rm -rf .pytest_cache .ruff_cache runs lightning_logs wandb previews
	find . -name __pycache__ -not -path "./$(VENV)/*" -exec rm -rf {} +
